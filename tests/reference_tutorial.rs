//! The original reference's enrollment tutorial (shared/REFERENCE-TUTORIAL.md), step by step as
//! apps follow it, with the documentation's national phone numbers.

mod support;

use serde_json::{json, Value};
use support::*;

const FORBIDDEN: &str =
    "inwebo: forbidden operation (due to activated state/blocked state/upgradable state)";

async fn get(phone: &Phone, api: &str, params: Value) -> pims_core::Message {
    phone.get(api, params).await
}

#[tokio::test]
async fn full_path_steps_1_to_8_with_steps_7_and_8_as_two_calls() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server.url(), Some(server.token("u").await)).await;
    // 1, 2, 3
    let m = phone.is_device_activated().await;
    assert_eq!(ok(&m), json!({"isDeviceActivated": false}));
    let m = get(
        &phone,
        "pims.authentication.account",
        json!({"actionType": "strong", "type": "isAccountBlocked"}),
    )
    .await;
    assert_eq!(ok(&m), json!({"isAccountBlocked": "NotBlocked"}));
    let m = get(&phone, "pims.authentication.trustedphonenumber", json!({})).await;
    failed(&m, 2307, "User dont have a phone number");
    // 4·2: the number as the documentation writes it.
    let m = get(
        &phone,
        "pims.authentication.smscode",
        json!({"type": "phoneNumberCertification", "phoneNumber": "0612345678"}),
    )
    .await;
    ok(&m);
    let code = server.last_code(NUMBER);
    let m = phone
        .set(
            "pims.authentication.smscode",
            json!({"type": "addPhoneNumber", "smsCode": code, "phoneNumber": "0612345678"}),
        )
        .await;
    ok(&m);
    let m = get(&phone, "pims.authentication.trustedphonenumber", json!({})).await;
    assert_eq!(ok(&m), json!({"phoneNumber": NUMBER}));
    // Step 5 (the tutorial also passes phoneNumber, ignored), step 6.
    let m = get(
        &phone,
        "pims.authentication.smscode",
        json!({"type": "enrollment", "phoneNumber": "0612345678"}),
    )
    .await;
    ok(&m);
    let code = server.last_code(NUMBER);
    let m = phone
        .set(
            "pims.authentication.smscode",
            json!({"action": "enrollment", "smsCode": code}),
        )
        .await;
    assert_eq!(ok(&m), json!({"status": "NotEnrolled"}));
    // Step 7 registers the PIN, step 8 is the same call again: a PIN validation.
    let step = json!({"action": "enroll", "pinCode": "424242", "smsCode": code});
    ok(&phone
        .set("pims.authentication.enrollment", step.clone())
        .await);
    ok(&phone
        .set("pims.authentication.enrollment", step.clone())
        .await);
    assert_eq!(server.devices("u"), 1);
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": true})
    );

    // Step 8 with a wrong PIN: counted, the app asks again; the right one still works.
    let wrong = json!({"action": "enroll", "pinCode": "424243", "smsCode": code});
    let e = failed(
        &phone.set("pims.authentication.enrollment", wrong).await,
        2308,
        "inwebo: access refused",
    );
    assert_eq!(e["details"]["attemptsRemaining"], 4);
    ok(&phone.set("pims.authentication.enrollment", step).await);
    assert_eq!(server.devices("u"), 1);
    let otp = ok(&phone.otp_with_pin("424242").await);
    assert_eq!(server.verify_otp(otp["otp"].as_str().unwrap()).await.0, 200);
}

#[tokio::test]
async fn shortcut_with_a_national_number() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server.url(), Some(server.token("u").await)).await;
    let m = get(
        &phone,
        "pims.authentication.smscode",
        json!({"type": "phoneNumberCertification", "phoneNumber": "06 12 34 56 78"}),
    )
    .await;
    ok(&m);
    let code = server.last_code(NUMBER);
    let m = phone
        .set(
            "pims.authentication.enrollment",
            json!({"action": "enrollWithPhoneNumber", "pinCode": "424242", "smsCode": code,
                   "phoneNumber": "06 12 34 56 78"}),
        )
        .await;
    ok(&m);
    let m = get(&phone, "pims.authentication.trustedphonenumber", json!({})).await;
    assert_eq!(ok(&m), json!({"phoneNumber": NUMBER}));
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": true})
    );
}

#[tokio::test]
async fn national_forms_are_read_in_the_default_region() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server.url(), Some(server.token("u").await)).await;
    let certify = |number: &'static str| {
        phone.get(
            "pims.authentication.smscode",
            json!({"type": "phoneNumberCertification", "phoneNumber": number}),
        )
    };
    for (i, typed) in [
        "0612345678",
        "06.12.34.56.78",
        "0033612345678",
        "+33 6 12 34 56 78",
    ]
    .into_iter()
    .enumerate()
    {
        ok(&certify(typed).await);
        // Resends of the live code: every form reached the same E.164 number.
        assert_eq!(server.sms_texts(NUMBER).len(), i + 1, "{typed}");
    }
    // A fixed line (no SMS), too short, letters: not a valid mobile number in FR.
    for bad in ["0123456789", "061234567", "06 12 ab 56 78"] {
        failed(&certify(bad).await, 2102, "Invalid phoneNumber parameter");
    }

    // Another region reads national numbers by its own plan.
    let dir = tempfile::tempdir().unwrap();
    let host = pims_strongauth::host::Host::new(std::sync::Arc::new(
        pims_strongauth::host::StaticToken(Some(server.token("uk").await)),
    ));
    let uk = Phone::with_host(
        &server.url(),
        host,
        dir.path().to_path_buf(),
        "ios",
        json!({"defaultRegion": "gb"}),
    )
    .await;
    let m = uk
        .get(
            "pims.authentication.smscode",
            json!({"type": "phoneNumberCertification", "phoneNumber": "07400 123456"}),
        )
        .await;
    ok(&m);
    let code = server.last_code("+447400123456");
    let m = uk
        .set(
            "pims.authentication.smscode",
            json!({"type": "addPhoneNumber", "smsCode": code, "phoneNumber": "07400 123456"}),
        )
        .await;
    ok(&m);
    let m = get(&uk, "pims.authentication.trustedphonenumber", json!({})).await;
    assert_eq!(ok(&m), json!({"phoneNumber": "+447400123456"}));
    let m = uk
        .get(
            "pims.authentication.smscode",
            json!({"type": "phoneNumberCertification", "phoneNumber": "0612345678"}),
        )
        .await;
    failed(&m, 2102, "Invalid phoneNumber parameter");
}

#[tokio::test]
async fn a_region_that_is_not_two_letters_is_refused() {
    let pims = pims_core::Pims::builder()
        .component(pims_strongauth::StrongAuthFactory::new(
            pims_strongauth::host::Host::new(std::sync::Arc::new(
                pims_strongauth::host::StaticToken(None),
            )),
        ))
        .build();
    let m = pims
        .initialize_async(json!({"components": {"strongAuthentication": {
            "serverUrl": "http://127.0.0.1:9", "dataDirectory": "/tmp", "platform": "ios",
            "defaultRegion": "FRA"}}}))
        .await;
    failed(
        &m,
        2102,
        "Invalid components.strongAuthentication.defaultRegion parameter",
    );
}

#[tokio::test]
async fn phone_number_selectors_are_named_type() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server.url(), Some(server.token("u").await)).await;
    let set = |params: Value| phone.set("pims.authentication.smscode", params);
    // With no selector at all, the reference's own selector of the API is missing.
    let m = set(json!({"smsCode": "123456", "phoneNumber": "0612345678"})).await;
    failed(&m, 2101, "Missing action parameter");
    let m = set(json!({"type": "bogus", "smsCode": "123456", "phoneNumber": "0612345678"})).await;
    failed(&m, 2102, "Invalid type parameter");
    // The reference's alias, named as the app wrote it.
    let m = set(json!({"action": "bogus", "smsCode": "123456"})).await;
    failed(&m, 2102, "Invalid action parameter");
    let m = set(json!({"action": "addPhoneNumber", "smsCode": "123456"})).await;
    failed(&m, 2101, "Missing phoneNumber parameter");
}

#[tokio::test]
async fn an_active_device_of_a_blocked_account_gets_2317_from_enroll() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server.url(), Some(server.token("u").await)).await;
    phone.enroll_first_device(&server).await;
    let wrong = if PIN == "00000000" {
        "00000001"
    } else {
        "00000000"
    };
    let mut last = phone.enroll(wrong, " ").await;
    while last.code() == Some(2308) {
        last = phone.enroll(wrong, " ").await;
    }
    failed(&last, 2310, "inwebo: account is blocked ");
    failed(&phone.enroll(PIN, " ").await, 2317, FORBIDDEN);
    assert_eq!(server.devices("u"), 1);
}

#[tokio::test]
async fn a_subscription_acknowledgement_has_no_result() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server.url(), Some(server.token("u").await)).await;
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    phone
        .pims
        .subscribe("pims.authentication.enrollment", json!({}), move |m| {
            let _ = tx.lock().unwrap().send(m);
        });
    let ack =
        tokio::task::spawn_blocking(move || rx.recv_timeout(std::time::Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
    let json = ack.to_json();
    assert_eq!(json["status"], "SUCCEEDED");
    assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
}
