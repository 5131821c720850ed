//! The helpdesk console under `/console/`: server-rendered pages for operators, who sign in
//! with OpenID Connect (authorization code + PKCE, `state` and `nonce` checked) at the
//! configured provider and must carry the operator claim. Every change goes through the same
//! store steps as the admin API and is audited with the operator's subject.
//!
//! Pending sign-ins and sessions are sealed cookies (XChaCha20-Poly1305 under a key from the
//! key file, bound to their purpose): the server keeps no state for them, so a flood of
//! sign-in starts costs nothing and every replica serves every session. Signing out clears the
//! cookie and ends the provider's session; a copied session cookie stays valid until it
//! expires (`session_seconds`, keep it short). The session cookie is `HttpOnly`,
//! `SameSite=Strict`, `Secure` unless the console is on loopback; every form carries the
//! session's CSRF token; every page is sent with a strict Content-Security-Policy and uses
//! nothing but what this binary embeds.
//!
//! Times are shown in the time zone an operator picks on `/console/timezone` (an IANA name of
//! the embedded database, kept in a cookie of their browser; no script), with UTC beside them;
//! the audit's day filter reads days there; its CSV stays in UTC.

mod oidc;
mod pages;

use serde::Deserialize;

pub use oidc::Console;
pub(crate) use pages::routes;

/// `[console]` of the server configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The OpenID provider staff sign in at; its discovery document names the endpoints.
    pub issuer: String,
    pub client_id: String,
    /// The console's client secret at the provider (`client_secret_basic`).
    pub client_secret: String,
    /// `…/console/callback` as the browser reaches it (registered at the provider).
    pub redirect_url: String,
    /// The ID-token claim naming operators: a string or list of strings containing
    /// `operator_value`.
    #[serde(default = "default_operator_claim")]
    pub operator_claim: String,
    pub operator_value: String,
    /// Optional: a second value of `operator_claim` for staff who may look but not act.
    #[serde(default)]
    pub read_only_value: Option<String>,
    /// ISO 3166-1 alpha-2 region in which the search reads numbers typed nationally
    /// (`06 12 34 56 78` in `FR`); without it, numbers must be international.
    #[serde(default)]
    pub default_region: Option<String>,
    /// How long a sign-in lasts; it is not rechecked at the provider meanwhile, so keep it short.
    #[serde(default = "default_session_seconds")]
    pub session_seconds: u64,
}

fn default_operator_claim() -> String {
    "groups".into()
}
fn default_session_seconds() -> u64 {
    3600
}

impl std::fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_url", &self.redirect_url)
            .finish_non_exhaustive()
    }
}

impl ConsoleConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        let url = reqwest::Url::parse(&self.redirect_url)
            .map_err(|e| anyhow::anyhow!("console.redirect_url: {e}"))?;
        anyhow::ensure!(
            url.path() == "/console/callback",
            "console.redirect_url must end in /console/callback"
        );
        anyhow::ensure!(
            url.scheme() == "https" || is_loopback(&url),
            "console.redirect_url must be https (or on loopback)"
        );
        anyhow::ensure!(
            !self.operator_value.is_empty(),
            "console.operator_value must not be empty"
        );
        if let Some(region) = &self.default_region {
            anyhow::ensure!(
                region.parse::<phonenumber::country::Id>().is_ok(),
                "console.default_region must be an ISO 3166-1 alpha-2 region, not {region}"
            );
        }
        Ok(())
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}
