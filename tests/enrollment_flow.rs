//! The enrollment flow of SDK-API.md §2 end to end, both paths, through the facade.

mod support;

use serde_json::json;
use support::{failed, ok, Phone, TestServer, NUMBER, PIN};

#[tokio::test]
async fn full_path_then_second_device_then_otp_verified_once() {
    let server = TestServer::start().await;
    let token = server.token("driver").await;
    let phone = Phone::new(&server.url(), Some(token.clone())).await;

    // 1–3: status checks.
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": false})
    );
    let m = phone
        .get(
            "pims.authentication.account",
            json!({"actionType": "strong", "type": "isAccountBlocked"}),
        )
        .await;
    assert_eq!(ok(&m), json!({"isAccountBlocked": "NotBlocked"}));
    failed(
        &phone
            .get("pims.authentication.trustedphonenumber", json!({}))
            .await,
        2307,
        "User dont have a phone number",
    );

    // Certify and add the number, then the enrollment SMS.
    phone.add_phone_number(&server, NUMBER).await;
    let m = phone
        .get("pims.authentication.trustedphonenumber", json!({}))
        .await;
    assert_eq!(ok(&m), json!({"phoneNumber": NUMBER}));
    phone.request_enrollment_code().await;
    let code = server.last_code(NUMBER);
    let m = phone
        .set(
            "pims.authentication.smscode",
            json!({"action": "enrollment", "smsCode": code}),
        )
        .await;
    assert_eq!(ok(&m), json!({"status": "NotEnrolled"}));

    // The reference call, with the reference's exact success message shape.
    let m = phone.enroll(PIN, &code).await;
    assert_eq!(
        m.to_json(),
        json!({"transactionId": m.transaction_id, "status": "SUCCEEDED", "result": null})
    );
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": true})
    );

    // A second device proves the same PIN.
    let second = Phone::new(&server.url(), Some(token)).await;
    second.request_enrollment_code().await;
    let code = server.last_code(NUMBER);
    let m = second
        .set(
            "pims.authentication.smscode",
            json!({"action": "enrollment", "smsCode": code}),
        )
        .await;
    assert_eq!(ok(&m), json!({"status": "AlreadyEnrolled"}));
    ok(&second.enroll(PIN, &code).await);
    assert_eq!(server.devices("driver"), 2);

    // OTP with PIN, verified exactly once by a relying party.
    let otp = ok(&second.otp_with_pin(PIN).await)["otp"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = server.verify_otp(&otp).await;
    assert_eq!(status, 200);
    assert_eq!(body["subject"], "driver");
    assert_eq!(body["withPin"], true);
    assert_eq!(server.verify_otp(&otp).await.0, 404);

    // OTP without PIN says so.
    let m = phone
        .get("pims.authentication.otp", json!({"action": "withoutPIN"}))
        .await;
    let otp = ok(&m)["otp"].as_str().unwrap().to_owned();
    let (status, body) = server.verify_otp(&otp).await;
    assert_eq!(status, 200);
    assert_eq!(body["withPin"], false);
}

#[tokio::test]
async fn shortcut_path_enrolls_with_the_phone_number() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server.url(), Some(server.token("driver").await)).await;
    ok(&phone
        .get(
            "pims.authentication.smscode",
            json!({"type": "phoneNumberCertification", "phoneNumber": NUMBER}),
        )
        .await);
    let code = server.last_code(NUMBER);
    let m = phone
        .set("pims.authentication.enrollment",
            json!({"action": "enrollWithPhoneNumber", "pinCode": PIN, "smsCode": code, "phoneNumber": NUMBER}))
        .await;
    ok(&m);
    let m = phone
        .get("pims.authentication.trustedphonenumber", json!({}))
        .await;
    assert_eq!(ok(&m), json!({"phoneNumber": NUMBER}));
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": true})
    );
}

#[tokio::test]
async fn accounts_are_isolated() {
    let server = TestServer::start().await;
    let alice = Phone::new(&server.url(), Some(server.token("alice").await)).await;
    alice.enroll_first_device(&server).await;
    // Bob has no number, no PIN and no device, whatever Alice has.
    let bob = Phone::new(&server.url(), Some(server.token("bob").await)).await;
    failed(
        &bob.get("pims.authentication.trustedphonenumber", json!({}))
            .await,
        2307,
        "User dont have a phone number",
    );
    assert_eq!(server.devices("bob"), 0);
}

#[tokio::test]
async fn otp_before_enrollment_needs_a_prior_authenticator() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server.url(), Some(server.token("u").await)).await;
    failed(
        &phone.otp_with_pin(PIN).await,
        2313,
        "inwebo: User must activate inWebo helium or inWebo Desktop Token before achieving this operation",
    );
}

#[test]
fn the_demo_command_runs_the_whole_story() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pims"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"isDeviceActivated\":true"), "{stdout}");
    assert!(
        stdout.contains("\"status\":\"AlreadyEnrolled\""),
        "{stdout}"
    );
    assert!(stdout.contains("\"withPin\":true"), "{stdout}");
    assert!(stdout.contains("otp_invalid"), "{stdout}");
    // The remote command: 2302 without the PIN, then the car unlocked with it and locked
    // again, and the forged unlock refused by the car's own verifier.
    assert!(stdout.contains("\"code\":2302"), "{stdout}");
    assert!(stdout.contains("car's verdict: doors unlocked"), "{stdout}");
    assert!(
        stdout.contains("car: 2355 badSignature — doors locked"),
        "{stdout}"
    );
    assert!(stdout.contains("Done: two devices enrolled"), "{stdout}");
}
