//! Server configuration: a TOML file whose every field has a default.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::clock::Clock;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// SQLite database file (created if absent).
    pub database_path: PathBuf,
    /// JSON key file (OPAQUE server setup and server secret), created with mode 0600 if absent.
    /// The `PIMS_SERVER_KEYS` environment variable, holding the same JSON, takes precedence.
    pub key_file: PathBuf,
    /// Development SMS outbox: one JSON line per message.
    pub sms_outbox: PathBuf,
    /// Android SMS Retriever app hash (11 characters), the last line of every SMS.
    pub sms_app_hash: String,
    /// Domain of the iOS domain-bound code line `@domain #code`.
    pub sms_domain: String,
    /// Enables `POST /v1/dev/tokens` and accepts the tokens it mints. Never in production.
    pub dev_issuer: bool,
    pub relying_parties: Vec<RelyingParty>,
    pub accepted_protocol_versions: Vec<u32>,
    pub limits: Limits,
    #[serde(skip)]
    pub clock: Clock,
}

/// A service allowed to verify OTPs with HTTP Basic `id:secret`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelyingParty {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wrong PINs before the account is PIN-blocked.
    pub pin_attempts: u32,
    pub sms_code_ttl_seconds: u64,
    /// Checks (right or wrong) one SMS code survives.
    pub sms_code_max_checks: u32,
    pub sms_code_digits: u32,
    pub sms_sends_per_hour_per_account: u32,
    pub sms_sends_per_hour_per_number: u32,
    pub enrollment_session_ttl_seconds: u64,
    pub challenge_ttl_seconds: u64,
    pub otp_ttl_seconds: u64,
    /// A device that never confirms its enrollment is forgotten after this delay.
    pub pending_device_ttl_seconds: u64,
    /// Pending and Active devices per account.
    pub max_devices_per_account: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pin_attempts: 5,
            sms_code_ttl_seconds: 600,
            sms_code_max_checks: 5,
            sms_code_digits: 6,
            sms_sends_per_hour_per_account: 10,
            sms_sends_per_hour_per_number: 10,
            enrollment_session_ttl_seconds: 600,
            challenge_ttl_seconds: 120,
            otp_ttl_seconds: 120,
            pending_device_ttl_seconds: 86_400,
            max_devices_per_account: 10,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            database_path: PathBuf::from("pims.sqlite3"),
            key_file: PathBuf::from("pims-keys.json"),
            sms_outbox: PathBuf::from("sms-outbox.jsonl"),
            sms_app_hash: "PIMSAPPHASH".to_string(),
            sms_domain: "pims.example".to_string(),
            dev_issuer: false,
            relying_parties: Vec::new(),
            accepted_protocol_versions: vec![pims_proto::PROTOCOL_VERSION],
            limits: Limits::default(),
            clock: Clock::system(),
        }
    }
}

impl ServerConfig {
    /// Loopback on an ephemeral port, every file in `dir`, development issuer on, and one
    /// relying party `demo-rp` / `demo-rp-secret`.
    pub fn development(dir: &Path) -> Self {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            database_path: dir.join("pims.sqlite3"),
            key_file: dir.join("pims-keys.json"),
            sms_outbox: dir.join("sms-outbox.jsonl"),
            dev_issuer: true,
            relying_parties: vec![RelyingParty {
                id: "demo-rp".to_string(),
                secret: "demo-rp-secret".to_string(),
            }],
            ..ServerConfig::default()
        }
    }

    pub fn from_toml_file(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading server configuration {}", path.display()))?;
        let config: ServerConfig = toml::from_str(&text)
            .with_context(|| format!("parsing server configuration {}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let l = &self.limits;
        anyhow::ensure!(
            (4..=10).contains(&l.sms_code_digits),
            "limits.sms_code_digits must be between 4 and 10"
        );
        anyhow::ensure!(
            l.pin_attempts >= 1,
            "limits.pin_attempts must be at least 1"
        );
        anyhow::ensure!(
            l.sms_code_max_checks >= 1,
            "limits.sms_code_max_checks must be at least 1"
        );
        anyhow::ensure!(
            !self.accepted_protocol_versions.is_empty(),
            "accepted_protocol_versions must not be empty"
        );
        anyhow::ensure!(
            self.sms_app_hash.chars().count() == 11,
            "sms_app_hash must be 11 characters"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_fields_default_individually() {
        let c: ServerConfig = toml::from_str(
            r#"
            listen = "0.0.0.0:9000"
            [limits]
            pin_attempts = 3
            [[relying_parties]]
            id = "rp"
            secret = "s"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.limits.pin_attempts, 3);
        assert_eq!(c.limits.sms_code_max_checks, 5);
        assert_eq!(c.accepted_protocol_versions, vec![1]);
        assert!(!c.dev_issuer);
        assert!(!format!("{c:?}").contains("secret: "));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<ServerConfig>("listne = \"x\"").is_err());
    }
}
