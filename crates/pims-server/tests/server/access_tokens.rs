//! JWT access tokens of an identity provider whose JWKS the test serves over loopback HTTP,
//! with keys generated here. Every rejected token answers 401 Unauthenticated (2301 in the SDK).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey;
use pims_proto::endpoint::{self as ep, Endpoint};
use pims_proto::*;
use pims_server::config::AccessTokenConfig;
use rand::rngs::OsRng;
use serde_json::{json, Value};

use crate::common::*;

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "pims";

struct Key {
    kid: String,
    signing: SigningKey,
}

impl Key {
    fn new(kid: &str) -> Key {
        Key {
            kid: kid.into(),
            signing: SigningKey::random(&mut OsRng),
        }
    }

    fn jwk(&self) -> Value {
        let point = self.signing.verifying_key().to_encoded_point(false);
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        })
    }

    fn sign(&self, claims: &Value) -> String {
        let der = self.signing.to_pkcs8_der().unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(der.as_bytes())).unwrap()
    }
}

/// The provider's JWKS endpoint on loopback; counts how often it is fetched.
struct Provider {
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicU32>,
    url: String,
}

impl Provider {
    async fn start(keys: &[&Key]) -> Provider {
        let jwks = Arc::new(Mutex::new(json!({ "keys": [] })));
        let fetches = Arc::new(AtomicU32::new(0));
        let (j, f) = (jwks.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (j, f) = (j.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let body = j.lock().unwrap().clone();
                    axum::Json(body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let provider = Provider { jwks, fetches, url };
        provider.publish(keys);
        provider
    }

    fn publish(&self, keys: &[&Key]) {
        *self.jwks.lock().unwrap() =
            json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() });
    }

    fn fetches(&self) -> u32 {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn claims() -> Value {
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": START, "exp": START + 300 })
}

fn with(mut base: Value, field: &str, value: Value) -> Value {
    base[field] = value;
    base
}

async fn server(provider: &Provider) -> TestServer {
    let url = provider.url.clone();
    TestServer::start_with(move |c| {
        c.dev_issuer = false;
        c.access_tokens = Some(AccessTokenConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_url: Some(url),
            algorithms: vec!["ES256".into()],
            leeway_seconds: 30,
            jwks_cache_seconds: 300,
            jwks_min_refresh_seconds: 0,
        });
    })
    .await
}

async fn account_with(s: &TestServer, token: &str) -> Result<AccountStatus, ApiError> {
    decode(s.at(ep::Account::ROUTE, &[], token).send().await.unwrap()).await
}

#[tokio::test]
async fn a_token_signed_by_a_published_key_is_accepted_and_the_key_set_cached() {
    let key = Key::new("k1");
    let provider = Provider::start(&[&key]).await;
    let s = server(&provider).await;
    let status = account_with(&s, &key.sign(&claims())).await.unwrap();
    assert_eq!(status.pin, PinState::NotSet);
    account_with(&s, &key.sign(&claims())).await.unwrap();
    assert_eq!(provider.fetches(), 1);
    // A list of audiences containing ours is fine too.
    let listed = with(claims(), "aud", json!(["other", AUDIENCE]));
    account_with(&s, &key.sign(&listed)).await.unwrap();
}

#[tokio::test]
async fn every_kind_of_bad_token_is_unauthenticated() {
    let key = Key::new("k1");
    let provider = Provider::start(&[&key]).await;
    let s = server(&provider).await;
    let claims_b64 = URL_SAFE_NO_PAD.encode(claims().to_string());
    let unsigned = format!(
        "{}.{claims_b64}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#)
    );
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("k1".into());
    let symmetric =
        jsonwebtoken::encode(&hs_header, &claims(), &EncodingKey::from_secret(b"k1")).unwrap();
    let impostor = Key {
        kid: "k1".into(),
        signing: SigningKey::random(&mut OsRng),
    };
    let cases = [
        ("alg none", unsigned),
        ("algorithm not allowed", symmetric),
        ("bad signature", impostor.sign(&claims())),
        (
            "expired",
            key.sign(&with(claims(), "exp", json!(START - 31))),
        ),
        (
            "not yet valid",
            key.sign(&with(claims(), "nbf", json!(START + 31))),
        ),
        (
            "wrong issuer",
            key.sign(&with(claims(), "iss", json!("https://evil.test"))),
        ),
        (
            "wrong audience",
            key.sign(&with(claims(), "aud", json!("someone-else"))),
        ),
        ("unknown key", Key::new("k2").sign(&claims())),
        ("not a JWT", "garbage".to_string()),
    ];
    for (what, token) in cases {
        assert_eq!(
            account_with(&s, &token).await,
            Err(ApiError::Unauthenticated),
            "{what}"
        );
    }
    // Within the leeway, the time claims still pass.
    let skewed = with(
        with(claims(), "exp", json!(START - 29)),
        "nbf",
        json!(START + 29),
    );
    account_with(&s, &key.sign(&skewed)).await.unwrap();
}

#[tokio::test]
async fn an_unknown_key_id_refetches_the_key_set_so_rotation_works() {
    let old = Key::new("2026-01");
    let provider = Provider::start(&[&old]).await;
    let s = server(&provider).await;
    account_with(&s, &old.sign(&claims())).await.unwrap();
    assert_eq!(provider.fetches(), 1);

    let new = Key::new("2026-02");
    provider.publish(&[&old, &new]);
    account_with(&s, &new.sign(&claims())).await.unwrap();
    assert_eq!(provider.fetches(), 2);

    // A key the provider never published is refused after one more look.
    let stranger = Key::new("never-published");
    assert_eq!(
        account_with(&s, &stranger.sign(&claims())).await,
        Err(ApiError::Unauthenticated)
    );
    assert_eq!(provider.fetches(), 3);
}
