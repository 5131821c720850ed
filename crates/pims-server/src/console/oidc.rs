//! Signing operators in: the authorization code flow with PKCE against the provider, the ID
//! token checked by the same verifier as access tokens (issuer, audience = our client id,
//! signature from the provider's JWKS, expiry) plus the nonce and the operator claim.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use super::ConsoleConfig;
use crate::jwks::{discover, AccessTokenConfig, Discovery, JwksVerifier};

/// A sign-in may take this long at the provider.
const SIGN_IN_SECONDS: i64 = 600;

/// A sign-in under way, sealed into the cookie of the browser that started it: the server keeps
/// nothing until a valid callback, so a flood of sign-in starts costs it nothing.
#[derive(Serialize, Deserialize)]
struct PendingSignIn {
    state: String,
    verifier: String,
    nonce: String,
    /// Where the operator was going (a console path), once signed in.
    next: String,
    expires: i64,
}

/// A signed-in operator, sealed into the session cookie: any replica with the key file reads
/// it, so a second replica never signs an operator out.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    pub subject: String,
    /// `name` or `preferred_username` of the ID token, for display (the audit keeps `subject`).
    pub name: String,
    pub csrf: String,
    /// May look, not act (the provider's `read_only_value` of the operator claim).
    pub read_only: bool,
    expires: i64,
    /// For the provider's sign-out.
    id_token: String,
}

/// What [`Console::finish_sign_in`] can end with.
pub(crate) enum SignIn {
    /// The session cookie's value, and where to go.
    Operator { cookie: String, next: String },
    /// Signed in at the provider, but without the operator claim.
    NotOperator,
    /// A missing, expired or foreign sign-in cookie, a failed code exchange, a bad ID token or
    /// nonce.
    Refused,
}

pub struct Console {
    pub(crate) config: ConsoleConfig,
    http: reqwest::Client,
    id_tokens: JwksVerifier,
    discovery: OnceCell<Discovery>,
    /// Seals the sign-in and session cookies (XChaCha20-Poly1305, key from the key file).
    cookie_key: [u8; 32],
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

/// Where a signed-in operator may be sent back to: a console path, nothing else (no other
/// site, no `//host`, no backslash tricks).
pub(crate) fn console_path(next: &str) -> String {
    let ok = next.starts_with("/console/")
        && !next.contains("//")
        && !next.contains('\\')
        && next.len() <= 512
        && next.chars().all(|c| c.is_ascii_graphic());
    if ok {
        next.to_string()
    } else {
        "/console/".to_string()
    }
}

impl Console {
    pub fn new(config: ConsoleConfig, cookie_key: [u8; 32]) -> anyhow::Result<Self> {
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
            cookie_key,
            secure_cookies,
            config,
        })
    }

    async fn discovery(&self) -> anyhow::Result<&Discovery> {
        self.discovery
            .get_or_try_init(|| discover(&self.http, &self.config.issuer))
            .await
    }

    /// `value` sealed for `purpose` (a sign-in cookie never opens as a session), base64url.
    fn seal(&self, purpose: &str, value: &impl Serialize) -> String {
        let json = serde_json::to_vec(value).expect("cookie values serialize");
        let nonce = crate::service::crypto::random_bytes(24);
        let sealed = XChaCha20Poly1305::new((&self.cookie_key).into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &json,
                    aad: purpose.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any cookie");
        URL_SAFE_NO_PAD.encode([nonce, sealed].concat())
    }

    fn open<T: DeserializeOwned>(&self, purpose: &str, cookie: &str) -> Option<T> {
        let bytes = URL_SAFE_NO_PAD.decode(cookie).ok()?;
        if bytes.len() <= 24 || bytes.len() > 8192 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let json = XChaCha20Poly1305::new((&self.cookie_key).into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: purpose.as_bytes(),
                },
            )
            .ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// The provider's authorization URL for a new sign-in, and the sealed sign-in for the
    /// cookie of the browser that starts it (so it cannot be finished in another one).
    pub(crate) async fn start_sign_in(
        &self,
        next: &str,
        switch: bool,
        now: i64,
    ) -> anyhow::Result<(String, String)> {
        let endpoint = self
            .discovery()
            .await?
            .authorization_endpoint
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the provider names no authorization_endpoint"))?;
        let pending = PendingSignIn {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            next: console_path(next),
            expires: now + SIGN_IN_SECONDS,
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let mut url = reqwest::Url::parse(&endpoint)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair(
                "scope",
                &format!("openid profile {}", self.config.operator_claim),
            )
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if switch {
            // The provider asks who signs in, even with a session of its own.
            url.query_pairs_mut().append_pair("prompt", "login");
        }
        Ok((url.into(), self.seal("sign-in", &pending)))
    }

    /// The provider sent the browser back with `code` for `state`; `cookie` is the browser's
    /// sealed sign-in. The code is good once at the provider; the cookie is cleared.
    pub(crate) async fn finish_sign_in(
        &self,
        state: &str,
        cookie: Option<&str>,
        code: &str,
        now: i64,
    ) -> anyhow::Result<SignIn> {
        let Some(pending) = cookie.and_then(|c| self.open::<PendingSignIn>("sign-in", c)) else {
            return Ok(SignIn::Refused);
        };
        if pending.expires <= now || !bool::from(pending.state.as_bytes().ct_eq(state.as_bytes())) {
            return Ok(SignIn::Refused);
        }
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
        let has = |wanted: &str| match claims.get(&self.config.operator_claim) {
            Some(serde_json::Value::String(s)) => s == wanted,
            Some(serde_json::Value::Array(items)) => items.iter().any(|v| v == wanted),
            _ => false,
        };
        let read_only = match (
            has(&self.config.operator_value),
            &self.config.read_only_value,
        ) {
            (true, _) => false,
            (false, Some(value)) if has(value) => true,
            _ => {
                tracing::warn!(%subject, "console: sign-in without the operator claim");
                return Ok(SignIn::NotOperator);
            }
        };
        let name = ["name", "preferred_username"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(|v| v.as_str()))
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(&subject)
            .chars()
            .filter(|c| !c.is_control())
            .take(80)
            .collect();
        let session = Session {
            subject: subject.clone(),
            name,
            csrf: random_token(),
            read_only,
            expires: now + self.config.session_seconds as i64,
            id_token: tokens.id_token,
        };
        tracing::info!(%subject, read_only, "console: operator signed in");
        Ok(SignIn::Operator {
            cookie: self.seal("session", &session),
            next: pending.next,
        })
    }

    pub(crate) fn session(&self, cookie: &str, now: i64) -> Option<Session> {
        self.open::<Session>("session", cookie)
            .filter(|s| s.expires > now)
    }

    /// Where the browser goes to end the provider's session too (so a shared PC does not sign
    /// the next person straight back in), when the provider has an end-session endpoint.
    pub(crate) async fn provider_sign_out(&self, session: &Session) -> Option<String> {
        let endpoint = self.discovery().await.ok()?.end_session_endpoint.clone()?;
        let mut url = reqwest::Url::parse(&endpoint).ok()?;
        let back = self
            .config
            .redirect_url
            .trim_end_matches("callback")
            .to_string();
        url.query_pairs_mut()
            .append_pair("id_token_hint", &session.id_token)
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", &back);
        Some(url.into())
    }
}
