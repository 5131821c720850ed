//! A simulated car (or its gateway) that trusts no one but its keychain: it executes a
//! command only after verifying the proof itself with `pims-command` — the VIN is its own,
//! the key is on its keychain with a role that allows the command, the proof is fresh and its
//! counter new (the window saved before the command runs), and the PIN co-signature is there
//! when its policy says so — and answers with a receipt its own key signs. Its state, key and
//! keychain live in its own SQLite file.

mod state;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use p256::ecdsa::SigningKey;
use pims_command::{
    keychain_sync_message, pairing_mac_ok, public_key_ok, signature_ok, Command, Fault, KeyEntry,
    PinCheck, Policy, Receipt, Role, SyncedKey, Verifier, Window,
};
use pims_proto::{
    car, Bytes, KeychainKey, KeychainRemovals, KeychainSync, VehiclePaired, VehicleReceipt,
};
use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

pub use state::{CarState, ALREADY_LOCKED, ALREADY_UNLOCKED, EXECUTED};

/// How far a phone's clock may run ahead of the car's.
const CLOCK_SKEW_SECONDS: u64 = 10;
/// Wrong pairing codes before the code is void and a new one must be shown.
const PAIRING_ATTEMPTS: i64 = 5;
/// How long a pairing code is good for: a relay that holds a pairing request back cannot search
/// its 60 bits offline in time.
const PAIRING_SECONDS: u64 = 600;

pub struct VehicleConfig {
    pub vin: String,
    /// The command service's audience this car accepts proofs for.
    pub audience: String,
    /// The car's SQLite file.
    pub data: PathBuf,
    /// The PIN co-signing key (SEC1) to pin; else the one pinned before, else fetched once from
    /// `server` at first start (as a car gets it at manufacture).
    pub pin_cosign_key: Option<Vec<u8>>,
    /// The command service, for the keychain sync.
    pub server: Option<String>,
    pub policy: Policy,
    /// The car's clock (Unix seconds); the system's when `None`.
    pub clock: Option<Clock>,
}

/// A clock reading Unix seconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub struct Vehicle {
    vin: String,
    audience: String,
    policy: Policy,
    pin_key: Vec<u8>,
    key: pims_command::Signer,
    server: Option<String>,
    db: Mutex<Connection>,
    http: reqwest::Client,
    clock: Clock,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS car (
        id               INTEGER PRIMARY KEY CHECK (id = 1),
        vin              TEXT NOT NULL,
        secret_key       BLOB NOT NULL,
        pin_cosign_key   BLOB,
        pairing_code     TEXT,
        pairing_attempts INTEGER NOT NULL DEFAULT 0,
        pairing_until    INTEGER NOT NULL DEFAULT 0,
        receipt_counter  INTEGER NOT NULL DEFAULT 0,
        state            TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS keychain (
        key_id         BLOB PRIMARY KEY,
        public_key     BLOB NOT NULL,
        role           TEXT NOT NULL,
        active         INTEGER NOT NULL,
        account        TEXT,
        device_id      TEXT,
        window_highest INTEGER NOT NULL DEFAULT 0,
        window_bits    INTEGER NOT NULL DEFAULT 0,
        added_by       TEXT NOT NULL
    );
";

/// The reference's codes for a proof the car refuses.
pub fn fault_code(fault: Fault) -> u16 {
    match fault {
        Fault::WrongVehicle => 2366,
        Fault::UnknownKey | Fault::InactiveKey => 2342,
        Fault::InsufficientPrivileges => 2323,
        Fault::PinRequired => 2302,
        Fault::Expired | Fault::TtlTooLong | Fault::ReplayedCounter => 2356,
        Fault::Malformed(_)
        | Fault::UnsupportedVersion
        | Fault::WrongAudience
        | Fault::BadSignature
        | Fault::BadPinEvidence => 2355,
    }
}

/// Whether a key may be fetched from `server` at first start: over TLS, or from this machine.
fn fetch_allowed(server: &str) -> bool {
    let Some(rest) = server.strip_prefix("http://") else {
        return server.starts_with("https://");
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Vehicle {
    /// Opens (or creates) the car's file; fetches the PIN co-signing key when none is pinned.
    pub async fn open(config: VehicleConfig) -> anyhow::Result<Arc<Vehicle>> {
        anyhow::ensure!(
            pims_command::vin_ok(&config.vin),
            "{:?} is not a VIN",
            config.vin
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()?;
        let db = Connection::open(&config.data)
            .with_context(|| format!("opening {}", config.data.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The car's private key is in it (a real car keeps it in its secure element).
            std::fs::set_permissions(&config.data, std::fs::Permissions::from_mode(0o600))?;
        }
        // WAL with full sync: a saved counter window survives a crash, without a journal
        // rewrite per statement.
        db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        db.execute_batch(SCHEMA)?;
        // A car file from before pairing codes expired.
        let _ = db.execute(
            "ALTER TABLE car ADD COLUMN pairing_until INTEGER NOT NULL DEFAULT 0",
            [],
        );
        let existing: Option<(String, Vec<u8>, Option<Vec<u8>>)> = db
            .query_row("SELECT vin, secret_key, pin_cosign_key FROM car", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let (key, pinned) = match existing {
            Some((vin, secret, pinned)) => {
                anyhow::ensure!(
                    vin == config.vin,
                    "{} is the file of car {vin}",
                    config.data.display()
                );
                (pims_command::Signer::from_scalar(&secret)?, pinned)
            }
            None => {
                let secret = SigningKey::random(&mut rand::rngs::OsRng).to_bytes();
                let state = serde_json::to_string(&CarState::default())?;
                db.execute(
                    "INSERT INTO car (id, vin, secret_key, state) VALUES (1, ?1, ?2, ?3)",
                    params![config.vin, secret.to_vec(), state],
                )?;
                (pims_command::Signer::from_scalar(&secret)?, None)
            }
        };
        let pin_key = match (config.pin_cosign_key, pinned, &config.server) {
            (Some(k), _, _) => k,
            (None, Some(k), _) => k,
            (None, None, Some(server)) => {
                anyhow::ensure!(
                    fetch_allowed(server),
                    "the PIN co-signing key is fetched only over https or from loopback: pin it instead"
                );
                let keys: pims_proto::CommandServiceKeys = http
                    .get(format!("{server}/v1/commands/keys"))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                keys.pin_cosign_key.0
            }
            (None, None, None) => {
                anyhow::bail!("no PIN co-signing key to pin and no server to ask")
            }
        };
        anyhow::ensure!(
            public_key_ok(&pin_key),
            "the PIN co-signing key is not a P-256 key"
        );
        db.execute("UPDATE car SET pin_cosign_key = ?1", params![pin_key])?;
        Ok(Arc::new(Vehicle {
            vin: config.vin,
            audience: config.audience,
            policy: config.policy,
            pin_key,
            key,
            server: config.server,
            db: Mutex::new(db),
            http,
            clock: config.clock.unwrap_or_else(|| Arc::new(now)),
        }))
    }

    pub fn vin(&self) -> &str {
        &self.vin
    }

    /// The car's own public key (SEC1), which signs its receipts.
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().to_vec()
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new one-time pairing code, as the car's screen shows it (standing for a key-card
    /// tap: only someone inside the car sees it). 60 random bits; 5 wrong tries void it.
    pub fn new_pairing_code(&self) -> anyhow::Result<String> {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let mut rng = rand::rngs::OsRng;
        let raw: String = (0..12)
            .map(|_| ALPHABET[rng.gen_range(0..32)] as char)
            .collect();
        let shown = format!("{}-{}-{}", &raw[..4], &raw[4..8], &raw[8..]);
        let until = (self.clock)() + PAIRING_SECONDS;
        self.db().execute(
            "UPDATE car SET pairing_code = ?1, pairing_attempts = ?2, pairing_until = ?3",
            params![raw, PAIRING_ATTEMPTS, until as i64],
        )?;
        Ok(shown)
    }

    /// The key ids of the keychain's active owner keys.
    pub fn owner_key_ids(&self) -> anyhow::Result<Vec<[u8; 32]>> {
        let db = self.db();
        let mut stmt =
            db.prepare("SELECT key_id FROM keychain WHERE active = 1 AND role = 'owner'")?;
        let ids = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for id in ids {
            out.push(
                id?.try_into()
                    .map_err(|_| anyhow::anyhow!("a key id is not 32 bytes"))?,
            );
        }
        Ok(out)
    }

    /// Whether any key is on the keychain and active.
    pub fn has_keys(&self) -> anyhow::Result<bool> {
        let n: i64 =
            self.db()
                .query_row("SELECT COUNT(*) FROM keychain WHERE active = 1", [], |r| {
                    r.get(0)
                })?;
        Ok(n > 0)
    }

    /// The first owner key (or another, while a code is shown), with the MAC under the code.
    /// `None` when refused: no code shown, a wrong MAC (counted), or not a P-256 key.
    pub fn pair(&self, req: &car::Pair) -> anyhow::Result<Option<VehiclePaired>> {
        let db = self.db();
        let (code, attempts, until): (Option<String>, i64, i64) = db.query_row(
            "SELECT pairing_code, pairing_attempts, pairing_until FROM car",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let Some(code) = code.filter(|_| (self.clock)() <= until as u64) else {
            return Ok(None);
        };
        let key = req.public_key.as_slice();
        if !public_key_ok(key) || !pairing_mac_ok(&code, &self.vin, key, req.mac.as_slice()) {
            let left = attempts - 1;
            let code = (left > 0).then_some(code);
            db.execute(
                "UPDATE car SET pairing_code = ?1, pairing_attempts = ?2",
                params![code, left.max(0)],
            )?;
            tracing::warn!(attempts_left = left.max(0), "pairing refused");
            return Ok(None);
        }
        db.execute(
            "INSERT INTO keychain (key_id, public_key, role, active, account, device_id, added_by)
             VALUES (?1, ?2, 'owner', 1, ?3, ?4, 'pairing code')
             ON CONFLICT (key_id) DO UPDATE SET active = 1, role = 'owner'",
            params![
                pims_command::key_id(key).to_vec(),
                key,
                req.account,
                req.device_id
            ],
        )?;
        db.execute(
            "UPDATE car SET pairing_code = NULL, pairing_attempts = 0",
            [],
        )?;
        tracing::info!("paired an owner key");
        let car_key = self.public_key();
        let mac = pims_command::pairing_answer_mac(&code, &self.vin, key, &car_key);
        Ok(Some(VehiclePaired {
            vehicle_key: car_key.into(),
            mac: mac.to_vec().into(),
        }))
    }

    fn key_entry(db: &Connection, id: &[u8; 32]) -> rusqlite::Result<Option<KeyEntry>> {
        db.query_row(
            "SELECT public_key, role, active, window_highest, window_bits FROM keychain
             WHERE key_id = ?1",
            params![id.to_vec()],
            |r| {
                let role: String = r.get(1)?;
                Ok(KeyEntry {
                    public_key: r.get(0)?,
                    role: Role::parse(&role).unwrap_or(Role::Driver),
                    active: r.get(2)?,
                    window: Window {
                        highest: r.get::<_, i64>(3)? as u64,
                        seen_below: r.get::<_, i64>(4)? as u64,
                    },
                })
            },
        )
        .optional()
    }

    /// Verifies and, when every rule holds, executes; always answers a signed receipt.
    pub fn command(&self, proof: &[u8]) -> anyhow::Result<VehicleReceipt> {
        self.command_at(proof, (self.clock)())
    }

    /// [`Self::command`] on the car's clock reading `now` (Unix seconds).
    pub fn command_at(&self, proof: &[u8], now: u64) -> anyhow::Result<VehicleReceipt> {
        let db = self.db();
        let verifier = Verifier {
            vin: &self.vin,
            audience: &self.audience,
            policy: &self.policy,
            pin: PinCheck::Cosignature(&self.pin_key),
            clock_skew: CLOCK_SKEW_SECONDS,
        };
        let mut lookup_failed = None;
        let verdict = verifier.verify(proof, now, |id| match Self::key_entry(&db, id) {
            Ok(entry) => entry,
            Err(e) => {
                lookup_failed = Some(e);
                None
            }
        });
        if let Some(e) = lookup_failed {
            return Err(e.into());
        }
        let mut state: CarState =
            serde_json::from_str(
                &db.query_row("SELECT state FROM car", [], |r| r.get::<_, String>(0))?,
            )?;
        let (code, fault) = match verdict {
            Err(fault) => {
                tracing::warn!(fault = fault.as_str(), "command refused");
                (fault_code(fault), Some(fault.as_str().to_string()))
            }
            Ok(accepted) => {
                let e = &accepted.envelope;
                // Saved before anything runs: a crash after this never runs it twice.
                db.execute(
                    "UPDATE keychain SET window_highest = ?1, window_bits = ?2 WHERE key_id = ?3",
                    params![
                        accepted.window.highest as i64,
                        accepted.window.seen_below as i64,
                        e.key_id.to_vec()
                    ],
                )?;
                let code = match &e.command {
                    Command::AddKey { public_key, role } => {
                        db.execute(
                            "INSERT INTO keychain (key_id, public_key, role, active, added_by)
                             VALUES (?1, ?2, ?3, 1, 'owner command')
                             ON CONFLICT (key_id) DO UPDATE SET active = 1, role = ?3",
                            params![
                                pims_command::key_id(public_key).to_vec(),
                                public_key,
                                role.as_str()
                            ],
                        )?;
                        EXECUTED
                    }
                    Command::RemoveKey { key_id } => {
                        db.execute(
                            "UPDATE keychain SET active = 0 WHERE key_id = ?1",
                            params![key_id.to_vec()],
                        )?;
                        EXECUTED
                    }
                    other => {
                        let code = state.apply(other);
                        db.execute(
                            "UPDATE car SET state = ?1",
                            params![serde_json::to_string(&state)?],
                        )?;
                        code
                    }
                };
                tracing::info!(
                    command = e.command.kind().as_str(),
                    with_pin = accepted.with_pin,
                    code,
                    "command executed"
                );
                (code, None)
            }
        };
        let counter: i64 = db.query_row(
            "UPDATE car SET receipt_counter = receipt_counter + 1 RETURNING receipt_counter",
            [],
            |r| r.get(0),
        )?;
        // The car's state is the answer to a verified proof only: a refused one learns nothing.
        let state_text = match fault {
            None => serde_json::to_string(&state.vehicle_object(&self.vin))?,
            Some(_) => "{}".to_string(),
        };
        let receipt = Receipt {
            request: Sha256::digest(proof).into(),
            code,
            state: state_text.clone().into_bytes(),
            counter: counter as u64,
        };
        let signature = self.key.sign(&receipt.message())?;
        Ok(VehicleReceipt {
            request: receipt.request.to_vec().into(),
            code,
            fault,
            state: state_text,
            counter: receipt.counter,
            signature: signature.into(),
        })
    }

    /// The car's state now.
    pub fn state(&self) -> anyhow::Result<CarState> {
        let text: String = self
            .db()
            .query_row("SELECT state FROM car", [], |r| r.get(0))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Asks the command service which paired keys to remove (revoked or disabled devices) and
    /// removes them when the answer is signed by the pinned key for this sync's nonce. The
    /// number of keys removed.
    pub async fn sync_keychain(&self) -> anyhow::Result<usize> {
        let Some(server) = &self.server else {
            return Ok(0);
        };
        let keys: Vec<KeychainKey> = {
            let db = self.db();
            let mut stmt = db.prepare(
                "SELECT account, device_id, key_id FROM keychain
                 WHERE active = 1 AND account IS NOT NULL AND device_id IS NOT NULL",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(KeychainKey {
                    account: r.get(0)?,
                    device_id: r.get(1)?,
                    key_id: Bytes(r.get(2)?),
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut removed = 0;
        // The service answers at most 64 keys at a time.
        for batch in keys.chunks(64) {
            removed += self.sync_batch(server, batch).await?;
        }
        if removed > 0 {
            tracing::info!(removed, "keys removed by keychain sync");
        }
        Ok(removed)
    }

    async fn sync_batch(&self, server: &str, keys: &[KeychainKey]) -> anyhow::Result<usize> {
        let nonce: [u8; 32] = rand::random();
        let answer: KeychainRemovals = self
            .http
            .post(format!("{server}/v1/vehicles/{}/keychain/sync", self.vin))
            .json(&KeychainSync {
                nonce: nonce.to_vec().into(),
                keys: keys.to_vec(),
            })
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let remove: Vec<[u8; 32]> = answer
            .remove
            .iter()
            .filter_map(|id| id.as_slice().try_into().ok())
            .collect();
        // Signed over this very question: a relay that dropped a key from it, or changed what a
        // key is known by, gets an answer that does not verify.
        let asked: Vec<SyncedKey<'_>> = keys
            .iter()
            .map(|k| SyncedKey {
                account: &k.account,
                device_id: &k.device_id,
                key_id: k.key_id.as_slice(),
            })
            .collect();
        let message = keychain_sync_message(&self.vin, &nonce, &asked, &remove);
        anyhow::ensure!(
            signature_ok(&self.pin_key, &message, answer.signature.as_slice()),
            "the keychain sync answer is not signed by the pinned key for this question"
        );
        let db = self.db();
        let mut removed = 0;
        for id in &remove {
            // Only keys this sync asked about.
            if keys.iter().any(|k| k.key_id.as_slice() == id) {
                removed += db.execute(
                    "UPDATE keychain SET active = 0 WHERE key_id = ?1",
                    params![id.to_vec()],
                )?;
            }
        }
        Ok(removed)
    }

    /// Syncs every `every` until the process ends (the bound within which a revoked device's
    /// proofs stop at the car too).
    pub fn spawn_sync(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let car = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = car.sync_keychain().await {
                    tracing::warn!(error = %format!("{e:#}"), "keychain sync failed");
                }
            }
        })
    }

    /// The car's HTTP API: `POST /v1/pair`, `POST /v1/commands`, `GET /v1/state`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(car::PAIR, post(pair))
            .route(car::COMMANDS, post(command))
            .route(car::STATE, get(state))
            .with_state(self.clone())
    }
}

type Failure = (StatusCode, &'static str);

fn internal(e: anyhow::Error) -> Failure {
    tracing::error!(error = %format!("{e:#}"), "car failure");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

async fn pair(
    State(car): State<Arc<Vehicle>>,
    Json(req): Json<car::Pair>,
) -> Result<Json<VehiclePaired>, Failure> {
    match car.pair(&req).map_err(internal)? {
        Some(paired) => Ok(Json(paired)),
        None => Err((StatusCode::FORBIDDEN, "pairing refused")),
    }
}

async fn command(
    State(car): State<Arc<Vehicle>>,
    Json(req): Json<car::Command>,
) -> Result<Json<VehicleReceipt>, Failure> {
    car.command(req.proof.as_slice())
        .map(Json)
        .map_err(internal)
}

async fn state(State(car): State<Arc<Vehicle>>) -> Result<Json<serde_json::Value>, Failure> {
    let state = car.state().map_err(internal)?;
    Ok(Json(state.vehicle_object(&car.vin)))
}
