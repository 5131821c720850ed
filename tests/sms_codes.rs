//! SMS code rules seen by the app: expiry, the check limit, resend, and send limits.

mod support;

use serde_json::json;
use support::{failed, ok, Phone, TestServer, NUMBER, PIN};

async fn phone_with_number(server: &TestServer) -> Phone {
    let phone = Phone::new(&server.url(), Some(server.token("u").await)).await;
    phone.add_phone_number(server, NUMBER).await;
    phone
}

async fn check(phone: &Phone, code: &str) -> pims_core::Message {
    phone
        .set(
            "pims.authentication.smscode",
            json!({"action": "enrollment", "smsCode": code}),
        )
        .await
}

fn other_than(code: &str) -> String {
    if code == "000000" {
        "111111".into()
    } else {
        "000000".into()
    }
}

#[tokio::test]
async fn an_expired_code_is_invalid_with_sub_code_2306() {
    let server = TestServer::start().await;
    let phone = phone_with_number(&server).await;
    phone.request_enrollment_code().await;
    let code = server.last_code(NUMBER);
    assert_eq!(
        ok(&check(&phone, &code).await),
        json!({"status": "NotEnrolled"})
    );

    server
        .clock
        .advance(server.config.limits.sms_code_ttl_seconds as i64 + 1);
    let error = failed(&check(&phone, &code).await, 2305, "The sms code is invalid");
    assert_eq!(
        error["subCode"],
        json!({"code": 2306, "label": "The sms code has expired"})
    );
    failed(
        &phone.enroll(PIN, &code).await,
        2305,
        "The sms code is invalid",
    );
}

#[tokio::test]
async fn a_code_dies_after_the_check_limit_even_for_the_right_value() {
    let server = TestServer::start().await;
    let phone = phone_with_number(&server).await;
    phone.request_enrollment_code().await;
    let code = server.last_code(NUMBER);
    for remaining in [4, 3, 2, 1, 0] {
        let error = failed(
            &check(&phone, &other_than(&code)).await,
            2305,
            "The sms code is invalid",
        );
        assert_eq!(error["details"]["attemptsRemaining"], remaining);
    }
    failed(&check(&phone, &code).await, 2305, "The sms code is invalid");
    failed(
        &phone.enroll(PIN, &code).await,
        2305,
        "The sms code is invalid",
    );
}

#[tokio::test]
async fn a_resend_while_valid_sends_the_same_code() {
    let server = TestServer::start().await;
    let phone = phone_with_number(&server).await;
    phone.request_enrollment_code().await;
    let first = server.last_code(NUMBER);
    phone.request_enrollment_code().await;
    let second = server.last_code(NUMBER);
    assert_eq!(first, second);
    assert_eq!(server.sms_texts(NUMBER).len(), 3); // certification + two enrollment sends
    ok(&phone.enroll(PIN, &second).await);
}

#[tokio::test]
async fn a_used_code_cannot_enroll_twice() {
    let server = TestServer::start().await;
    let token = server.token("u").await;
    let first = phone_with_number(&server).await;
    first.request_enrollment_code().await;
    let code = server.last_code(NUMBER);
    ok(&first.enroll(PIN, &code).await);
    let second = Phone::new(&server.url(), Some(token)).await;
    failed(
        &second.enroll(PIN, &code).await,
        2305,
        "The sms code is invalid",
    );
}

#[tokio::test]
async fn sending_beyond_the_hourly_limit_is_a_server_error_with_retry_delay() {
    let server = TestServer::start_with(|c| c.limits.sms_sends_per_hour_per_account = 3).await;
    let phone = phone_with_number(&server).await; // send 1
    ok(&phone
        .get("pims.authentication.smscode", json!({"type": "enrollment"}))
        .await);
    ok(&phone
        .get("pims.authentication.smscode", json!({"type": "enrollment"}))
        .await);
    let m = phone
        .get("pims.authentication.smscode", json!({"type": "enrollment"}))
        .await;
    let error = failed(&m, 2204, "Server Error");
    let retry = error["details"]["retryAfterSeconds"].as_u64().unwrap();
    assert!((1..=3600).contains(&retry), "retry after {retry}");
    assert_eq!(server.sms_texts(NUMBER).len(), 3);
}

#[tokio::test]
async fn the_sms_carries_the_autofill_lines() {
    let server = TestServer::start().await;
    let phone = phone_with_number(&server).await;
    phone.request_enrollment_code().await;
    let code = server.last_code(NUMBER);
    let text = server.sms_texts(NUMBER).pop().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&format!("@{} #{code}", server.config.sms_domain).as_str()),
        "{text}"
    );
    assert_eq!(
        lines.last().copied(),
        Some(server.config.sms_app_hash.as_str())
    );
}
