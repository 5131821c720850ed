use pims_proto::endpoint::{self as ep, Endpoint};
use pims_proto::*;

use crate::common::*;

#[tokio::test]
async fn health_check_answers() {
    let s = TestServer::start().await;
    let r = s
        .http
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn unsupported_or_missing_protocol_version_is_refused() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    let expected = ApiError::UnsupportedProtocol {
        supported: vec![1, 2],
    };
    let r = s
        .http
        .get(format!("{}{}", s.url, ep::Account::ROUTE.path))
        .header(PROTOCOL_HEADER, "3")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 426);
    assert_eq!(decode::<AccountStatus>(r).await, Err(expected.clone()));
    let r = s
        .http
        .get(format!("{}{}", s.url, ep::Account::ROUTE.path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(decode::<AccountStatus>(r).await, Err(expected));
}

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthenticated() {
    let s = TestServer::start().await;
    let no_token = s
        .http
        .get(format!("{}{}", s.url, ep::Account::ROUTE.path))
        .header(PROTOCOL_HEADER, "1")
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    assert_eq!(
        decode::<AccountStatus>(no_token).await,
        Err(ApiError::Unauthenticated)
    );
    for token in ["garbage", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."] {
        let r = s.at(ep::Account::ROUTE, &[], token).send().await.unwrap();
        assert_eq!(
            decode::<AccountStatus>(r).await,
            Err(ApiError::Unauthenticated)
        );
    }
}

#[tokio::test]
async fn tokens_expire_after_an_hour() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.clock.advance(3600);
    let r = s.at(ep::Account::ROUTE, &[], &token).send().await.unwrap();
    assert_eq!(
        decode::<AccountStatus>(r).await,
        Err(ApiError::Unauthenticated)
    );
}

#[tokio::test]
async fn without_the_development_issuer_no_token_is_minted_or_accepted() {
    let dev = TestServer::start().await;
    let token = dev.token("alice").await;
    let s = TestServer::start_with(|c| c.dev_issuer = false).await;
    let r = s
        .http
        .post(format!("{}{}", s.url, ep::DevTokens::ROUTE.path))
        .json(&DevTokenRequest {
            subject: "alice".into(),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s.at(ep::Account::ROUTE, &[], &token).send().await.unwrap();
    assert_eq!(
        decode::<AccountStatus>(r).await,
        Err(ApiError::Unauthenticated)
    );
}

#[tokio::test]
async fn fresh_account_reads_as_empty() {
    let s = TestServer::start().await;
    let token = s.token("nobody-yet").await;
    assert_eq!(
        s.status(&token, Some("no-such-device")).await,
        AccountStatus {
            phone_number: None,
            pin: PinState::NotSet,
            pin_attempts_remaining: 5,
            device: None,
            recovery_held_until: None,
        }
    );
}

#[tokio::test]
async fn an_account_cannot_see_or_use_another_accounts_device() {
    let s = TestServer::start().await;
    let (_alice, alice_device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let bob = s.token("bob").await;
    assert_eq!(s.status(&bob, Some(&alice_device.id)).await.device, None);
    let mut stolen = Device::new();
    stolen.id = alice_device.id.clone();
    stolen.activation_nonce = alice_device.activation_nonce.clone();
    stolen.key = alice_device.key.clone();
    stolen.counter = 10;
    assert_eq!(
        s.activate(&bob, &mut stolen).await,
        Err(ApiError::DeviceUnknown)
    );
    assert_eq!(
        s.otp(&bob, &mut stolen, None).await.err(),
        Some(ApiError::DeviceUnknown)
    );
    // Alice's device is untouched.
    let alice = s.token("alice").await;
    assert_eq!(
        s.status(&alice, Some(&alice_device.id)).await.device,
        Some(DeviceState::Active)
    );
}

#[tokio::test]
async fn malformed_bodies_name_the_missing_field() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    let r = s
        .at(ep::SmsCodes::ROUTE, &[], &token)
        .json(&serde_json::json!({"phoneNumber": PHONE}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        decode::<SmsCodeSent>(r).await,
        Err(ApiError::InvalidParameter {
            name: "purpose".into()
        })
    );
}

#[tokio::test]
async fn server_restarts_on_the_same_port_and_files() {
    let mut s = TestServer::start().await;
    let (token, device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let port = s.addr().port();
    s.restart().await;
    assert_eq!(s.addr().port(), port);
    let status = s.status(&token, Some(&device.id)).await;
    assert_eq!(status.pin, PinState::Set);
    assert_eq!(status.phone_number.as_deref(), Some(PHONE));
    assert_eq!(status.device, Some(DeviceState::Active));
}
