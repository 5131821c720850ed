//! The account lifecycle after the first enrollment, through the facade against a real server:
//! the reference's account-management tutorial (A remove, B reset PIN, C update PIN, D modify
//! the phone number), every error code these APIs list, devices and revocation, subscription
//! events, the Android SMS reader, and the re-enroll contract.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pims_core::Message;
use pims_proto::endpoint::{self as ep, Endpoint};
use serde_json::{json, Value};
use support::proxy::{Fault, FaultProxy};
use support::{failed, ok, Phone, TestServer, NUMBER, PIN};

const NEW_PIN: &str = "13572468";
const OTHER_PIN: &str = "97531246";
const NUMBER2: &str = "+33698765432";

const ACCESS_REFUSED: &str = "inwebo: access refused";
const ACCOUNT_BLOCKED: &str = "inwebo: account is blocked ";
const STATE_NOT_CORRECT: &str = "inwebo: internal state not correct";
const DEVICE_UNKNOWN: &str = "inwebo: device is disabled or unknown";
const PRIOR_AUTHENTICATOR: &str =
    "inwebo: User must activate inWebo helium or inWebo Desktop Token before achieving this operation";
const NO_SERVICE: &str = "inwebo: No service is available";
const SAME_PIN: &str = "inwebo: the new password equals the previous one";
const POST_SYNC: &str =
    "inwebo: the operation succeeded but it required a post-synchronization which failed";
const FORBIDDEN: &str =
    "inwebo: forbidden operation (due to activated state/blocked state/upgradable state)";

/// Account-management calls, as an app writes them.
trait Lifecycle {
    async fn remove_all(&self) -> Message;
    async fn request_reset_code(&self) -> Message;
    async fn reset_pin(&self, pin: &str, code: &str) -> Message;
    async fn update_pin(&self, old: &str, new: &str) -> Message;
    async fn certify(&self, number: &str) -> Message;
    async fn modify_number(&self, number: &str, code: &str) -> Message;
    async fn devices(&self) -> Message;
    async fn revoke(&self, device_id: &str) -> Message;
    async fn is_account_blocked(&self) -> Message;
}

impl Lifecycle for Phone {
    async fn remove_all(&self) -> Message {
        self.set(
            "pims.authentication.enrollment",
            json!({"action": "remove"}),
        )
        .await
    }
    async fn request_reset_code(&self) -> Message {
        self.get("pims.authentication.smscode", json!({"type": "resetPIN"}))
            .await
    }
    async fn reset_pin(&self, pin: &str, code: &str) -> Message {
        self.set(
            "pims.authentication.pincode",
            json!({"action": "reset", "pinCode": pin, "smsCode": code}),
        )
        .await
    }
    async fn update_pin(&self, old: &str, new: &str) -> Message {
        self.set(
            "pims.authentication.pincode",
            json!({"action": "update", "oldPIN": old, "newPIN": new}),
        )
        .await
    }
    async fn certify(&self, number: &str) -> Message {
        self.get(
            "pims.authentication.smscode",
            json!({"type": "phoneNumberCertification", "phoneNumber": number}),
        )
        .await
    }
    async fn modify_number(&self, number: &str, code: &str) -> Message {
        self.set(
            "pims.authentication.smscode",
            json!({"type": "modifyPhoneNumber", "phoneNumber": number, "smsCode": code}),
        )
        .await
    }
    async fn devices(&self) -> Message {
        self.get("pims.authentication.devices", json!({})).await
    }
    async fn revoke(&self, device_id: &str) -> Message {
        self.set(
            "pims.authentication.devices",
            json!({"action": "remove", "deviceId": device_id}),
        )
        .await
    }
    async fn is_account_blocked(&self) -> Message {
        self.get(
            "pims.authentication.account",
            json!({"actionType": "strong", "type": "isAccountBlocked"}),
        )
        .await
    }
}

async fn enrolled_phone(server: &TestServer, subject: &str) -> Phone {
    let phone = Phone::new(&server.url(), Some(server.token(subject).await)).await;
    phone.enroll_first_device(server).await;
    phone
}

fn activated(m: &Message) -> bool {
    ok(m)["isDeviceActivated"].as_bool().unwrap()
}

fn retryable(error: &Value) -> bool {
    error["details"]["retryable"].as_bool().unwrap()
}

/// This device's id, from the device list.
async fn own_device_id(phone: &Phone) -> String {
    let list = ok(&phone.devices().await);
    list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["isThisDevice"] == true)
        .expect("this device is listed")["deviceId"]
        .as_str()
        .unwrap()
        .to_owned()
}

// ---- the tutorial --------------------------------------------------------------------------

#[tokio::test]
async fn account_management_tutorial_reset_update_modify_then_remove() {
    let server =
        TestServer::start_with(|c| c.limits.recovery_hold_after_number_change_seconds = 600).await;
    let phone = enrolled_phone(&server, "u").await;

    // B: reset the PIN with an SMS code.
    let m = phone.request_reset_code().await;
    assert_eq!(ok(&m), Value::Null);
    let code = server.last_code(NUMBER);
    assert_eq!(ok(&phone.reset_pin(NEW_PIN, &code).await), Value::Null);
    ok(&phone.otp_with_pin(NEW_PIN).await);
    let e = failed(&phone.otp_with_pin(PIN).await, 2308, ACCESS_REFUSED);
    assert_eq!(e["details"]["attemptsRemaining"], 4);

    // C: update the PIN with the old one.
    assert_eq!(ok(&phone.update_pin(NEW_PIN, OTHER_PIN).await), Value::Null);
    ok(&phone.otp_with_pin(OTHER_PIN).await);
    failed(&phone.otp_with_pin(NEW_PIN).await, 2308, ACCESS_REFUSED);

    // D: modify the trusted number with a code sent to the new one.
    assert_eq!(ok(&phone.certify(NUMBER2).await), Value::Null);
    let code = server.last_code(NUMBER2);
    assert_eq!(ok(&phone.modify_number(NUMBER2, &code).await), Value::Null);
    // A hold follows the change (its end is told so an app can offer the restore).
    let trusted = ok(&phone
        .get("pims.authentication.trustedphonenumber", json!({}))
        .await);
    assert_eq!(trusted["phoneNumber"], NUMBER2);
    assert!(trusted["recoveryHeldUntil"].as_i64().is_some(), "{trusted}");

    // A: remove every enrollment; the phone and the account start again.
    assert_eq!(ok(&phone.remove_all().await), Value::Null);
    assert!(!activated(&phone.is_device_activated().await));
    assert_eq!(
        server.query_i64(
            "SELECT count(*) FROM devices WHERE account = ?1 AND state != 'disabled'",
            "u"
        ),
        0
    );
    assert_eq!(
        server.query_i64(
            "SELECT count(*) FROM accounts WHERE subject = ?1 AND pin_record IS NULL",
            "u"
        ),
        1
    );
    phone.request_enrollment_code().await;
    let code = server.last_code(NUMBER2);
    let m = phone
        .set(
            "pims.authentication.smscode",
            json!({"action": "enrollment", "smsCode": code}),
        )
        .await;
    assert_eq!(ok(&m), json!({"status": "NotEnrolled"}));
    // A PIN set by SMS alone waits out the hold that the number change started.
    let e = failed(&phone.enroll(PIN, &code).await, 2317, FORBIDDEN);
    assert_eq!(e["details"]["reason"], "recoveryHeld");
    assert_eq!(e["details"]["retryAfterSeconds"], 600);
    server.clock.advance(600);
    phone.request_enrollment_code().await;
    ok(&phone.enroll(PIN, &server.last_code(NUMBER2)).await);
    assert!(activated(&phone.is_device_activated().await));
    ok(&phone.otp_with_pin(PIN).await);
}

// ---- enrollment remove -----------------------------------------------------------------------

#[tokio::test]
async fn remove_is_the_way_out_of_a_pin_blocked_account() {
    let server = TestServer::start_with(|c| c.limits.pin_attempts = 2).await;
    let phone = enrolled_phone(&server, "u").await;
    failed(&phone.otp_with_pin(NEW_PIN).await, 2308, ACCESS_REFUSED);
    failed(&phone.otp_with_pin(NEW_PIN).await, 2310, ACCOUNT_BLOCKED);
    let e = failed(&phone.otp_with_pin(PIN).await, 2317, FORBIDDEN);
    assert!(!retryable(&e));
    assert_eq!(
        ok(&phone.is_account_blocked().await),
        json!({"isAccountBlocked": "PinBlocked"})
    );

    ok(&phone.remove_all().await);
    assert_eq!(
        ok(&phone.is_account_blocked().await),
        json!({"isAccountBlocked": "NotBlocked"})
    );
    phone.enroll_further_device(&server).await;
    ok(&phone.otp_with_pin(PIN).await);
}

#[tokio::test]
async fn remove_errors_2301_and_2314() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server.url(), None).await;
    failed(&phone.remove_all().await, 2301, "Need Basic Authentication");

    let proxy = FaultProxy::start(server.url()).await;
    let phone = Phone::new(&proxy.url(), Some(server.token("u").await)).await;
    phone.enroll_first_device(&server).await;
    proxy.inject("/enrollments/remove", Fault::Unreachable, 1);
    let e = failed(&phone.remove_all().await, 2314, NO_SERVICE);
    assert!(retryable(&e));
    // Nothing changed: the local enrollment is intact and still works.
    assert!(activated(&phone.is_device_activated().await));
    ok(&phone.otp_with_pin(PIN).await);
}

// ---- PIN reset -----------------------------------------------------------------------------

#[tokio::test]
async fn reset_pin_errors_are_exact() {
    let server = TestServer::start().await;
    let token = server.token("u").await;
    let phone = Phone::new(&server.url(), Some(token.clone())).await;

    // No trusted number yet: nowhere to send the code.
    failed(
        &phone.request_reset_code().await,
        2307,
        "User dont have a phone number",
    );
    phone.enroll_first_device(&server).await;
    ok(&phone.request_reset_code().await);
    let code = server.last_code(NUMBER);

    let m = phone
        .set(
            "pims.authentication.pincode",
            json!({"action": "reset", "smsCode": code}),
        )
        .await;
    failed(&m, 2101, "Missing pinCode parameter");
    let m = phone
        .set(
            "pims.authentication.pincode",
            json!({"action": "reset", "pinCode": NEW_PIN}),
        )
        .await;
    failed(&m, 2101, "Missing smsCode parameter");
    failed(
        &phone.reset_pin("12a4", &code).await,
        2102,
        "Invalid pinCode parameter",
    );
    let m = phone
        .set(
            "pims.authentication.pincode",
            json!({"action": "resett", "pinCode": NEW_PIN, "smsCode": code}),
        )
        .await;
    failed(&m, 2102, "Invalid action parameter");

    let wrong = if code == "000000" { "000001" } else { "000000" };
    let e = failed(
        &phone.reset_pin(NEW_PIN, wrong).await,
        2305,
        "The sms code is invalid",
    );
    assert_eq!(e["details"]["attemptsRemaining"], 4);
    assert!(!retryable(&e));

    server
        .clock
        .advance(server.config.limits.sms_code_ttl_seconds as i64);
    let e = failed(
        &phone.reset_pin(NEW_PIN, &code).await,
        2305,
        "The sms code is invalid",
    );
    assert_eq!(
        e["subCode"],
        json!({"code": 2306, "label": "The sms code has expired"})
    );
    // The old PIN still works: nothing was reset.
    ok(&phone.otp_with_pin(PIN).await);

    let stranger = Phone::new(&server.url(), Some(token)).await;
    failed(
        &stranger.reset_pin(NEW_PIN, &code).await,
        2313,
        PRIOR_AUTHENTICATOR,
    );
    let nobody = Phone::new(&server.url(), None).await;
    failed(
        &nobody.reset_pin(NEW_PIN, &code).await,
        2301,
        "Need Basic Authentication",
    );
}

#[tokio::test]
async fn reset_pin_unblocks_the_account() {
    let server = TestServer::start_with(|c| c.limits.pin_attempts = 2).await;
    let phone = enrolled_phone(&server, "u").await;
    failed(&phone.otp_with_pin(NEW_PIN).await, 2308, ACCESS_REFUSED);
    failed(&phone.otp_with_pin(NEW_PIN).await, 2310, ACCOUNT_BLOCKED);
    ok(&phone.request_reset_code().await);
    ok(&phone.reset_pin(NEW_PIN, &server.last_code(NUMBER)).await);
    assert_eq!(
        ok(&phone.is_account_blocked().await),
        json!({"isAccountBlocked": "NotBlocked"})
    );
    ok(&phone.otp_with_pin(NEW_PIN).await);
}

// ---- PIN update ----------------------------------------------------------------------------

#[tokio::test]
async fn update_pin_errors_are_exact() {
    let server = TestServer::start_with(|c| c.limits.pin_attempts = 3).await;
    let token = server.token("u").await;
    let phone = Phone::new(&server.url(), Some(token.clone())).await;
    failed(
        &phone.update_pin(PIN, NEW_PIN).await,
        2313,
        PRIOR_AUTHENTICATOR,
    );
    phone.enroll_first_device(&server).await;

    let m = phone
        .set(
            "pims.authentication.pincode",
            json!({"action": "update", "newPIN": NEW_PIN}),
        )
        .await;
    failed(&m, 2101, "Missing oldPIN parameter");
    let m = phone
        .set(
            "pims.authentication.pincode",
            json!({"action": "update", "oldPIN": PIN}),
        )
        .await;
    failed(&m, 2101, "Missing newPIN parameter");
    failed(
        &phone.update_pin(PIN, "1").await,
        2102,
        "Invalid newPIN parameter",
    );

    // The current PIN again: refused, and the proof of the old PIN resets nothing else.
    let e = failed(&phone.update_pin(PIN, PIN).await, 2315, SAME_PIN);
    assert!(!retryable(&e));
    ok(&phone.otp_with_pin(PIN).await);

    // A wrong old PIN is a counted PIN failure, even when old and new are equal.
    let e = failed(
        &phone.update_pin(NEW_PIN, OTHER_PIN).await,
        2308,
        ACCESS_REFUSED,
    );
    assert_eq!(e["details"]["attemptsRemaining"], 2);
    let e = failed(
        &phone.update_pin(NEW_PIN, NEW_PIN).await,
        2308,
        ACCESS_REFUSED,
    );
    assert_eq!(e["details"]["attemptsRemaining"], 1);
    failed(
        &phone.update_pin(NEW_PIN, OTHER_PIN).await,
        2310,
        ACCOUNT_BLOCKED,
    );
    failed(&phone.update_pin(PIN, NEW_PIN).await, 2317, FORBIDDEN);
    ok(&phone.remove_all().await);
    let nobody = Phone::new(&server.url(), None).await;
    failed(
        &nobody.update_pin(PIN, NEW_PIN).await,
        2301,
        "Need Basic Authentication",
    );
}

#[tokio::test]
async fn update_pin_reaches_the_server_only_once_and_2314_when_unreachable() {
    let server = TestServer::start().await;
    let proxy = FaultProxy::start(server.url()).await;
    let phone = Phone::new(&proxy.url(), Some(server.token("u").await)).await;
    phone.enroll_first_device(&server).await;
    proxy.inject("/challenges", Fault::Unreachable, 1);
    let e = failed(&phone.update_pin(PIN, NEW_PIN).await, 2314, NO_SERVICE);
    assert!(retryable(&e));
    ok(&phone.update_pin(PIN, NEW_PIN).await);
    assert_eq!(proxy.forwarded(ep::PinChangeFinish::ROUTE.path), 1);
    ok(&phone.otp_with_pin(NEW_PIN).await);
}

// ---- phone number --------------------------------------------------------------------------

/// The owner's own way back after a phone thief moved the trusted number: the change notice on
/// the owner's number carries a restore code; typed in the app on a new phone with the owner's
/// login, it gives the number back and disables every device (the thief's forgets its
/// enrollment); the new phone then enrolls with the PIN and gets an OTP with it.
#[tokio::test]
async fn the_owner_restores_a_number_a_thief_moved_from_a_new_phone() {
    let server = TestServer::start().await;
    let stolen = enrolled_phone(&server, "owner").await;
    ok(&stolen.certify(NUMBER2).await);
    ok(&stolen
        .modify_number(NUMBER2, &server.last_code(NUMBER2))
        .await);
    // A number that cannot receive SMS says why; the trusted one is refused as such.
    let e = failed(
        &stolen.certify("0123456789").await,
        2102,
        "Invalid phoneNumber parameter",
    );
    assert_eq!(e["details"]["reason"], "notMobile");
    ok(&stolen.certify(NUMBER2).await);
    let e = failed(
        &stolen
            .modify_number(NUMBER2, &server.last_code(NUMBER2))
            .await,
        2102,
        "Invalid phoneNumber parameter",
    );
    assert_eq!(e["details"]["reason"], "alreadyTrusted");

    // The app can tell a hold runs, and offer the restore.
    let trusted = ok(&stolen
        .get("pims.authentication.trustedphonenumber", json!({}))
        .await);
    assert_eq!(trusted["phoneNumber"], NUMBER2);
    let held_until = trusted["recoveryHeldUntil"]
        .as_i64()
        .expect("the hold's end");
    let notice = server.sms_texts(NUMBER).pop().unwrap();
    let code = pims_server::sms::restore_code_from_text(&notice).expect("a restore code");
    let new_phone = Phone::new(&server.url(), Some(server.token("owner").await)).await;
    let restore = |code: String| {
        new_phone.set(
            "pims.authentication.trustedphonenumber",
            json!({"action": "restore", "smsCode": code}),
        )
    };
    failed(
        &restore("AAAA-BBBB-CCCC".into()).await,
        2305,
        "The sms code is invalid",
    );
    failed(
        &restore("1234".into()).await,
        2102,
        "Invalid smsCode parameter",
    );
    let result = ok(&restore(code.clone()).await);
    assert_eq!(result["phoneNumber"], NUMBER);
    assert!(held_until > 0);
    // The hold is over: the trusted number reads without it.
    assert_eq!(result, json!({ "phoneNumber": NUMBER }));
    let e = failed(&restore(code).await, 2317, FORBIDDEN);
    assert_eq!(e["details"]["reason"], "nothingToRestore");
    assert_eq!(
        ok(&new_phone
            .get("pims.authentication.trustedphonenumber", json!({}))
            .await),
        json!({ "phoneNumber": NUMBER })
    );

    // The thief's phone is out; the owner's new one enrolls with the PIN.
    assert_eq!(
        ok(&stolen.is_device_activated().await)["isDeviceActivated"],
        false
    );
    new_phone.enroll_further_device(&server).await;
    ok(&new_phone.otp_with_pin(PIN).await);
}

#[tokio::test]
async fn modify_phone_number_errors_are_exact() {
    let server = TestServer::start().await;
    let token = server.token("u").await;
    let phone = Phone::new(&server.url(), Some(token.clone())).await;
    phone.add_phone_number(&server, NUMBER).await;
    ok(&phone.certify(NUMBER2).await);
    let code = server.last_code(NUMBER2);
    // A trusted number but no enrolled device.
    failed(
        &phone.modify_number(NUMBER2, &code).await,
        2313,
        PRIOR_AUTHENTICATOR,
    );
    phone.enroll_further_device(&server).await;

    let m = phone
        .set(
            "pims.authentication.smscode",
            json!({"type": "modifyPhoneNumber", "smsCode": code}),
        )
        .await;
    failed(&m, 2101, "Missing phoneNumber parameter");
    let m = phone
        .set(
            "pims.authentication.smscode",
            json!({"type": "modifyPhoneNumber", "phoneNumber": NUMBER2}),
        )
        .await;
    failed(&m, 2101, "Missing smsCode parameter");
    failed(
        &phone.modify_number("+33 abc", &code).await,
        2102,
        "Invalid phoneNumber parameter",
    );
    // The code was sent to NUMBER2, not to this one.
    let e = failed(
        &phone.modify_number("+33611111111", &code).await,
        2305,
        "The sms code is invalid",
    );
    assert!(!retryable(&e));
    ok(&phone.modify_number(NUMBER2, &code).await);
    // Again: the number is the trusted one now (before the code, used up, is even read).
    let e = failed(
        &phone.modify_number(NUMBER2, &code).await,
        2102,
        "Invalid phoneNumber parameter",
    );
    assert_eq!(e["details"]["reason"], "alreadyTrusted");
    let nobody = Phone::new(&server.url(), None).await;
    failed(
        &nobody.modify_number(NUMBER2, &code).await,
        2301,
        "Need Basic Authentication",
    );
}

#[tokio::test]
async fn signed_operations_of_a_revoked_device_give_2312_and_clear_it() {
    let server = TestServer::start().await;
    let first = enrolled_phone(&server, "u").await;
    let second = Phone::new(&server.url(), Some(server.token("u").await)).await;
    ok(&second.certify(NUMBER2).await);
    let certification = server.last_code(NUMBER2);
    for operation in ["reset", "update", "modify"] {
        second.enroll_further_device(&server).await;
        ok(&second.request_reset_code().await);
        let reset_code = server.last_code(NUMBER);
        ok(&first.revoke(&own_device_id(&second).await).await);
        let m = match operation {
            "reset" => second.reset_pin(NEW_PIN, &reset_code).await,
            "update" => second.update_pin(PIN, NEW_PIN).await,
            _ => second.modify_number(NUMBER2, &certification).await,
        };
        failed(&m, 2312, DEVICE_UNKNOWN);
        // Cleared: the next call knows there is no enrollment here.
        failed(
            &second.update_pin(PIN, NEW_PIN).await,
            2313,
            PRIOR_AUTHENTICATOR,
        );
    }
    ok(&first.otp_with_pin(PIN).await);
}

#[tokio::test]
async fn signed_operations_before_the_activation_is_confirmed_give_2316() {
    let server = TestServer::start().await;
    let proxy = FaultProxy::start(server.url()).await;
    let phone = Phone::new(&proxy.url(), Some(server.token("u").await)).await;
    phone.add_phone_number(&server, NUMBER).await;
    phone.request_enrollment_code().await;
    proxy.inject("/activate", Fault::Unreachable, 10);
    failed(
        &phone.enroll(PIN, &server.last_code(NUMBER)).await,
        2316,
        POST_SYNC,
    );
    ok(&phone.request_reset_code().await);
    let code = server.last_code(NUMBER);
    let e = failed(&phone.reset_pin(NEW_PIN, &code).await, 2316, POST_SYNC);
    assert!(retryable(&e));
    failed(&phone.update_pin(PIN, NEW_PIN).await, 2316, POST_SYNC);
    failed(
        &phone.modify_number(NUMBER2, "123456").await,
        2316,
        POST_SYNC,
    );
    // Once the activation goes through, the same call succeeds.
    proxy.clear_faults();
    ok(&phone.reset_pin(NEW_PIN, &code).await);
    ok(&phone.otp_with_pin(NEW_PIN).await);
}

#[tokio::test]
async fn reset_code_requests_are_rate_limited_with_a_retry_delay() {
    // The first enrollment sends two SMS (certification, enrollment).
    let server = TestServer::start_with(|c| c.limits.sms_sends_per_hour_per_account = 3).await;
    let phone = enrolled_phone(&server, "u").await;
    ok(&phone.request_reset_code().await);
    let e = failed(&phone.request_reset_code().await, 2204, "Server Error");
    assert!(retryable(&e));
    assert!(e["details"]["retryAfterSeconds"].as_u64().unwrap() > 0);
}

// ---- devices -------------------------------------------------------------------------------

#[tokio::test]
async fn devices_are_listed_with_this_device_marked() {
    let server = TestServer::start().await;
    let first = enrolled_phone(&server, "u").await;
    let second = Phone::new(&server.url(), Some(server.token("u").await)).await;
    second.enroll_further_device(&server).await;

    let list = ok(&first.devices().await);
    let devices = list["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    for d in devices {
        assert_eq!(d["name"], "ios device");
        assert_eq!(d["platform"], "ios");
        assert_eq!(d["state"], "Active");
        assert!(d["createdAt"].as_i64().unwrap() > 0);
        assert!(d["deviceId"].as_str().unwrap().len() >= 32);
    }
    assert_eq!(
        devices.iter().filter(|d| d["isThisDevice"] == true).count(),
        1
    );
    assert_ne!(own_device_id(&first).await, own_device_id(&second).await);
    // Using a device records when.
    ok(&first.otp_with_pin(PIN).await);
    let id = own_device_id(&first).await;
    let list = ok(&second.devices().await);
    let used = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deviceId"] == id.as_str())
        .unwrap()["lastUsedAt"]
        .clone();
    assert!(used.as_i64().is_some(), "{list}");
}

#[tokio::test]
async fn revoking_a_device_from_another_takes_effect_on_its_next_call() {
    let server = TestServer::start().await;
    let first = enrolled_phone(&server, "u").await;
    let second = Phone::new(&server.url(), Some(server.token("u").await)).await;
    second.enroll_further_device(&server).await;
    let second_id = own_device_id(&second).await;

    assert_eq!(ok(&first.revoke(&second_id).await), Value::Null);
    let e = failed(&second.otp_with_pin(PIN).await, 2312, DEVICE_UNKNOWN);
    assert!(!retryable(&e));
    // Its local state is cleared, so it reports not activated and can enroll again.
    assert!(!activated(&second.is_device_activated().await));
    second.enroll_further_device(&server).await;
    ok(&second.otp_with_pin(PIN).await);
    ok(&first.otp_with_pin(PIN).await);
}

#[tokio::test]
async fn a_revoked_device_learns_it_from_is_device_activated() {
    let server = TestServer::start().await;
    let first = enrolled_phone(&server, "u").await;
    let second = Phone::new(&server.url(), Some(server.token("u").await)).await;
    second.enroll_further_device(&server).await;
    ok(&first.revoke(&own_device_id(&second).await).await);
    assert!(!activated(&second.is_device_activated().await));
    failed(&second.otp_with_pin(PIN).await, 2313, PRIOR_AUTHENTICATOR);
}

#[tokio::test]
async fn revoke_errors_are_exact() {
    let server = TestServer::start().await;
    let phone = enrolled_phone(&server, "u").await;
    let m = phone
        .set("pims.authentication.devices", json!({"action": "remove"}))
        .await;
    failed(&m, 2101, "Missing deviceId parameter");
    let m = phone
        .set(
            "pims.authentication.devices",
            json!({"action": "delete", "deviceId": "x"}),
        )
        .await;
    failed(&m, 2102, "Invalid action parameter");
    failed(&phone.revoke("no-such-device").await, 2312, DEVICE_UNKNOWN);
    let nobody = Phone::new(&server.url(), None).await;
    failed(&nobody.devices().await, 2301, "Need Basic Authentication");
    failed(
        &nobody.revoke("no-such-device").await,
        2301,
        "Need Basic Authentication",
    );
    // Revoking this device itself clears it here at once.
    let id = own_device_id(&phone).await;
    ok(&phone.revoke(&id).await);
    failed(&phone.revoke(&id).await, 2312, DEVICE_UNKNOWN);
    failed(&phone.otp_with_pin(PIN).await, 2313, PRIOR_AUTHENTICATOR);
}

#[tokio::test]
async fn an_account_can_never_list_or_revoke_another_accounts_devices() {
    let server = TestServer::start().await;
    let alice = enrolled_phone(&server, "alice").await;
    let mallory = Phone::new(&server.url(), Some(server.token("mallory").await)).await;
    let alice_id = own_device_id(&alice).await;

    assert_eq!(ok(&mallory.devices().await), json!({"devices": []}));
    failed(&mallory.revoke(&alice_id).await, 2312, DEVICE_UNKNOWN);
    ok(&alice.otp_with_pin(PIN).await);
    assert_eq!(
        ok(&alice.devices().await)["devices"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn the_device_limit_gives_2317() {
    let server = TestServer::start_with(|c| c.limits.max_devices_per_account = 1).await;
    enrolled_phone(&server, "u").await;
    let second = Phone::new(&server.url(), Some(server.token("u").await)).await;
    second.request_enrollment_code().await;
    let e = failed(
        &second.enroll(PIN, &server.last_code(NUMBER)).await,
        2317,
        FORBIDDEN,
    );
    assert!(!retryable(&e));
    assert_eq!(server.devices("u"), 1);
}

// ---- events --------------------------------------------------------------------------------

struct Subscription {
    messages: Arc<Mutex<Vec<Message>>>,
}

impl Subscription {
    async fn start(phone: &Phone) -> Subscription {
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        phone
            .pims
            .subscribe("pims.authentication.enrollment", json!({}), move |m| {
                sink.lock().unwrap().push(m)
            });
        let sub = Subscription { messages };
        sub.wait_for(1).await;
        assert_eq!(
            sub.all()[0].status.as_str(),
            "SUCCEEDED",
            "{}",
            sub.all()[0]
        );
        sub
    }

    fn all(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<Value> {
        self.all()
            .iter()
            .skip(1)
            .map(|m| {
                assert_eq!(m.status.as_str(), "RESULT");
                assert_eq!(m.transaction_id, self.all()[0].transaction_id);
                m.result.clone().unwrap()
            })
            .collect()
    }

    async fn wait_for(&self, count: usize) {
        for _ in 0..100 {
            if self.messages.lock().unwrap().len() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {count} messages, got {:?}", self.all());
    }
}

async fn polling_phone(server: &TestServer, subject: &str, url: &str) -> Phone {
    let host = pims_strongauth::host::Host::new(Arc::new(pims_strongauth::host::StaticToken(
        Some(server.token(subject).await),
    )));
    let dir = tempfile::tempdir().unwrap().keep();
    Phone::with_host(url, host, dir, "ios", json!({"eventPollSeconds": 0.2})).await
}

#[tokio::test]
async fn events_arrive_once_per_change_and_stop_after_unsubscribe() {
    let server = TestServer::start_with(|c| c.limits.pin_attempts = 2).await;
    let phone = polling_phone(&server, "u", &server.url()).await;
    phone.enroll_first_device(&server).await;
    let other = Phone::new(&server.url(), Some(server.token("u").await)).await;
    other.enroll_further_device(&server).await;

    let sub = Subscription::start(&phone).await;
    let (tx, rx) = std::sync::mpsc::channel();
    phone
        .pims
        .subscribe("pims.authentication.enrollment", json!({}), move |m| {
            let _ = tx.send(m);
        });
    failed(
        &rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        2005,
        "Duplicate command",
    );

    // Every change below happens on the other device: this phone sees it by polling.
    failed(&other.otp_with_pin(NEW_PIN).await, 2308, ACCESS_REFUSED);
    failed(&other.otp_with_pin(NEW_PIN).await, 2310, ACCOUNT_BLOCKED);
    sub.wait_for(2).await;
    ok(&other.request_reset_code().await);
    ok(&other.reset_pin(PIN, &server.last_code(NUMBER)).await);
    sub.wait_for(3).await;
    ok(&other.revoke(&own_device_id(&phone).await).await);
    sub.wait_for(4).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        sub.events(),
        vec![
            json!({"event": "accountBlocked", "isDeviceActivated": true, "isAccountBlocked": "PinBlocked"}),
            json!({"event": "accountUnblocked", "isDeviceActivated": true, "isAccountBlocked": "NotBlocked"}),
            json!({"event": "deviceDeactivated", "isDeviceActivated": false, "isAccountBlocked": "NotBlocked"}),
        ]
    );

    let (tx, rx) = std::sync::mpsc::channel();
    phone
        .pims
        .unsubscribe("pims.authentication.enrollment", move |m| {
            tx.send(m).unwrap()
        });
    ok(&rx.recv_timeout(Duration::from_secs(5)).unwrap());
    // Unblocking and enrolling again change the state, but nobody listens any more.
    ok(&other.remove_all().await);
    phone.enroll_further_device(&server).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sub.events().len(), 3);
}

#[tokio::test]
async fn the_sdks_own_calls_raise_events_without_waiting_for_the_poll() {
    let server = TestServer::start_with(|c| c.limits.pin_attempts = 1).await;
    let host = pims_strongauth::host::Host::new(Arc::new(pims_strongauth::host::StaticToken(
        Some(server.token("u").await),
    )));
    let dir = tempfile::tempdir().unwrap();
    let phone = Phone::with_host(
        &server.url(),
        host,
        dir.path().into(),
        "ios",
        json!({"eventPollSeconds": 3600}),
    )
    .await;
    phone.add_phone_number(&server, NUMBER).await;
    let sub = Subscription::start(&phone).await;

    phone.enroll_further_device(&server).await;
    sub.wait_for(2).await;
    failed(&phone.otp_with_pin(NEW_PIN).await, 2310, ACCOUNT_BLOCKED);
    sub.wait_for(3).await;
    ok(&phone.remove_all().await);
    sub.wait_for(5).await;
    assert_eq!(
        sub.events(),
        vec![
            json!({"event": "deviceActivated", "isDeviceActivated": true, "isAccountBlocked": "NotBlocked"}),
            json!({"event": "accountBlocked", "isDeviceActivated": true, "isAccountBlocked": "PinBlocked"}),
            json!({"event": "deviceDeactivated", "isDeviceActivated": false, "isAccountBlocked": "PinBlocked"}),
            json!({"event": "accountUnblocked", "isDeviceActivated": false, "isAccountBlocked": "NotBlocked"}),
        ]
    );
}

#[tokio::test]
async fn an_activation_finished_after_2316_is_an_event() {
    let server = TestServer::start().await;
    let proxy = FaultProxy::start(server.url()).await;
    let phone = polling_phone(&server, "u", &proxy.url()).await;
    phone.add_phone_number(&server, NUMBER).await;
    let sub = Subscription::start(&phone).await;

    phone.request_enrollment_code().await;
    proxy.inject("/activate", Fault::Unreachable, 1);
    failed(
        &phone.enroll(PIN, &server.last_code(NUMBER)).await,
        2316,
        POST_SYNC,
    );
    sub.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        sub.events(),
        vec![
            json!({"event": "deviceActivated", "isDeviceActivated": true, "isAccountBlocked": "NotBlocked"})
        ]
    );
}

// ---- Android SMS reader --------------------------------------------------------------------

/// The app's SMS Retriever, reading the server's development outbox after `delay`.
struct OutboxReader {
    outbox: std::path::PathBuf,
    delay: Duration,
}

impl pims_strongauth::host::SmsCodeProvider for OutboxReader {
    fn sms_code(&self, timeout: Duration) -> Option<String> {
        std::thread::sleep(self.delay.min(timeout * 2));
        let messages = pims_server::sms::read_outbox(&self.outbox).ok()?;
        let last = messages.iter().rev().find(|m| m.to == NUMBER)?;
        pims_server::sms::code_from_text(&last.text)
    }
}

async fn phone_with_reader(server: &TestServer, platform: &str, delay: Duration) -> Phone {
    let mut host = pims_strongauth::host::Host::new(Arc::new(pims_strongauth::host::StaticToken(
        Some(server.token("u").await),
    )));
    host.sms_codes = Some(Arc::new(OutboxReader {
        outbox: server.config.sms_outbox.clone(),
        delay,
    }));
    let dir = tempfile::tempdir().unwrap().keep();
    Phone::with_host(
        &server.url(),
        host,
        dir,
        platform,
        json!({"smsCodeTimeoutSeconds": 1}),
    )
    .await
}

fn enroll_without_code() -> Value {
    json!({"action": "enroll", "pinCode": PIN})
}

#[tokio::test]
async fn android_reads_the_sms_code_from_the_host() {
    let server = TestServer::start().await;
    let phone = phone_with_reader(&server, "android", Duration::from_millis(100)).await;
    phone.add_phone_number(&server, NUMBER).await;
    phone.request_enrollment_code().await;
    ok(&phone
        .set("pims.authentication.enrollment", enroll_without_code())
        .await);
    assert!(activated(&phone.is_device_activated().await));
}

#[tokio::test]
async fn android_gives_2101_when_the_sms_never_comes() {
    let server = TestServer::start().await;
    let phone = phone_with_reader(&server, "android", Duration::from_secs(3)).await;
    phone.add_phone_number(&server, NUMBER).await;
    phone.request_enrollment_code().await;
    let started = std::time::Instant::now();
    let m = phone
        .set("pims.authentication.enrollment", enroll_without_code())
        .await;
    failed(&m, 2101, "Missing smsCode parameter");
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(server.devices("u"), 0);
}

#[tokio::test]
async fn ios_and_desktop_still_require_the_sms_code() {
    let server = TestServer::start().await;
    for platform in ["ios", "desktop"] {
        let phone = phone_with_reader(&server, platform, Duration::ZERO).await;
        let m = phone
            .set("pims.authentication.enrollment", enroll_without_code())
            .await;
        failed(&m, 2101, "Missing smsCode parameter");
    }
}

// ---- re-enroll contract --------------------------------------------------------------------

#[tokio::test]
async fn a_vault_lost_on_reinstall_reads_not_activated_and_enrolls_again() {
    let server = TestServer::start().await;
    let token = server.token("u").await;
    let dir = tempfile::tempdir().unwrap();
    {
        let phone = Phone::at(&server.url(), Some(token.clone()), dir.path().into(), "ios").await;
        phone.enroll_first_device(&server).await;
    }
    std::fs::remove_dir_all(dir.path()).unwrap();
    let phone = Phone::at(&server.url(), Some(token), dir.path().into(), "ios").await;
    assert!(!activated(&phone.is_device_activated().await));
    phone.enroll_further_device(&server).await;
    ok(&phone.otp_with_pin(PIN).await);
    // The lost device stays listed until revoked (or the limit makes the app remove all).
    assert_eq!(
        ok(&phone.devices().await)["devices"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn an_undecryptable_vault_reports_2311_until_enroll_replaces_it() {
    let server = TestServer::start().await;
    let token = server.token("u").await;
    let dir = tempfile::tempdir().unwrap();
    let phone = Phone::at(&server.url(), Some(token.clone()), dir.path().into(), "ios").await;
    phone.enroll_first_device(&server).await;
    drop(phone);
    // The vault key is gone (a restored backup, a reset keystore): the vault cannot be read.
    std::fs::write(dir.path().join("strongauth.key"), [7u8; 32]).unwrap();

    let phone = Phone::at(&server.url(), Some(token), dir.path().into(), "ios").await;
    failed(&phone.is_device_activated().await, 2311, STATE_NOT_CORRECT);
    failed(&phone.otp_with_pin(PIN).await, 2311, STATE_NOT_CORRECT);
    phone.enroll_further_device(&server).await;
    assert!(activated(&phone.is_device_activated().await));
    ok(&phone.otp_with_pin(PIN).await);
}

#[tokio::test]
async fn a_device_the_server_forgot_reads_not_activated_and_enrolls_again() {
    let server = TestServer::start().await;
    let phone = enrolled_phone(&server, "u").await;
    // Another phone of the same user removes every enrollment.
    let other = Phone::new(&server.url(), Some(server.token("u").await)).await;
    ok(&other.remove_all().await);
    assert!(!activated(&phone.is_device_activated().await));
    phone.enroll_further_device(&server).await;
    ok(&phone.otp_with_pin(PIN).await);
}

#[tokio::test]
async fn subscribing_without_an_access_token_gives_2301() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server.url(), None).await;
    let (tx, rx) = std::sync::mpsc::channel();
    phone
        .pims
        .subscribe("pims.authentication.enrollment", json!({}), move |m| {
            let _ = tx.send(m);
        });
    failed(
        &rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        2301,
        "Need Basic Authentication",
    );
    // A failed subscription is not held: a later one is not a duplicate.
    let (tx, rx) = std::sync::mpsc::channel();
    phone
        .pims
        .subscribe("pims.authentication.enrollment", json!({}), move |m| {
            let _ = tx.send(m);
        });
    failed(
        &rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        2301,
        "Need Basic Authentication",
    );
}
