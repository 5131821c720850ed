//! Limits per client address, across accounts and numbers: 429 with the time to wait.

use pims_proto::endpoint::{self as ep, Endpoint};
use pims_proto::*;

use crate::common::*;

async fn send_from(
    s: &TestServer,
    subject: &str,
    phone: &str,
    address: &str,
) -> Result<SmsCodeSent, ApiError> {
    let token = s.token(subject).await;
    decode(
        s.at(ep::SmsCodes::ROUTE, &[], &token)
            .header("x-forwarded-for", format!("203.0.113.9, {address}"))
            .json(&SendSmsCode {
                purpose: SmsPurpose::PhoneCertification,
                phone_number: Some(phone.into()),
                region: None,
            })
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn sms_sends_from_one_address_are_limited_across_accounts() {
    let s = TestServer::start_with(|c| {
        c.trust_forwarded_for = true;
        c.limits.sms_sends_per_hour_per_address = 2;
    })
    .await;
    send_from(&s, "a", "+33600000001", "198.51.100.7")
        .await
        .unwrap();
    s.clock.advance(60);
    send_from(&s, "b", "+33600000002", "198.51.100.7")
        .await
        .unwrap();
    assert_eq!(
        send_from(&s, "c", "+33600000003", "198.51.100.7")
            .await
            .err(),
        Some(ApiError::RateLimited {
            retry_after_seconds: 3540
        })
    );
    // The load balancer's entry is the last one; what the client wrote before it is ignored.
    send_from(&s, "c", "+33600000003", "198.51.100.8")
        .await
        .unwrap();
}

#[tokio::test]
async fn without_a_trusted_proxy_the_socket_address_counts() {
    let s = TestServer::start_with(|c| c.limits.sms_sends_per_hour_per_address = 1).await;
    send_from(&s, "a", "+33600000001", "198.51.100.7")
        .await
        .unwrap();
    // A forged header does not help: both come from 127.0.0.1.
    assert!(matches!(
        send_from(&s, "b", "+33600000002", "198.51.100.8").await,
        Err(ApiError::RateLimited { .. })
    ));
}
