//! Wrong PINs are counted on the server, exactly, even when they arrive all at once.

mod support;

use futures::future::join_all;
use serde_json::json;
use support::{ok, Phone, TestServer, PIN};

#[tokio::test]
async fn twenty_concurrent_wrong_pins_are_counted_exactly_and_block_at_the_limit() {
    // One SMS code for all twenty phones, so only the PIN decides.
    let server = TestServer::start_with(|c| c.limits.sms_code_max_checks = 100).await;
    let token = server.token("u").await;
    let first = Phone::new(&server.url(), Some(token.clone())).await;
    first.enroll_first_device(&server).await;

    first.request_enrollment_code().await;
    let code = server.last_code(support::NUMBER);
    let mut phones = Vec::new();
    for _ in 0..20 {
        phones.push(Phone::new(&server.url(), Some(token.clone())).await);
    }
    let messages = join_all(phones.iter().map(|p| p.enroll("9999", &code))).await;

    let mut codes: Vec<u32> = messages.iter().map(|m| m.code().expect("FAILED")).collect();
    codes.sort();
    let mut expected = vec![2308; 4];
    expected.push(2310);
    expected.extend([2317; 15]);
    assert_eq!(codes, expected);

    let mut remaining: Vec<i64> = messages
        .iter()
        .filter(|m| m.code() == Some(2308))
        .map(|m| {
            m.to_json()["error"]["details"]["attemptsRemaining"]
                .as_i64()
                .unwrap()
        })
        .collect();
    remaining.sort();
    assert_eq!(remaining, vec![1, 2, 3, 4]);

    assert_eq!(
        server.query_i64("SELECT pin_failures FROM accounts WHERE subject = ?1", "u"),
        5
    );
    let m = first
        .get(
            "pims.authentication.account",
            json!({"actionType": "strong", "type": "isAccountBlocked"}),
        )
        .await;
    assert_eq!(ok(&m), json!({"isAccountBlocked": "PinBlocked"}));
    assert_eq!(server.devices("u"), 1);
}

#[tokio::test]
async fn a_right_pin_resets_the_count() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server.url(), Some(server.token("u").await)).await;
    phone.enroll_first_device(&server).await;
    for remaining in [4, 3] {
        let m = phone.otp_with_pin("0000").await;
        assert_eq!(
            m.to_json()["error"]["details"]["attemptsRemaining"],
            remaining,
            "{m}"
        );
    }
    ok(&phone.otp_with_pin(PIN).await);
    assert_eq!(
        server.query_i64("SELECT pin_failures FROM accounts WHERE subject = ?1", "u"),
        0
    );
    let m = phone.otp_with_pin("0000").await;
    assert_eq!(m.to_json()["error"]["details"]["attemptsRemaining"], 4);
}
