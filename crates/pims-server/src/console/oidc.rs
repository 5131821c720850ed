//! Signing operators in: the authorization code flow with PKCE against the provider, the ID
//! token checked by the same verifier as access tokens (issuer, audience = our client id,
//! signature from the provider's JWKS, expiry) plus the nonce and the operator claim.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::{ConsoleConfig, Expiring, Full};
use crate::jwks::{discover, AccessTokenConfig, Discovery, JwksVerifier};

/// A sign-in may take this long at the provider.
const SIGN_IN_SECONDS: i64 = 600;
/// Live pending sign-ins (anyone can start one) and sessions (operators only) at most.
pub(crate) const MAX_SIGN_INS: usize = 1_000;
const MAX_SESSIONS: usize = 1_000;

#[derive(Clone)]
struct PendingSignIn {
    verifier: String,
    nonce: String,
}

/// A signed-in operator.
#[derive(Clone)]
pub(crate) struct Session {
    pub subject: String,
    pub csrf: String,
}

/// What [`Console::finish_sign_in`] can end with.
pub(crate) enum SignIn {
    /// A session id for the cookie.
    Operator(String),
    /// Signed in at the provider, but without the operator claim.
    NotOperator,
    /// Unknown or replayed `state`, a failed code exchange, a bad ID token or nonce.
    Refused,
}

pub struct Console {
    pub(crate) config: ConsoleConfig,
    http: reqwest::Client,
    id_tokens: JwksVerifier,
    discovery: OnceCell<Discovery>,
    sign_ins: Expiring<PendingSignIn>,
    sessions: Expiring<Session>,
    pub(crate) secure_cookies: bool,
}

pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: String,
}

impl Console {
    pub fn new(config: ConsoleConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let id_tokens = JwksVerifier::new(AccessTokenConfig {
            issuer: config.issuer.clone(),
            audience: config.client_id.clone(),
            jwks_url: None,
            algorithms: vec!["RS256".into(), "ES256".into()],
            leeway_seconds: 30,
            jwks_cache_seconds: 300,
            jwks_min_refresh_seconds: 10,
        })?;
        let secure_cookies = !super::is_loopback(&reqwest::Url::parse(&config.redirect_url)?);
        Ok(Console {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            id_tokens,
            discovery: OnceCell::new(),
            sign_ins: Expiring::new(MAX_SIGN_INS),
            sessions: Expiring::new(MAX_SESSIONS),
            secure_cookies,
            config,
        })
    }

    async fn discovery(&self) -> anyhow::Result<&Discovery> {
        self.discovery
            .get_or_try_init(|| discover(&self.http, &self.config.issuer))
            .await
    }

    /// The provider's authorization URL for a new sign-in, and its `state` (kept in a cookie
    /// of the browser that started it, so a sign-in cannot be finished in another one);
    /// [`Full`] when [`MAX_SIGN_INS`] are pending.
    pub(crate) async fn start_sign_in(
        &self,
        now: i64,
    ) -> anyhow::Result<Result<(String, String), Full>> {
        let endpoint = self
            .discovery()
            .await?
            .authorization_endpoint
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the provider names no authorization_endpoint"))?;
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = reqwest::Url::parse(&endpoint)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair("scope", &format!("openid {}", self.config.operator_claim))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(self
            .sign_ins
            .insert(
                state.clone(),
                now + SIGN_IN_SECONDS,
                PendingSignIn { verifier, nonce },
                now,
            )
            .map(|()| (url.into(), state)))
    }

    /// The provider sent the browser back with `code` for `state`; `cookie_state` is what the
    /// browser's sign-in cookie holds. Each state is used once.
    pub(crate) async fn finish_sign_in(
        &self,
        state: &str,
        cookie_state: Option<&str>,
        code: &str,
        now: i64,
    ) -> anyhow::Result<SignIn> {
        if cookie_state != Some(state) {
            return Ok(SignIn::Refused);
        }
        let Some(pending) = self.sign_ins.take(state, now) else {
            return Ok(SignIn::Refused);
        };
        let endpoint = self
            .discovery()
            .await?
            .token_endpoint
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the provider names no token_endpoint"))?;
        let response = self
            .http
            .post(endpoint)
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.config.redirect_url),
                ("code_verifier", &pending.verifier),
            ])
            .send()
            .await?;
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "console: the provider refused the code");
            return Ok(SignIn::Refused);
        }
        let tokens: TokenResponse = response.json().await?;
        let Ok(claims) = self.id_tokens.verify_claims(&tokens.id_token, now).await else {
            tracing::warn!("console: an ID token failed its checks");
            return Ok(SignIn::Refused);
        };
        if claims.get("nonce").and_then(|n| n.as_str()) != Some(&pending.nonce) {
            tracing::warn!("console: an ID token carried the wrong nonce");
            return Ok(SignIn::Refused);
        }
        let subject = claims["sub"].as_str().unwrap_or_default().to_string();
        let wanted = self.config.operator_value.as_str();
        let operator = match claims.get(&self.config.operator_claim) {
            Some(serde_json::Value::String(s)) => s == wanted,
            Some(serde_json::Value::Array(items)) => items.iter().any(|v| v == wanted),
            _ => false,
        };
        if !operator {
            tracing::warn!(%subject, "console: sign-in without the operator claim");
            return Ok(SignIn::NotOperator);
        }
        let id = random_token();
        self.sessions
            .insert(
                session_key(&id),
                now + self.config.session_seconds as i64,
                Session {
                    subject: subject.clone(),
                    csrf: random_token(),
                },
                now,
            )
            .map_err(|Full| anyhow::anyhow!("{MAX_SESSIONS} console sessions are open"))?;
        tracing::info!(%subject, "console: operator signed in");
        Ok(SignIn::Operator(id))
    }

    pub(crate) fn session(&self, id: &str, now: i64) -> Option<Session> {
        self.sessions.get(&session_key(id), now)
    }

    pub(crate) fn sign_out(&self, id: &str, now: i64) {
        self.sessions.take(&session_key(id), now);
    }
}

/// Sessions are kept under a hash of their id, so memory never holds a usable cookie.
fn session_key(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(id.as_bytes()))
}
