//! Access tokens of the operator's identity provider: JWTs signed with a key from its JWKS,
//! checked against the configured issuer, audience and allowed algorithms. The key set is
//! fetched over HTTP, cached, refetched when it is older than the cache lifetime, and refetched
//! at once (at most every `jwks_min_refresh_seconds`, so forged `kid`s cannot hammer the
//! provider) when a token names a key the cache does not hold, which is how key rotation
//! reaches the server.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pims_proto::ApiError;
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use crate::auth::{valid_subject, TokenVerifier};

/// `[access_tokens]` of the server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessTokenConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud` (the token may list several).
    pub audience: String,
    /// The provider's JWKS document; when absent, the `jwks_uri` of the issuer's discovery
    /// document (`{issuer}/.well-known/openid-configuration`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Accepted `alg` values; only asymmetric ones are supported.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    #[serde(default = "default_cache")]
    pub jwks_cache_seconds: u64,
    #[serde(default = "default_min_refresh")]
    pub jwks_min_refresh_seconds: u64,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_leeway() -> u64 {
    30
}
fn default_cache() -> u64 {
    300
}
fn default_min_refresh() -> u64 {
    10
}

impl AccessTokenConfig {
    pub fn allowed(&self) -> anyhow::Result<Vec<Algorithm>> {
        self.algorithms
            .iter()
            .map(|a| match a.as_str() {
                "RS256" => Ok(Algorithm::RS256),
                "ES256" => Ok(Algorithm::ES256),
                other => anyhow::bail!("access_tokens.algorithms: {other} is not supported"),
            })
            .collect()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    nbf: Option<i64>,
}

struct Cached {
    keys: HashMap<String, (Jwk, DecodingKey)>,
    fetched_at: Option<Instant>,
}

pub struct JwksVerifier {
    config: AccessTokenConfig,
    allowed: Vec<Algorithm>,
    http: reqwest::Client,
    cache: RwLock<Cached>,
    /// Serialises refetches and remembers when the last one started.
    refetch: Mutex<Option<Instant>>,
    /// `jwks_url`, or the one the discovery document named.
    jwks_url: OnceLock<String>,
}

/// The fields of an OpenID provider's discovery document the server uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    /// RP-initiated logout (the console's sign-out ends the provider's session there too).
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// Reads `{issuer}/.well-known/openid-configuration`; its `issuer` must be the one asked for
/// (OpenID Connect Discovery 4.3), so a document cannot point at another provider's keys.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> anyhow::Result<Discovery> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc: Discovery = http
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(
        doc.issuer == issuer,
        "the discovery document of {issuer} names another issuer"
    );
    Ok(doc)
}

impl JwksVerifier {
    pub fn new(config: AccessTokenConfig) -> anyhow::Result<Self> {
        let allowed = config.allowed()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(JwksVerifier {
            config,
            allowed,
            http,
            cache: RwLock::new(Cached {
                keys: HashMap::new(),
                fetched_at: None,
            }),
            refetch: Mutex::new(None),
            jwks_url: OnceLock::new(),
        })
    }

    fn is_fresh(&self, cache: &Cached) -> bool {
        cache
            .fetched_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(self.config.jwks_cache_seconds))
    }

    async fn key(&self, kid: &str) -> Option<(Jwk, DecodingKey)> {
        {
            let cache = self.cache.read().await;
            if self.is_fresh(&cache) {
                if let Some(k) = cache.keys.get(kid) {
                    return Some(k.clone());
                }
            }
        }
        self.refetch(kid).await;
        self.cache.read().await.keys.get(kid).cloned()
    }

    async fn refetch(&self, kid: &str) {
        let mut last = self.refetch.lock().await;
        {
            // Another request may have refetched while this one waited.
            let cache = self.cache.read().await;
            if self.is_fresh(&cache) && cache.keys.contains_key(kid) {
                return;
            }
        }
        let min = Duration::from_secs(self.config.jwks_min_refresh_seconds);
        if last.is_some_and(|t| t.elapsed() < min) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                let mut cache = self.cache.write().await;
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
            }
            // Keep serving the keys we have; the provider may be briefly down.
            Err(e) => tracing::warn!(error = %e, issuer = %self.config.issuer, "JWKS fetch failed"),
        }
    }

    async fn jwks_url(&self) -> anyhow::Result<String> {
        if let Some(url) = self.config.jwks_url.as_ref().or(self.jwks_url.get()) {
            return Ok(url.clone());
        }
        let found = discover(&self.http, &self.config.issuer).await?.jwks_uri;
        Ok(self.jwks_url.get_or_init(|| found).clone())
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, (Jwk, DecodingKey)>> {
        let url = self.jwks_url().await?;
        let set: JwkSet = self
            .http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for jwk in set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            match DecodingKey::from_jwk(&jwk) {
                Ok(key) => {
                    keys.insert(kid, (jwk, key));
                }
                Err(e) => tracing::warn!(%kid, error = %e, "ignoring an unusable JWK"),
            }
        }
        Ok(keys)
    }
}

/// Whether `jwk` may verify `alg`: right key type (and curve), and its own `alg`, if it names
/// one, is the same.
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let named = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(_) => return false,
    };
    if named.is_some_and(|n| n != alg) {
        return false;
    }
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        _ => false,
    }
}

impl JwksVerifier {
    /// Every claim of a token that passes the checks of [`TokenVerifier::verify`] (used for
    /// the console's ID tokens, whose nonce and groups matter too).
    pub async fn verify_claims(
        &self,
        token: &str,
        now: i64,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
        let unauthenticated = ApiError::Unauthenticated;
        // `alg: none` and unknown algorithms fail to parse here already.
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthenticated.clone())?;
        if !self.allowed.contains(&header.alg) {
            return Err(unauthenticated);
        }
        let kid = header.kid.ok_or(unauthenticated.clone())?;
        let (jwk, key) = self.key(&kid).await.ok_or(unauthenticated.clone())?;
        if !key_fits(&jwk, header.alg) {
            return Err(unauthenticated);
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Times are checked below against the server clock (which tests move).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let all = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|_| unauthenticated.clone())?
        .claims;
        let claims: Claims = serde_json::from_value(serde_json::Value::Object(all.clone()))
            .map_err(|_| unauthenticated.clone())?;
        let leeway = self.config.leeway_seconds as i64;
        if claims.exp + leeway <= now
            || claims.nbf.is_some_and(|nbf| nbf - leeway > now)
            || !valid_subject(&claims.sub)
        {
            return Err(unauthenticated);
        }
        Ok(all)
    }
}

#[async_trait::async_trait]
impl TokenVerifier for JwksVerifier {
    async fn verify(&self, token: &str, now: i64) -> Result<String, ApiError> {
        let claims = self.verify_claims(token, now).await?;
        Ok(claims["sub"].as_str().unwrap_or_default().to_string())
    }
}
