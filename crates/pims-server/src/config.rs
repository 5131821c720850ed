//! Server configuration: a TOML file whose every field has a default.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::clock::Clock;
pub use crate::jwks::AccessTokenConfig;
pub use crate::sms_gateways::SmsGatewayConfig;
use crate::store::{PurgeStep, SMS_SEND_WINDOW_SECONDS};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// A second listener for operators: when set, `/metrics`, the admin API and the console
    /// are served there and no longer on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// The helpdesk console (`/console/`), signed in through an OpenID provider.
    pub console: Option<crate::console::ConsoleConfig>,
    /// SQLite database file (created if absent); used when `database_url` is not set.
    pub database_path: PathBuf,
    /// PostgreSQL connection (`postgres://user:password@host:port/db`): when set, the server
    /// keeps its state there instead of SQLite, and any number of replicas may share it.
    pub database_url: Option<DatabaseUrl>,
    /// Most PostgreSQL connections one replica opens.
    pub database_pool_size: usize,
    /// JSON key file (OPAQUE server setup and server secret), created with mode 0600 if absent.
    /// The `PIMS_SERVER_KEYS` environment variable, holding the same JSON, takes precedence.
    pub key_file: PathBuf,
    /// Development SMS outbox: one JSON line per message; used when `sms_gateway` is not set.
    pub sms_outbox: PathBuf,
    /// Real SMS delivery (`kind = "twilio"` or `"webhook"`).
    pub sms_gateway: Option<SmsGatewayConfig>,
    /// Android SMS Retriever app hash (11 characters), the last line of every SMS.
    pub sms_app_hash: String,
    /// Domain of the iOS domain-bound code line `@domain #code`.
    pub sms_domain: String,
    /// Bearer credential of the admin API (`/admin/v1`); the API is off without it.
    pub admin_token: Option<AdminToken>,
    /// Enables `POST /v1/dev/tokens` and accepts the tokens it mints. Never in production.
    pub dev_issuer: bool,
    /// The identity provider whose JWT access tokens the SDK endpoints accept.
    pub access_tokens: Option<AccessTokenConfig>,
    pub relying_parties: Vec<RelyingParty>,
    /// The relying party (`id`) an OTP is for when the app names none. Not needed with a single
    /// relying party (that one is the audience); with several and no default, the app must name
    /// one (`audience`).
    pub otp_default_audience: Option<String>,
    /// Take the client address from the last `X-Forwarded-For` entry (set by the load balancer
    /// in front) instead of the socket peer. Only with a proxy that always sets it.
    pub trust_forwarded_for: bool,
    pub accepted_protocol_versions: Vec<u32>,
    /// How often each replica deletes expired codes, sessions, challenges, OTPs, idempotency
    /// outcomes, unconfirmed devices and old SMS sends; 0 never purges.
    pub purge_interval_seconds: u64,
    pub limits: Limits,
    /// The remote-command service: the cars it relays to and which commands need the PIN.
    pub commands: CommandsConfig,
    /// Connection and request bounds against slow or exhausting clients (`[http]`).
    pub http: HttpLimits,
    /// Device key attestation at enrollment (`[attestation]`): what the server trusts and what
    /// it requires.
    pub attestation: AttestationConfig,
    #[serde(skip)]
    pub clock: Clock,
}

/// A database URL; it may hold a password, so `Debug` never shows it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}

/// The admin API's bearer token; never shown by `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// A service allowed to verify OTPs with HTTP Basic `id:secret`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelyingParty {
    pub id: String,
    pub secret: String,
    /// The least assurance of the device key (`tee`, `strongbox`, …) for an OTP to this relying
    /// party; a device enrolled below it is refused its OTPs (`assurance_insufficient`). None
    /// by default.
    #[serde(default)]
    pub required_assurance: Option<pims_attest::Assurance>,
}

/// `[attestation]`: how enrollments' device key attestations are verified (`pims-attest`).
///
/// The revocation list is Google's attestation status list (JSON), read at start and again
/// every `revocation_refresh_seconds`. A configured list that cannot be read at start is a
/// configuration error (the server does not start); a refresh that fails keeps the last good
/// list and logs a warning (fail closed on a missing file, no outage on a transient one).
/// Without `revocation_list` nothing is revoked: set it in production.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttestationConfig {
    /// `[[attestation.android_apps]]`: the apps whose keys may enroll (package and signing
    /// certificate digests); empty accepts any app.
    pub android_apps: Vec<AndroidAppConfig>,
    /// Apple Developer team id and bundle id of the iOS app (App Attest); without both, App
    /// Attest attestations are recorded `unattested` (`not-configured`).
    pub apple_team_id: Option<String>,
    pub apple_bundle_id: Option<String>,
    /// `production` or `development` (the App Attest environment the app is built for).
    pub apple_environment: String,
    /// Google's revocation status list file (JSON, as served at
    /// `https://android.googleapis.com/attestation/status`).
    pub revocation_list: Option<PathBuf>,
    pub revocation_refresh_seconds: u64,
    /// The least assurance a device must prove to enroll; none by default: every enrollment
    /// is recorded with what it proved, and none is refused for it.
    pub required_to_enroll: Option<pims_attest::Assurance>,
}

impl Default for AttestationConfig {
    fn default() -> Self {
        AttestationConfig {
            android_apps: Vec::new(),
            apple_team_id: None,
            apple_bundle_id: None,
            apple_environment: "production".to_string(),
            revocation_list: None,
            revocation_refresh_seconds: 3600,
            required_to_enroll: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndroidAppConfig {
    pub package_name: String,
    /// SHA-256 of each signing certificate, hexadecimal (colons allowed, as `apksigner` prints).
    pub signing_certificate_sha256: Vec<String>,
}

impl AttestationConfig {
    /// The apps as `pims-attest` takes them.
    pub fn android_apps(&self) -> anyhow::Result<Vec<pims_attest::AndroidApp>> {
        self.android_apps
            .iter()
            .map(|app| {
                let digests = app
                    .signing_certificate_sha256
                    .iter()
                    .map(|d| {
                        let hex: String = d.chars().filter(|c| *c != ':').collect();
                        let bytes = (0..hex.len())
                            .step_by(2)
                            .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
                            .collect::<Option<Vec<u8>>>()
                            .filter(|b| b.len() == 32);
                        bytes.ok_or_else(|| {
                            anyhow::anyhow!(
                                "attestation.android_apps: {d:?} is not a SHA-256 digest in hexadecimal"
                            )
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(pims_attest::AndroidApp {
                    package_name: app.package_name.clone(),
                    signature_digests: digests,
                })
            })
            .collect()
    }

    pub fn apple_environment(&self) -> anyhow::Result<pims_attest::AppAttestEnvironment> {
        pims_attest::AppAttestEnvironment::parse(&self.apple_environment).ok_or_else(|| {
            anyhow::anyhow!("attestation.apple_environment must be production or development")
        })
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.android_apps()?;
        self.apple_environment()?;
        anyhow::ensure!(
            self.apple_team_id.is_some() == self.apple_bundle_id.is_some(),
            "attestation.apple_team_id and attestation.apple_bundle_id go together"
        );
        anyhow::ensure!(
            self.revocation_refresh_seconds >= 1,
            "attestation.revocation_refresh_seconds must be at least 1"
        );
        Ok(())
    }
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
    /// Sends requested from one client address (all accounts together).
    pub sms_sends_per_hour_per_address: u32,
    pub enrollment_session_ttl_seconds: u64,
    pub challenge_ttl_seconds: u64,
    pub otp_ttl_seconds: u64,
    /// A device that never confirms its enrollment is forgotten after this delay.
    pub pending_device_ttl_seconds: u64,
    /// Pending and Active devices per account.
    pub max_devices_per_account: u32,
    /// Open (unused, unexpired) challenges one device may hold; one more answers 429.
    pub max_open_challenges_per_device: u32,
    /// After the trusted number changes, a PIN may not be set by SMS alone (reset, or a fresh
    /// enrollment after `remove`) for this long, so the owner hears of the change on the old
    /// number before a thief can turn it into a new PIN.
    pub recovery_hold_after_number_change_seconds: u64,
}

/// The longest recovery hold the configuration accepts.
pub const MAX_RECOVERY_HOLD_SECONDS: u64 = 30 * 86_400;

/// What one client may hold of the server before it has authenticated: connections, time and
/// bytes. Every bound closes or refuses at once rather than queueing.
/// `[commands]`: the command service relays signed commands to the cars listed, co-signing
/// the PIN for those that need it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandsConfig {
    /// What devices put in their envelopes' audience, and cars check.
    pub audience: String,
    /// How long a car may take to answer a relayed command or pairing.
    pub vehicle_timeout_seconds: u64,
    /// `[[commands.vehicles]]`: each car's VIN and address.
    pub vehicles: Vec<VehicleEndpoint>,
    /// `[commands.policy]`: per command name (`doors.unlock`, `horn`…), whether it needs the
    /// PIN and its expiry cap; unnamed commands keep the default (only unlocking the doors and
    /// the keychain's commands need the PIN; 30 s).
    pub policy: std::collections::BTreeMap<String, CommandRuleConfig>,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            audience: "pims-commands".to_string(),
            vehicle_timeout_seconds: 10,
            vehicles: Vec::new(),
            policy: Default::default(),
        }
    }
}

impl CommandsConfig {
    /// The policy the configuration describes.
    pub fn policy(&self) -> anyhow::Result<pims_command::Policy> {
        pims_command::Policy::with_overrides(
            self.policy
                .iter()
                .map(|(name, r)| (name.as_str(), r.pin, r.ttl_seconds)),
        )
        .map_err(|e| anyhow::anyhow!("[commands.policy]: {e}"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VehicleEndpoint {
    pub vin: String,
    /// The car's (or its gateway's) base URL, e.g. `http://127.0.0.1:8490`.
    pub url: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRuleConfig {
    pub pin: bool,
    #[serde(default = "default_command_ttl")]
    pub ttl_seconds: u64,
}

fn default_command_ttl() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// A request's head (request line and headers) must be complete within this time of the
    /// server starting to wait for it (the connection opening, or the previous response);
    /// otherwise the connection is closed. Bounds slow-loris clients.
    pub header_read_timeout_seconds: u64,
    /// A kept-alive connection with no request in flight is closed this long after its last
    /// response.
    pub keep_alive_timeout_seconds: u64,
    /// Whole request, from its head to the response (body upload included): 408 when the
    /// client had not finished sending its body, else 503.
    pub request_timeout_seconds: u64,
    /// Largest request body; larger ones get 413 without being read.
    pub max_body_bytes: usize,
    /// Open connections in all. At the cap a newcomer closes the oldest connection that has not
    /// started a request yet, and is refused only when every open one is serving or has served;
    /// one address block (IPv4 /24, IPv6 /48) holds at most an eighth of it. Keep it below the
    /// process's file-descriptor limit (`ulimit -n`) minus the database's and the log's.
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 /64 counts as one address). Ignored
    /// with `trust_forwarded_for`: every connection then comes from the balancer, which must
    /// bound its clients itself.
    pub max_connections_per_address: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout_seconds: 10,
            keep_alive_timeout_seconds: 5,
            request_timeout_seconds: 30,
            max_body_bytes: 64 * 1024,
            max_connections: 4096,
            max_connections_per_address: 128,
        }
    }
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
            sms_sends_per_hour_per_address: 50,
            enrollment_session_ttl_seconds: 600,
            challenge_ttl_seconds: 120,
            otp_ttl_seconds: 120,
            pending_device_ttl_seconds: 86_400,
            max_devices_per_account: 10,
            max_open_challenges_per_device: 10,
            recovery_hold_after_number_change_seconds: 259_200,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            admin_listen: None,
            console: None,
            database_path: PathBuf::from("pims.sqlite3"),
            database_url: None,
            database_pool_size: 16,
            key_file: PathBuf::from("pims-keys.json"),
            sms_outbox: PathBuf::from("sms-outbox.jsonl"),
            sms_gateway: None,
            sms_app_hash: "PIMSAPPHASH".to_string(),
            sms_domain: "pims.example".to_string(),
            dev_issuer: false,
            admin_token: None,
            access_tokens: None,
            relying_parties: Vec::new(),
            otp_default_audience: None,
            trust_forwarded_for: false,
            // 1 stays accepted for what it can still do (enroll, OTPs without PIN, SMS,
            // devices); its unsigned PIN logins are refused as `UnsupportedProtocol`.
            accepted_protocol_versions: vec![1, pims_proto::PROTOCOL_VERSION],
            purge_interval_seconds: 300,
            limits: Limits::default(),
            commands: CommandsConfig::default(),
            http: HttpLimits::default(),
            attestation: AttestationConfig::default(),
            clock: Clock::system(),
        }
    }
}

impl Limits {
    /// What a purge at `now` may delete under these limits. Expired rows are kept one SMS
    /// window (an hour) so a late check still reads "expired"; an idempotency outcome as long
    /// as its session or its Pending device may still be used, so a retried finish replays it.
    pub fn purge_step(&self, now: i64) -> PurgeStep {
        PurgeStep {
            now,
            expired_grace: SMS_SEND_WINDOW_SECONDS,
            idempotency_ttl: self
                .enrollment_session_ttl_seconds
                .max(self.pending_device_ttl_seconds),
            pending_device_ttl: self.pending_device_ttl_seconds,
            sms_send_window: SMS_SEND_WINDOW_SECONDS,
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
                required_assurance: None,
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

    /// The file, then the environment overrides, validated: what `pims server` runs with.
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let mut config = Self::from_toml_file(path)?;
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Environment overrides, so secrets and per-replica values need not live in the file:
    /// `PIMS_LISTEN`, `PIMS_DATABASE_URL`, `PIMS_DATABASE_PATH`, `PIMS_KEY_FILE`,
    /// `PIMS_ADMIN_TOKEN`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = var("PIMS_LISTEN") {
            self.listen = v.parse().context("PIMS_LISTEN is not an address:port")?;
        }
        if let Some(v) = var("PIMS_DATABASE_URL") {
            self.database_url = Some(DatabaseUrl(v));
        }
        if let Some(v) = var("PIMS_DATABASE_PATH") {
            self.database_path = PathBuf::from(v);
        }
        if let Some(v) = var("PIMS_KEY_FILE") {
            self.key_file = PathBuf::from(v);
        }
        if let Some(v) = var("PIMS_ADMIN_TOKEN") {
            self.admin_token = Some(AdminToken(v));
        }
        Ok(())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
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
        // Its end is written in the notices and stored as seconds; a month is already long.
        anyhow::ensure!(
            l.recovery_hold_after_number_change_seconds <= MAX_RECOVERY_HOLD_SECONDS,
            "limits.recovery_hold_after_number_change_seconds must be at most {MAX_RECOVERY_HOLD_SECONDS} (30 days)"
        );
        self.commands.policy()?;
        self.attestation.validate()?;
        anyhow::ensure!(
            !self.commands.audience.is_empty()
                && self.commands.audience.len() <= 64
                && self.commands.audience.bytes().all(|b| b.is_ascii_graphic()),
            "commands.audience must be 1 to 64 printable ASCII characters"
        );
        anyhow::ensure!(
            !self
                .relying_parties
                .iter()
                .any(|rp| rp.id == self.commands.audience),
            "commands.audience must differ from every relying party's id (its OTPs are the command service's own)"
        );
        anyhow::ensure!(
            (1..=30).contains(&self.commands.vehicle_timeout_seconds),
            "commands.vehicle_timeout_seconds must be 1 to 30"
        );
        for v in &self.commands.vehicles {
            anyhow::ensure!(
                pims_command::vin_ok(&v.vin),
                "commands.vehicles: {:?} is not a VIN",
                v.vin
            );
        }
        if let Some(console) = &self.console {
            console.validate()?;
            // Without an admin listener the console (and its unauthenticated sign-in start)
            // would be served with the public API: only when that is reachable from here alone.
            anyhow::ensure!(
                self.admin_listen.is_some() || self.listen.ip().is_loopback(),
                "[console] needs admin_listen, or a loopback listen address, not {}",
                self.listen
            );
        }
        if let Some(tokens) = &self.access_tokens {
            anyhow::ensure!(
                !self.dev_issuer,
                "access_tokens and dev_issuer exclude each other"
            );
            tokens.allowed()?;
        }
        // The development issuer mints a token for any subject to whoever asks: reachable
        // from this machine only.
        anyhow::ensure!(
            !self.dev_issuer || self.listen.ip().is_loopback(),
            "dev_issuer = true needs a loopback listen address (127.0.0.1 or [::1]), not {}",
            self.listen
        );
        let h = &self.http;
        anyhow::ensure!(
            h.header_read_timeout_seconds >= 1
                && h.keep_alive_timeout_seconds >= 1
                && h.request_timeout_seconds >= 1,
            "http timeouts must be at least 1 second"
        );
        anyhow::ensure!(
            h.max_body_bytes >= 1024,
            "http.max_body_bytes must be at least 1024"
        );
        anyhow::ensure!(
            h.max_connections >= 1 && h.max_connections_per_address >= 1,
            "http.max_connections and http.max_connections_per_address must be at least 1"
        );
        if let Some(token) = &self.admin_token {
            anyhow::ensure!(
                token.0.len() >= 32,
                "admin_token must be at least 32 characters"
            );
        }
        match &self.otp_default_audience {
            Some(default) => anyhow::ensure!(
                self.relying_parties.iter().any(|rp| &rp.id == default),
                "otp_default_audience must be the id of a configured relying party"
            ),
            // Apps written against the reference name no relying party: with several, one must
            // be the default, or their OTP requests would all be refused.
            None => anyhow::ensure!(
                self.relying_parties.len() <= 1,
                "with several relying_parties, set otp_default_audience to one of their ids"
            ),
        }
        anyhow::ensure!(
            l.max_open_challenges_per_device >= 1,
            "limits.max_open_challenges_per_device must be at least 1"
        );
        anyhow::ensure!(
            self.database_pool_size >= 1,
            "database_pool_size must be at least 1"
        );
        if let Some(url) = &self.database_url {
            url.0
                .parse::<tokio_postgres::Config>()
                .map_err(|e| anyhow::anyhow!("database_url is not a PostgreSQL URL: {e}"))?;
        }
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
        assert_eq!(c.accepted_protocol_versions, vec![1, 2]);
        assert!(!c.dev_issuer);
        assert!(!format!("{c:?}").contains("secret: "));
        assert_eq!(c.database_url, None);
        assert_eq!(c.purge_interval_seconds, 300);
    }

    #[test]
    fn a_recovery_hold_longer_than_a_month_is_refused() {
        let mut c = ServerConfig::default();
        c.limits.recovery_hold_after_number_change_seconds = MAX_RECOVERY_HOLD_SECONDS;
        c.validate().unwrap();
        c.limits.recovery_hold_after_number_change_seconds = 300_000_000_000;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("recovery_hold_after_number_change_seconds"));
    }

    #[test]
    fn the_database_password_never_reaches_debug_output() {
        let c: ServerConfig =
            toml::from_str(r#"database_url = "postgres://pims:hunter2@db:5432/pims""#).unwrap();
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c: ServerConfig = toml::from_str(r#"listen = "0.0.0.0:9000""#).unwrap();
        c.apply_env(|name| match name {
            "PIMS_LISTEN" => Some("127.0.0.1:7000".into()),
            "PIMS_DATABASE_URL" => Some("postgres://pims@db/pims".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(
            c.database_url,
            Some(DatabaseUrl("postgres://pims@db/pims".into()))
        );
        assert!(c
            .apply_env(|n| (n == "PIMS_LISTEN").then(|| "nowhere".into()))
            .is_err());
    }

    #[test]
    fn the_dev_issuer_listens_on_loopback_only() {
        for listen in [
            "0.0.0.0:8080",
            "192.168.1.5:8080",
            "[::]:8080",
            "[::ffff:127.0.0.1]:80",
        ] {
            let c: ServerConfig =
                toml::from_str(&format!("listen = \"{listen}\"\ndev_issuer = true")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("dev_issuer = true needs a loopback listen address"),
                "{e}"
            );
        }
        for listen in ["127.0.0.1:8080", "[::1]:8080"] {
            let c: ServerConfig =
                toml::from_str(&format!("listen = \"{listen}\"\ndev_issuer = true")).unwrap();
            c.validate().unwrap();
        }
        // The environment cannot move a development server off loopback either.
        let mut c: ServerConfig = toml::from_str("dev_issuer = true").unwrap();
        c.apply_env(|n| (n == "PIMS_LISTEN").then(|| "0.0.0.0:8080".into()))
            .unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<ServerConfig>("listne = \"x\"").is_err());
    }
}
