//! Access tokens from a real OpenID provider (`oidc-provider`, see `oidc.rs`): the server is
//! given only the issuer and finds the key set through the discovery document.

use pims_proto::*;
use pims_server::config::AccessTokenConfig;

use crate::common::*;
use crate::oidc::*;

/// A server trusting `provider` for audience `pims`, its clock at the real time (the
/// provider's tokens carry real times).
async fn server(provider: &Provider, jwks_cache_seconds: u64) -> TestServer {
    let issuer = provider.issuer.clone();
    let s = TestServer::start_with(move |c| {
        c.dev_issuer = false;
        c.access_tokens = Some(AccessTokenConfig {
            issuer,
            audience: "pims".into(),
            jwks_url: None,
            algorithms: vec!["RS256".into(), "ES256".into()],
            leeway_seconds: 30,
            jwks_cache_seconds,
            jwks_min_refresh_seconds: 0,
        });
    })
    .await;
    to_real_time(&s.clock);
    s
}

async fn account(s: &TestServer, token: &str) -> Result<AccountStatus, ApiError> {
    decode(
        s.request(reqwest::Method::GET, "/v1/account", token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn an_app_users_real_access_token_enrolls_a_device_with_rs256_and_es256() {
    let Some(provider) = Provider::start("http://127.0.0.1:1/unused").await else {
        return;
    };
    let s = server(&provider, 300).await;
    let token = provider.access_token(ALICE, PIMS_ES256).await;
    s.certify_phone(&token, PHONE).await;
    let device = s.enroll(&token, "1234").await.unwrap();
    let status = s.status(&token, Some(&device.id)).await;
    assert_eq!(status.pin, PinState::Set);
    assert_eq!(status.device, Some(DeviceState::Active));
    // The same user through an RS256-signed token is the same account.
    let rs256 = provider.access_token(ALICE, PIMS_RS256).await;
    assert_eq!(
        s.status(&rs256, Some(&device.id)).await.device,
        Some(DeviceState::Active)
    );
}

#[tokio::test]
async fn key_rotation_is_followed_without_restart_and_a_retired_key_is_refused() {
    let Some(mut provider) = Provider::start("http://127.0.0.1:1/unused").await else {
        return;
    };
    // No caching, so the retirement is seen at the next request (in production: within
    // `jwks_cache_seconds`).
    let s = server(&provider, 0).await;
    let old = provider.access_token(ALICE, PIMS_ES256).await;
    account(&s, &old).await.unwrap();
    provider.command("rotate").await;
    let new = provider.access_token(ALICE, PIMS_ES256).await;
    assert_ne!(kid(&old), kid(&new));
    account(&s, &new).await.unwrap();
    // The old key is still published: tokens it signed stay good until it is retired.
    account(&s, &old).await.unwrap();
    provider.command("retire").await;
    assert_eq!(
        account(&s, &old).await.unwrap_err(),
        ApiError::Unauthenticated
    );
    account(&s, &new).await.unwrap();
}

#[tokio::test]
async fn tokens_for_another_audience_or_expired_are_refused() {
    let Some(provider) = Provider::start("http://127.0.0.1:1/unused").await else {
        return;
    };
    let s = server(&provider, 300).await;
    let other = provider.access_token(ALICE, OTHER_AUDIENCE).await;
    assert_eq!(
        account(&s, &other).await.unwrap_err(),
        ApiError::Unauthenticated
    );
    let token = provider.access_token(ALICE, PIMS_ES256).await;
    account(&s, &token).await.unwrap();
    // The provider's tokens live 300 s; past that and the 30 s leeway, refused.
    s.clock.advance(300 + 31);
    assert_eq!(
        account(&s, &token).await.unwrap_err(),
        ApiError::Unauthenticated
    );
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}
