//! Who is calling: access tokens (bearer) for the SDK endpoints, HTTP Basic credentials for
//! relying parties, and the development token issuer.

use base64::{engine::general_purpose::STANDARD, Engine};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use pims_proto::ApiError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::RelyingParty;

pub const DEV_ISSUER: &str = "pims-dev";
pub const DEV_TOKEN_LIFETIME_SECONDS: u64 = 3600;
const MAX_SUBJECT_LEN: usize = 255;

/// Checks an access token and yields its subject (the account). A JWKS-backed OIDC verifier
/// is another implementation of this trait.
#[async_trait::async_trait]
pub trait TokenVerifier: Send + Sync + 'static {
    async fn verify(&self, token: &str, now: i64) -> Result<String, ApiError>;
}

/// Accepts nothing: the configuration when no issuer is enabled.
pub struct NoIssuer;

#[async_trait::async_trait]
impl TokenVerifier for NoIssuer {
    async fn verify(&self, _token: &str, _now: i64) -> Result<String, ApiError> {
        Err(ApiError::Unauthenticated)
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    iat: i64,
    exp: i64,
}

/// Development issuer: HS256 tokens under a key derived from the server secret.
pub struct DevIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl DevIssuer {
    pub fn new(key: &[u8; 32]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[DEV_ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Expiry is checked against the server clock (which tests move), not the library's.
        validation.validate_exp = false;
        validation.validate_aud = false;
        DevIssuer {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
        }
    }

    pub fn issue(&self, subject: &str, now: i64) -> Result<String, ApiError> {
        if !valid_subject(subject) {
            return Err(ApiError::InvalidParameter {
                name: "subject".into(),
            });
        }
        let claims = Claims {
            iss: DEV_ISSUER.to_string(),
            sub: subject.to_string(),
            iat: now,
            exp: now + DEV_TOKEN_LIFETIME_SECONDS as i64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| ApiError::Internal)
    }
}

#[async_trait::async_trait]
impl TokenVerifier for DevIssuer {
    async fn verify(&self, token: &str, now: i64) -> Result<String, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| ApiError::Unauthenticated)?;
        let claims = data.claims;
        if claims.exp <= now || !valid_subject(&claims.sub) {
            return Err(ApiError::Unauthenticated);
        }
        Ok(claims.sub)
    }
}

pub(crate) fn valid_subject(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_SUBJECT_LEN && !s.chars().any(char::is_control)
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The relying party named by an `Authorization: Basic ...` header value, if its secret
/// matches. Secrets are compared in constant time (as hashes, so lengths leak nothing either).
pub fn relying_party<'a>(
    parties: &'a [RelyingParty],
    header: Option<&str>,
) -> Result<&'a RelyingParty, ApiError> {
    let (id, secret) = header
        .and_then(|h| {
            let (scheme, b64) = h.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
            let (id, secret) = decoded.split_once(':')?;
            Some((id.to_string(), secret.to_string()))
        })
        .ok_or(ApiError::RelyingPartyUnauthorized)?;
    let given = Sha256::digest(secret.as_bytes());
    let mut found = None;
    for rp in parties {
        let expected = Sha256::digest(rp.secret.as_bytes());
        let secret_ok: bool = given.ct_eq(&expected).into();
        if secret_ok && rp.id == id {
            found = Some(rp);
        }
    }
    found.ok_or(ApiError::RelyingPartyUnauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dev_tokens_verify_until_they_expire() {
        let issuer = DevIssuer::new(&[7; 32]);
        let token = issuer.issue("alice", 1_000).unwrap();
        assert_eq!(issuer.verify(&token, 1_000).await.unwrap(), "alice");
        assert_eq!(
            issuer.verify(&token, 1_000 + 3600).await,
            Err(ApiError::Unauthenticated)
        );
        let other = DevIssuer::new(&[8; 32]);
        assert_eq!(
            other.verify(&token, 1_000).await,
            Err(ApiError::Unauthenticated)
        );
    }

    #[tokio::test]
    async fn tokens_with_another_algorithm_are_refused() {
        let claims = Claims {
            iss: DEV_ISSUER.into(),
            sub: "alice".into(),
            iat: 0,
            exp: i64::MAX / 2,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(&[7; 32]),
        )
        .unwrap();
        assert_eq!(
            DevIssuer::new(&[7; 32]).verify(&token, 1).await,
            Err(ApiError::Unauthenticated)
        );
    }

    #[test]
    fn basic_credentials_must_match_one_relying_party() {
        let parties = vec![RelyingParty {
            id: "rp".into(),
            secret: "s3cret".into(),
            required_assurance: None,
        }];
        let header = |s: &str| format!("Basic {}", STANDARD.encode(s));
        assert_eq!(
            relying_party(&parties, Some(&header("rp:s3cret")))
                .unwrap()
                .id,
            "rp"
        );
        for bad in ["rp:wrong", "other:s3cret", "rp", ""] {
            assert_eq!(
                relying_party(&parties, Some(&header(bad))).map(|r| r.id.clone()),
                Err(ApiError::RelyingPartyUnauthorized)
            );
        }
        assert!(relying_party(&parties, None).is_err());
    }
}
