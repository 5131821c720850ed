//! An app user's access token from a real OpenID provider (`oidc-provider` on Node, the
//! server's test harness) carries the whole SDK path: enrollment through the facade, then an
//! OTP with PIN that the relying party verifies. The server knows only the issuer and finds
//! the key set through the discovery document.

#[path = "../crates/pims-server/tests/server/oidc.rs"]
#[allow(dead_code)]
mod oidc;
mod support;

use pims_server::config::AccessTokenConfig;
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_real_providers_access_token_enrolls_through_the_sdk_and_gets_an_otp() {
    let Some(provider) = oidc::Provider::start("http://127.0.0.1:1/unused").await else {
        return;
    };
    let issuer = provider.issuer.clone();
    let server = TestServer::start_with(move |c| {
        c.dev_issuer = false;
        c.access_tokens = Some(AccessTokenConfig {
            issuer,
            audience: "pims".into(),
            jwks_url: None,
            algorithms: vec!["ES256".into()],
            leeway_seconds: 30,
            jwks_cache_seconds: 300,
            jwks_min_refresh_seconds: 0,
        });
    })
    .await;
    // The provider's tokens carry real times.
    oidc::to_real_time(&server.clock);
    let token = provider.access_token(oidc::ALICE, oidc::PIMS_ES256).await;

    let phone = Phone::new(&server.url(), Some(token)).await;
    phone.enroll_first_device(&server).await;
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": true})
    );
    let otp = ok(&phone.otp_with_pin(PIN).await)["otp"]
        .as_str()
        .expect("an OTP")
        .to_owned();
    let (status, verified) = server.verify_otp(&otp).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["subject"], "alice");
}
