//! The helpdesk console under `/console/`: server-rendered pages for operators, who sign in
//! with OpenID Connect (authorization code + PKCE, `state` and `nonce` checked) at the
//! configured provider and must carry the operator claim. Every change goes through the same
//! store steps as the admin API and is audited with the operator's subject.
//!
//! Sessions and pending sign-ins live in this process (one replica); a restart signs operators
//! out. The session cookie is `HttpOnly`, `SameSite=Strict`, `Secure` unless the console is on
//! loopback; every form carries the session's CSRF token; every page is sent with a strict
//! Content-Security-Policy and uses nothing but what this binary embeds.

mod oidc;
mod pages;

use std::collections::HashMap;
use std::sync::Mutex;

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

/// Entries with an expiry, at most `cap` of them live, so nobody can fill memory.
struct Expiring<T> {
    entries: Mutex<Entries<T>>,
    cap: usize,
}

struct Entries<T> {
    map: HashMap<String, (i64, T)>,
    /// How many entries the last sweep left: the next sweep waits until the map has doubled
    /// (or is full), so sweeping costs O(1) per insert on average.
    after_sweep: usize,
    /// The earliest expiry in the map: when full, a sweep before it would free nothing.
    earliest: i64,
}

/// The map is full of live entries; try again once some have expired.
pub(crate) struct Full;

impl<T: Clone> Expiring<T> {
    fn new(cap: usize) -> Self {
        Expiring {
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                after_sweep: 0,
                earliest: i64::MAX,
            }),
            cap,
        }
    }

    fn insert(&self, key: String, until: i64, value: T, now: i64) -> Result<(), Full> {
        let mut entries = self.entries.lock().unwrap();
        let len = entries.map.len();
        let full = len >= self.cap && now >= entries.earliest;
        if full || len >= 2 * entries.after_sweep.max(16) {
            entries.map.retain(|_, (until, _)| *until > now);
            entries.after_sweep = entries.map.len();
            entries.earliest = entries
                .map
                .values()
                .map(|(u, _)| *u)
                .min()
                .unwrap_or(i64::MAX);
        }
        if entries.map.len() >= self.cap {
            return Err(Full);
        }
        entries.earliest = entries.earliest.min(until);
        entries.map.insert(key, (until, value));
        Ok(())
    }

    fn get(&self, key: &str, now: i64) -> Option<T> {
        let entries = self.entries.lock().unwrap();
        entries
            .map
            .get(key)
            .filter(|(until, _)| *until > now)
            .map(|(_, v)| v.clone())
    }

    fn take(&self, key: &str, now: i64) -> Option<T> {
        let mut entries = self.entries.lock().unwrap();
        entries
            .map
            .remove(key)
            .filter(|(until, _)| *until > now)
            .map(|(_, v)| v)
    }
}
