//! Everything the SDK and the server log at the most verbose level, during enrollments, wrong
//! PINs, wrong codes, OTPs and verification, holds no PIN, SMS code, OTP, token or key.
//! Its own test binary: it owns the process-wide log subscriber.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::json;
use support::{ok, Phone, TestServer, NUMBER, PIN};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_contain_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .without_time() // timestamps are digit runs that could match a code by chance
        .with_writer(move || writer.clone())
        .init();

    let server = TestServer::start().await;
    let token = server.token("driver").await;
    let first = Phone::new(&server.url(), Some(token.clone())).await;
    first.enroll_first_device(&server).await;
    let second = Phone::new(&server.url(), Some(token.clone())).await;
    second.request_enrollment_code().await;
    let code = server.last_code(NUMBER);
    assert!(second.enroll("9999", &code).await.error.is_some());
    assert!(second.enroll(PIN, "000001").await.error.is_some());
    ok(&second.enroll(PIN, &code).await);
    let otp = ok(&second.otp_with_pin(PIN).await)["otp"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(server.verify_otp(&otp).await.0, 200);
    ok(&first
        .get("pims.authentication.otp", json!({"action": "withoutPIN"}))
        .await);

    // Account management: reset, update (once with a wrong old PIN), new number.
    const RESET_PIN: &str = "31415926";
    const UPDATED_PIN: &str = "27182818";
    const NUMBER2: &str = "+33698765432";
    ok(&first
        .get("pims.authentication.smscode", json!({"type": "resetPIN"}))
        .await);
    let reset_code = server.last_code(NUMBER);
    ok(&first
        .set(
            "pims.authentication.pincode",
            json!({"action": "reset", "pinCode": RESET_PIN, "smsCode": reset_code}),
        )
        .await);
    let update = |old: &str| json!({"action": "update", "oldPIN": old, "newPIN": UPDATED_PIN});
    assert!(first
        .set("pims.authentication.pincode", update("99999999"))
        .await
        .error
        .is_some());
    ok(&first
        .set("pims.authentication.pincode", update(RESET_PIN))
        .await);
    ok(&first
        .get(
            "pims.authentication.smscode",
            json!({"type": "phoneNumberCertification", "phoneNumber": NUMBER2}),
        )
        .await);
    let certification = server.last_code(NUMBER2);
    ok(&first
        .set(
            "pims.authentication.smscode",
            json!({"type": "modifyPhoneNumber", "phoneNumber": NUMBER2, "smsCode": certification}),
        )
        .await);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The capture works: transaction ids and enrollment events are there.
    assert!(logs.contains("device activated"), "nothing captured");
    assert!(logs.contains("pims_server"), "server logs not captured");

    let b64 = base64::engine::general_purpose::STANDARD;
    let key_file = std::fs::read_to_string(&server.config.key_file).unwrap();
    let keys: serde_json::Value = serde_json::from_str(&key_file).unwrap();
    let mut secrets: Vec<(String, String)> = vec![
        ("PIN".into(), PIN.to_owned()),
        ("reset PIN".into(), RESET_PIN.to_owned()),
        ("updated PIN".into(), UPDATED_PIN.to_owned()),
        ("access token".into(), token.clone()),
        ("OTP".into(), otp),
        (
            "relying party secret".into(),
            server.config.relying_parties[0].secret.clone(),
        ),
        (
            "vault key".into(),
            b64.encode(std::fs::read(first.data.join("strongauth.key")).unwrap()),
        ),
    ];
    for (name, value) in keys.as_object().unwrap() {
        if let Some(v) = value.as_str() {
            secrets.push((format!("server key {name}"), v.to_owned()));
        }
    }
    for text in server
        .sms_texts(NUMBER)
        .into_iter()
        .chain(server.sms_texts(NUMBER2))
    {
        // Security notices carry no code.
        if let Some(code) = pims_server::sms::code_from_text(&text) {
            secrets.push(("SMS code".into(), code));
        }
    }
    for (name, secret) in secrets {
        assert!(secret.len() >= 4, "{name} too short to search");
        assert!(!logs.contains(&secret), "{name} appears in the logs");
    }
}
