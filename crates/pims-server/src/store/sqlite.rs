//! [`Store`] on SQLite: one connection (SQLite serialises writers anyway), WAL, every
//! read-modify-write in a `BEGIN IMMEDIATE` transaction, run on the blocking thread pool.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use pims_proto::{ApiError, DeviceState, EnrollmentFinished, Platform};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::schema::{chain_existing_audit_after, MIGRATIONS};
use super::*;
use crate::audit::{link_mac, AuditKey, Chains, Link};
use crate::error::{api, Error, Result};

pub struct SqliteStore {
    /// The writer: every step, in an immediate transaction, on the blocking pool (its commit
    /// waits for an fsync).
    conn: Arc<Mutex<Option<Connection>>>,
    /// Reads outside a step run on the caller's thread on their own connection: WAL readers
    /// never wait for the writer or the disk's fsync, and a hand-off to the blocking pool
    /// would cost more than the read.
    reader: Mutex<Option<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and brings its schema up to date; audit rows
    /// are chained under `audit_key`.
    pub fn open(path: &Path, audit_key: AuditKey) -> anyhow::Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating database directory {}", dir.display()))?;
        }
        crate::files::prepare_sqlite_file(path)
            .with_context(|| format!("creating database {}", path.display()))?;
        let mut conn = Connection::open(path)
            .with_context(|| format!("opening database {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit (a counted wrong PIN, a used code) is on disk before it is answered.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        register_audit_mac(&conn, audit_key.clone())?;
        migrate(&mut conn, &audit_key)?;
        let reader = Connection::open(path)
            .with_context(|| format!("opening database {}", path.display()))?;
        reader.busy_timeout(Duration::from_secs(10))?;
        reader.pragma_update(None, "query_only", "ON")?;
        reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(Some(conn))),
            reader: Mutex::new(Some(reader)),
        })
    }

    /// Runs a read on the reader connection, here.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let guard = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(guard
            .as_ref()
            .ok_or_else(|| anyhow!("the store is closed"))?)
    }

    /// A PRAGMA's value on the store's own connection (pragmas are per connection).
    pub async fn pragma(&self, name: &'static str) -> Result<i64> {
        self.run(move |conn| Ok(conn.pragma_query_value(None, name, |row| row.get(0))?))
            .await
    }

    /// The schema version whose migration chains the audit rows already there.
    pub fn audit_chain_schema_version() -> usize {
        chain_existing_audit_after()
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            let conn = guard
                .as_mut()
                .ok_or_else(|| anyhow!("the store is closed"))?;
            f(conn)
        })
        .await
        .map_err(|e| anyhow!("store task failed: {e}"))?
    }

    /// Runs `f` in an immediate transaction; commits unless it fails internally.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<T> + Send + 'static,
    {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let result = f(&tx);
            match result {
                Err(Error::Internal(_)) => tx.rollback()?,
                _ => tx.commit()?,
            }
            result
        })
        .await
    }
}

/// `pims_audit_mac(prev_mac, id, prev_id, at, account, event, device_id, detail)`: the chain
/// MAC as an SQL function of this connection only, so [`audit`] appends a row in one statement
/// and keeps no key in the database.
fn register_audit_mac(conn: &Connection, key: AuditKey) -> anyhow::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "pims_audit_mac",
        8,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        move |ctx| {
            let prev_mac: Option<Vec<u8>> = ctx.get(0)?;
            let account: String = ctx.get(4)?;
            let event: String = ctx.get(5)?;
            let device_id: Option<String> = ctx.get(6)?;
            let detail: Option<String> = ctx.get(7)?;
            let link = Link {
                id: ctx.get(1)?,
                prev_id: ctx.get(2)?,
                at: ctx.get(3)?,
                account: &account,
                event: &event,
                device_id: device_id.as_deref(),
                detail: detail.as_deref(),
            };
            Ok(link_mac(&key, prev_mac.as_deref(), &link).to_vec())
        },
    )?;
    Ok(())
}

/// Chains the rows written before the chain existed, in id order (see
/// `CHAIN_EXISTING_AUDIT`); they are as trustworthy as the database at upgrade time.
fn chain_existing_audit(tx: &Transaction, key: &AuditKey) -> anyhow::Result<()> {
    let rows: Vec<AuditEvent> = tx
        .prepare_cached("SELECT id, at, account, event, device_id, detail FROM audit ORDER BY id")?
        .query_map([], |r| {
            Ok(AuditEvent {
                id: r.get(0)?,
                at: r.get(1)?,
                account: r.get(2)?,
                event: r.get(3)?,
                device_id: r.get(4)?,
                detail: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut chains = Chains::default();
    for row in &rows {
        let (prev_id, mac) = chains.append(key, row);
        exec(
            tx,
            "UPDATE audit SET prev_id = ?2, mac = ?3 WHERE id = ?1",
            params![row.id, prev_id, &mac[..]],
        )?;
    }
    if !rows.is_empty() {
        tracing::info!(rows = rows.len(), "chained the existing audit rows");
    }
    Ok(())
}

fn migrate(conn: &mut Connection, audit_key: &AuditKey) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: usize = query_row(&tx, "PRAGMA user_version", [], |r| r.get(0))?;
    anyhow::ensure!(
        version <= MIGRATIONS.len(),
        "database schema version {version} is newer than this server ({})",
        MIGRATIONS.len()
    );
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql)
            .with_context(|| format!("applying migration {}", i + 1))?;
        if i + 1 == chain_existing_audit_after() {
            chain_existing_audit(&tx, audit_key)?;
        }
        tx.pragma_update(None, "user_version", i + 1)?;
    }
    tx.commit()?;
    Ok(())
}

// ---- row helpers ------------------------------------------------------------------------

/// Every statement is compiled once per connection and kept: compiling one costs more than
/// running it.
const STATEMENT_CACHE: usize = 256;

fn exec<P: rusqlite::Params>(c: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params)
}

fn query_row<T, P, F>(c: &Connection, sql: &str, params: P, f: F) -> rusqlite::Result<T>
where
    P: rusqlite::Params,
    F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
{
    c.prepare_cached(sql)?.query_row(params, f)
}

fn parse_state(s: &str) -> rusqlite::Result<DeviceState> {
    match s {
        "pending" => Ok(DeviceState::Pending),
        "active" => Ok(DeviceState::Active),
        "disabled" => Ok(DeviceState::Disabled),
        other => Err(rusqlite::Error::InvalidColumnType(
            0,
            format!("device state {other}"),
            rusqlite::types::Type::Text,
        )),
    }
}

fn counter_to_sql(counter: u64) -> Result<i64> {
    i64::try_from(counter).map_err(|_| {
        Error::Api(ApiError::InvalidParameter {
            name: "counter".into(),
        })
    })
}

fn ensure_account(tx: &Transaction, account: &str, now: i64) -> Result<()> {
    exec(
        tx,
        "INSERT OR IGNORE INTO accounts (subject, created_at) VALUES (?1, ?2)",
        params![account, now],
    )?;
    Ok(())
}

fn read_account(conn: &Connection, account: &str) -> Result<Option<AccountRecord>> {
    Ok(query_row(
        conn,
        "SELECT phone_number, pin_record, pin_credential_id, pin_failures, recovery_held_until
             FROM accounts WHERE subject = ?1",
        [account],
        |r| {
            Ok(AccountRecord {
                phone_number: r.get(0)?,
                pin_record: r.get(1)?,
                pin_credential_id: r.get(2)?,
                pin_failures: r.get(3)?,
                recovery_held_until: r.get(4)?,
            })
        },
    )
    .optional()?)
}

fn account_in_tx(tx: &Transaction, account: &str, now: i64) -> Result<AccountRecord> {
    ensure_account(tx, account, now)?;
    read_account(tx, account)?.ok_or_else(|| anyhow!("account row vanished").into())
}

fn read_device(conn: &Connection, account: &str, device_id: &str) -> Result<Option<DeviceRecord>> {
    Ok(query_row(
        conn,
        "SELECT id, public_key, state, counter, activation_nonce, created_at
             FROM devices WHERE id = ?1 AND account = ?2",
        params![device_id, account],
        |r| {
            Ok(DeviceRecord {
                id: r.get(0)?,
                public_key: r.get(1)?,
                state: parse_state(&r.get::<_, String>(2)?)?,
                counter: r.get::<_, i64>(3)? as u64,
                activation_nonce: r.get(4)?,
                created_at: r.get(5)?,
            })
        },
    )
    .optional()?)
}

fn audit(
    tx: &Transaction,
    now: i64,
    account: &str,
    event: &str,
    device_id: Option<&str>,
    detail: Option<&str>,
) -> Result<()> {
    // Links to the account's last row (one writer at a time: the transaction is IMMEDIATE).
    // Cached: the statement is long to prepare, and most steps audit.
    tx.prepare_cached(
        "INSERT INTO audit (id, prev_id, at, account, event, device_id, detail, mac)
         SELECT n.id, p.id, ?1, ?2, ?3, ?4, ?5,
                pims_audit_mac(p.mac, n.id, p.id, ?1, ?2, ?3, ?4, ?5)
         FROM (SELECT COALESCE((SELECT MAX(id) FROM audit), 0) + 1 AS id) AS n
         LEFT JOIN (SELECT id, mac FROM audit WHERE account = ?2 ORDER BY id DESC LIMIT 1) AS p
           ON 1",
    )?
    .execute(params![now, account, event, device_id, detail])?;
    Ok(())
}

fn live_device_count(tx: &Transaction, account: &str, now: i64, pending_ttl: u64) -> Result<u32> {
    Ok(query_row(
        tx,
        "SELECT COUNT(*) FROM devices WHERE account = ?1
           AND (state = 'active' OR (state = 'pending' AND created_at > ?2))",
        params![account, now.saturating_sub(pending_ttl as i64)],
        |r| r.get(0),
    )?)
}

fn disable_device(
    tx: &Transaction,
    account: &str,
    device_id: &str,
    now: i64,
    why: &str,
) -> Result<()> {
    exec(
        tx,
        "UPDATE devices SET state = 'disabled' WHERE id = ?1 AND account = ?2",
        params![device_id, account],
    )?;
    audit(
        tx,
        now,
        account,
        "device_disabled",
        Some(device_id),
        Some(why),
    )
}

/// The counter rule ([`DeviceRecord::counter_advances`]) on a step: a counter that does not
/// grow disables the device, and the step answers `DeviceUnknown`.
fn advance_counter(
    tx: &Transaction,
    account: &str,
    device: &DeviceRecord,
    presented: u64,
    now: i64,
) -> Result<()> {
    if device.counter_advances(presented) {
        return Ok(());
    }
    disable_device(tx, account, &device.id, now, COUNTER_REPLAYED)?;
    api(ApiError::DeviceUnknown)
}

/// Records a failed PIN proof whose start was the `ordinal`-th counted attempt.
fn pin_failed(
    tx: &Transaction,
    account: &str,
    ordinal: u32,
    limit: u32,
    now: i64,
) -> Result<ApiError> {
    let outcome = pin_failure(ordinal, limit);
    audit(
        tx,
        now,
        account,
        "pin_failure",
        None,
        Some(&format!("attempt {ordinal}")),
    )?;
    if outcome == ApiError::PinBlocked {
        audit(tx, now, account, "pin_blocked", None, None)?;
    }
    Ok(outcome)
}

/// Rejects a blocked account, else counts (and audits) one more PIN attempt and returns its
/// ordinal. The attempt counts from its start: an attempt never finished still counts.
fn begin_pin_attempt(tx: &Transaction, account: &str, limit: u32, now: i64) -> Result<u32> {
    let failures: u32 = query_row(
        tx,
        "SELECT pin_failures FROM accounts WHERE subject = ?1",
        [account],
        |r| r.get(0),
    )?;
    if pin_blocked(failures, limit) {
        return api(ApiError::AccountBlocked);
    }
    exec(
        tx,
        "UPDATE accounts SET pin_failures = pin_failures + 1 WHERE subject = ?1",
        [account],
    )?;
    audit(
        tx,
        now,
        account,
        "pin_attempt",
        None,
        Some(&pin_attempt_detail(failures + 1, limit)),
    )?;
    Ok(failures + 1)
}

/// Uses up a live challenge of the account of the given kind: its device, the ordinal of the
/// PIN attempt it started and, for a PIN change, what it authorized.
fn use_challenge(
    tx: &Transaction,
    challenge_id: &str,
    account: &str,
    now: i64,
    kind: ChallengeKind,
) -> Result<UsedChallenge> {
    let challenge = query_row(
        tx,
        "SELECT device_id, pin_ordinal, pin_change, pin_credential_id, audience
             FROM otp_challenges
             WHERE id = ?1 AND account = ?2 AND used_at IS NULL AND expires_at > ?3
               AND (pin_change IS NOT NULL) = ?4",
        params![challenge_id, account, now, kind == ChallengeKind::PinChange],
        |r| {
            Ok(UsedChallenge {
                device_id: r.get(0)?,
                ordinal: r.get(1)?,
                pin_change: r.get(2)?,
                credential_id: r.get(3)?,
                audience: r.get(4)?,
            })
        },
    )
    .optional()?;
    let Some(challenge) = challenge else {
        return api(ApiError::SessionExpired);
    };
    exec(
        tx,
        "UPDATE otp_challenges SET used_at = ?2 WHERE id = ?1",
        params![challenge_id, now],
    )?;
    Ok(challenge)
}

struct UsedChallenge {
    device_id: String,
    ordinal: Option<u32>,
    /// `reset` or `update` for a PIN-change challenge.
    pin_change: Option<String>,
    credential_id: Option<String>,
    audience: Option<String>,
}

/// Makes `record` the account's PIN, which also clears the failure count.
fn set_pin(
    tx: &Transaction,
    account: &str,
    record: &[u8],
    credential_id: &str,
    origin: PinOrigin,
    now: i64,
) -> Result<()> {
    exec(
        tx,
        "UPDATE accounts SET pin_record = ?2, pin_credential_id = ?3, pin_failures = 0,
                pin_set_at = ?4, pin_set_by = ?5,
                pin_recovered_at = CASE WHEN ?5 = 'sms_recovery' THEN ?4
                                        ELSE pin_recovered_at END
         WHERE subject = ?1",
        params![account, record, credential_id, now, origin.as_str()],
    )?;
    // Logins started against the previous PIN and PIN changes authorized before this one
    // must not finish over the new PIN.
    exec(
        tx,
        "UPDATE otp_challenges SET used_at = ?2
         WHERE account = ?1 AND used_at IS NULL
           AND (pin_ordinal IS NOT NULL OR pin_change IS NOT NULL)",
        params![account, now],
    )?;
    exec(
        tx,
        "UPDATE enrollment_sessions SET finished_at = ?2
         WHERE account = ?1 AND finished_at IS NULL AND login_state IS NOT NULL",
        params![account, now],
    )?;
    Ok(())
}

/// Records the challenge a PIN change finishes over, with what its start authorized.
fn open_pin_change(
    tx: &Transaction,
    account: &str,
    device_id: &str,
    change: &str,
    next: &PinChangeChallenge,
    now: i64,
) -> Result<()> {
    exec(
        tx,
        "INSERT INTO otp_challenges (id, account, device_id, nonce, pin_change,
             pin_credential_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            next.challenge_id,
            account,
            device_id,
            next.nonce,
            change,
            next.credential_id,
            now,
            now + next.ttl as i64
        ],
    )?;
    Ok(())
}

/// Disables every device of the account and closes its open enrollment sessions and
/// challenges (started against devices or a PIN that no longer count); the number disabled.
fn disable_every_device(tx: &Transaction, account: &str, now: i64) -> Result<usize> {
    let disabled = exec(
        tx,
        "UPDATE devices SET state = 'disabled' WHERE account = ?1 AND state != 'disabled'",
        [account],
    )?;
    exec(
        tx,
        "UPDATE enrollment_sessions SET finished_at = ?2
         WHERE account = ?1 AND finished_at IS NULL",
        params![account, now],
    )?;
    exec(
        tx,
        "UPDATE otp_challenges SET used_at = ?2 WHERE account = ?1 AND used_at IS NULL",
        params![account, now],
    )?;
    Ok(disabled)
}

fn reset_pin_failures(tx: &Transaction, account: &str) -> Result<()> {
    exec(
        tx,
        "UPDATE accounts SET pin_failures = 0 WHERE subject = ?1",
        [account],
    )?;
    Ok(())
}

fn resolve_number(tx: &Transaction, account: &str, target: &CodeTarget) -> Result<Option<String>> {
    match target {
        CodeTarget::TrustedNumber => {
            match read_account(tx, account)?.and_then(|a| a.phone_number) {
                Some(n) => Ok(Some(n)),
                None => api(ApiError::NoPhoneNumber),
            }
        }
        CodeTarget::Number(n) => Ok(Some(n.clone())),
        CodeTarget::Latest => Ok(None),
    }
}

fn invalid_code(expired: bool, attempts_remaining: u32) -> Error {
    Error::Api(ApiError::SmsCodeInvalid {
        expired,
        attempts_remaining,
    })
}

/// Counts one check of the latest code for the target; returns the code's id if it matched.
fn check_code(tx: &Transaction, check: &CodeCheck) -> Result<i64> {
    let number = resolve_number(tx, &check.account, &check.target)?;
    let row = query_row(
        tx,
        "SELECT id, phone_number, nonce, expires_at, checks, state FROM sms_codes
             WHERE account = ?1 AND purpose = ?2 AND (?3 IS NULL OR phone_number = ?3)
             ORDER BY id DESC LIMIT 1",
        params![check.account, check.purpose.as_str(), number],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, String>(5)?,
            ))
        },
    )
    .optional()?;
    let Some((id, phone, nonce, expires_at, checks, state)) = row else {
        return Err(invalid_code(false, 0));
    };
    if state != "live" {
        return Err(invalid_code(false, 0));
    }
    if check.now >= expires_at {
        return Err(invalid_code(true, 0));
    }
    if checks >= check.max_checks {
        return Err(invalid_code(false, 0));
    }
    let checks = checks + 1;
    exec(
        tx,
        "UPDATE sms_codes SET checks = ?2 WHERE id = ?1",
        params![id, checks],
    )?;
    if (check.matcher)(&phone, &nonce) {
        return Ok(id);
    }
    if checks >= check.max_checks {
        exec(
            tx,
            "UPDATE sms_codes SET state = 'exhausted' WHERE id = ?1",
            [id],
        )?;
    }
    Err(invalid_code(false, check.max_checks - checks))
}

/// Uses up a code that an earlier check accepted, if it is still valid.
fn consume_code(tx: &Transaction, code_id: i64, now: i64) -> Result<()> {
    let (expires_at, state): (i64, String) = query_row(
        tx,
        "SELECT expires_at, state FROM sms_codes WHERE id = ?1",
        [code_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if state != "live" {
        return Err(invalid_code(false, 0));
    }
    if now >= expires_at {
        return Err(invalid_code(true, 0));
    }
    exec(
        tx,
        "UPDATE sms_codes SET state = 'consumed' WHERE id = ?1",
        [code_id],
    )?;
    Ok(())
}

/// `RateLimited` if the sends of the window by `column` already reached `limit`.
fn sends_in_window(
    tx: &Transaction,
    column: &str,
    value: &str,
    now: i64,
    limit: u32,
) -> Result<()> {
    let sql = format!(
        "SELECT COUNT(*), MIN(sent_at) FROM sms_sends WHERE {column} = ?1 AND sent_at > ?2"
    );
    let (count, oldest) = query_row(tx, &sql, params![value, send_window_start(now)], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    check_sends(count, oldest, now, limit)
}

/// The per-address limit ([`check_address_sends`]); the ordinal of this send.
fn address_sends(tx: &Transaction, address: &str, now: i64, limit: u32) -> Result<i64> {
    let last = query_row(
        tx,
        "SELECT seq FROM sms_address_sends WHERE client_address = ?1
         ORDER BY seq DESC LIMIT 1",
        [address],
        |r| r.get(0),
    )
    .optional()?;
    let first = query_row(
        tx,
        "SELECT seq, sent_at FROM sms_address_sends WHERE client_address = ?1 AND sent_at > ?2
         ORDER BY sent_at, seq LIMIT 1",
        params![address, send_window_start(now)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?;
    check_address_sends(last, first, now, limit)
}

fn store_outcome(
    tx: &Transaction,
    account: &str,
    key: &str,
    scope: &str,
    outcome: &StoredOutcome,
    now: i64,
) -> Result<()> {
    let json = serde_json::to_string(outcome).map_err(anyhow::Error::from)?;
    exec(tx,
        "INSERT INTO idempotency (account, key, scope, outcome, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![account, key, scope, json, now],
    )?;
    Ok(())
}

fn read_outcome(
    conn: &Connection,
    account: &str,
    key: &str,
) -> Result<Option<(String, StoredOutcome)>> {
    let row: Option<(String, String)> = query_row(
        conn,
        "SELECT scope, outcome FROM idempotency WHERE account = ?1 AND key = ?2",
        params![account, key],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?;
    match row {
        None => Ok(None),
        Some((scope, json)) => {
            let outcome = serde_json::from_str(&json).map_err(anyhow::Error::from)?;
            Ok(Some((scope, outcome)))
        }
    }
}

fn finish_enrollment_tx(
    tx: &Transaction,
    step: &FinishEnrollmentStep,
) -> Result<EnrollmentFinished> {
    let account = step.account.as_str();
    let now = step.now;
    let session = query_row(
        tx,
        "SELECT pin_ordinal, sms_code_id, phone_number, pin_credential_id
             FROM enrollment_sessions
             WHERE id = ?1 AND account = ?2 AND finished_at IS NULL AND expires_at > ?3",
        params![step.enrollment_id, account, now],
        |r| {
            Ok((
                r.get::<_, Option<u32>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        },
    )
    .optional()?;
    let Some((ordinal, code_id, new_number, credential_id)) = session else {
        return api(ApiError::SessionExpired);
    };
    exec(
        tx,
        "UPDATE enrollment_sessions SET finished_at = ?2 WHERE id = ?1",
        params![step.enrollment_id, now],
    )?;

    match &step.proof {
        EnrollmentProof::BadSignature => return api(ApiError::BadSignature),
        EnrollmentProof::Login { pin_ok: false } => {
            let ordinal = ordinal.ok_or_else(|| anyhow!("login session without ordinal"))?;
            return Err(pin_failed(tx, account, ordinal, step.limits.pin_attempts, now)?.into());
        }
        // A proven PIN resets the count even if a later check fails.
        EnrollmentProof::Login { pin_ok: true } => reset_pin_failures(tx, account)?,
        EnrollmentProof::Register { .. } => {}
    }

    let acct = account_in_tx(tx, account, now)?;
    if new_number.is_some() && acct.phone_number.is_some() {
        return api(ApiError::PhoneNumberAlreadyRegistered);
    }
    if let EnrollmentProof::Register { .. } = step.proof {
        if acct.pin_record.is_some() {
            return api(ApiError::PinStateChanged);
        }
        acct.check_recovery_allowed(now)?;
    }
    if live_device_count(tx, account, now, step.limits.pending_device_ttl)?
        >= step.limits.max_devices
    {
        return api(ApiError::DeviceLimitReached);
    }
    consume_code(tx, code_id, now)?;

    if let EnrollmentProof::Register { pin_record } = &step.proof {
        let credential_id =
            credential_id.ok_or_else(|| anyhow!("registration session without identifier"))?;
        let had_pin: bool = query_row(
            tx,
            "SELECT pin_set_at IS NOT NULL FROM accounts WHERE subject = ?1",
            [account],
            |r| r.get(0),
        )?;
        let origin = registered_pin_origin(had_pin);
        set_pin(tx, account, pin_record, &credential_id, origin, now)?;
        audit(
            tx,
            now,
            account,
            "pin_registered",
            None,
            Some(origin.as_str()),
        )?;
    }
    if let Some(number) = &new_number {
        exec(
            tx,
            "UPDATE accounts SET phone_number = ?2 WHERE subject = ?1",
            params![account, number],
        )?;
        audit(tx, now, account, "phone_number_added", None, None)?;
    }
    let d = &step.device;
    exec(
        tx,
        "INSERT INTO devices (id, account, public_key, name, platform, state, counter,
                              activation_nonce, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?7)",
        params![
            d.id,
            account,
            d.public_key,
            d.name,
            d.platform.as_str(),
            d.activation_nonce,
            now
        ],
    )?;
    audit(
        tx,
        now,
        account,
        "device_enrolled",
        Some(&d.id),
        Some(d.platform.as_str()),
    )?;
    Ok(EnrollmentFinished {
        device_id: d.id.clone(),
        activation_nonce: d.activation_nonce.clone().into(),
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn account(&self, account: &str) -> Result<Option<AccountRecord>> {
        self.read(|c| read_account(c, account))
    }

    async fn accounts_with_phone_number(&self, phone_number: &str) -> Result<Vec<String>> {
        let phone_number = phone_number.to_string();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT subject FROM accounts WHERE phone_number = ?1 ORDER BY subject",
            )?;
            let rows = stmt.query_map([&phone_number], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn device(&self, account: &str, device_id: &str) -> Result<Option<DeviceRecord>> {
        self.read(|c| read_device(c, account, device_id))
    }

    async fn prepare_sms_code(&self, req: SmsSendRequest) -> Result<SmsToSend> {
        self.write(move |tx| {
            ensure_account(tx, &req.account, req.now)?;
            let number = resolve_number(tx, &req.account, &req.target)?
                .ok_or_else(|| anyhow!("an SMS needs a number"))?;
            sends_in_window(tx, "account", &req.account, req.now, req.per_account_per_hour)?;
            sends_in_window(tx, "phone_number", &number, req.now, req.per_number_per_hour)?;
            let address_seq = match &req.client_address {
                Some(address) => Some(address_sends(tx, address, req.now, req.per_address_per_hour)?),
                None => None,
            };
            exec(
                tx,
                "INSERT INTO sms_sends (account, phone_number, sent_at, client_address)
                 VALUES (?1, ?2, ?3, ?4)",
                params![req.account, number, req.now, req.client_address],
            )?;
            if let (Some(address), Some(seq)) = (&req.client_address, address_seq) {
                exec(
                    tx,
                    "INSERT INTO sms_address_sends (send_id, client_address, seq, sent_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![tx.last_insert_rowid(), address, seq, req.now],
                )?;
            }
            // A live code is resent as is: same code, same expiry.
            let live: Option<(Vec<u8>, i64)> = query_row(tx,
                    "SELECT nonce, expires_at FROM sms_codes
                     WHERE account = ?1 AND purpose = ?2 AND phone_number = ?3
                       AND state = 'live' AND expires_at > ?4 AND checks < ?5
                     ORDER BY id DESC LIMIT 1",
                    params![req.account, req.purpose.as_str(), number, req.now, req.max_checks],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((nonce, expires_at)) = live {
                return Ok(SmsToSend {
                    phone_number: number,
                    nonce,
                    expires_at,
                    resend: true,
                });
            }
            let expires_at = req.now + req.ttl as i64;
            exec(tx,
                "INSERT INTO sms_codes (account, purpose, phone_number, nonce, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![req.account, req.purpose.as_str(), number, req.new_nonce, req.now, expires_at],
            )?;
            Ok(SmsToSend {
                phone_number: number,
                nonce: req.new_nonce,
                expires_at,
                resend: false,
            })
        })
        .await
    }

    async fn check_sms_code(&self, check: CodeCheck) -> Result<bool> {
        self.write(move |tx| {
            let acct = account_in_tx(tx, &check.account, check.now)?;
            check_code(tx, &check)?;
            Ok(acct.pin_record.is_some())
        })
        .await
    }

    async fn add_phone_number(&self, check: CodeCheck, phone_number: String) -> Result<()> {
        self.write(move |tx| {
            let acct = account_in_tx(tx, &check.account, check.now)?;
            if acct.phone_number.is_some() {
                return api(ApiError::PhoneNumberAlreadyRegistered);
            }
            let code_id = check_code(tx, &check)?;
            consume_code(tx, code_id, check.now)?;
            exec(
                tx,
                "UPDATE accounts SET phone_number = ?2 WHERE subject = ?1",
                params![check.account, phone_number],
            )?;
            audit(
                tx,
                check.now,
                &check.account,
                "phone_number_added",
                None,
                None,
            )
        })
        .await
    }

    async fn start_enrollment(&self, step: StartEnrollmentStep) -> Result<()> {
        self.write(move |tx| {
            let account = step.account.as_str();
            let now = step.now;
            let acct = account_in_tx(tx, account, now)?;
            let (purpose, target) = acct.enrollment_code(&step)?;
            if live_device_count(tx, account, now, step.limits.pending_device_ttl)?
                >= step.limits.max_devices
            {
                return api(ApiError::DeviceLimitReached);
            }
            if step.login.is_some() && pin_blocked(acct.pin_failures, step.limits.pin_attempts) {
                return api(ApiError::AccountBlocked);
            }
            let code_id = check_code(
                tx,
                &CodeCheck {
                    account: step.account.clone(),
                    purpose,
                    target,
                    matcher: step.sms_code.clone(),
                    now,
                    max_checks: step.limits.sms_code_max_checks,
                },
            )?;
            let ordinal = match &step.login {
                Some(_) => Some(begin_pin_attempt(
                    tx,
                    account,
                    step.limits.pin_attempts,
                    now,
                )?),
                None => None,
            };
            exec(
                tx,
                "INSERT INTO enrollment_sessions (id, account, nonce, login_state, pin_ordinal,
                     sms_code_id, phone_number, created_at, expires_at, pin_credential_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    step.session_id,
                    account,
                    step.nonce,
                    step.login.as_ref().map(|l| &l.state),
                    ordinal,
                    code_id,
                    step.phone_number,
                    now,
                    now + step.ttl as i64,
                    step.credential_id,
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn enrollment_session(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<EnrollmentSession>> {
        self.read(|c| {
            Ok(query_row(
                c,
                "SELECT id, nonce, login_state FROM enrollment_sessions
                 WHERE id = ?1 AND account = ?2 AND finished_at IS NULL AND expires_at > ?3",
                params![id, account, now],
                |r| {
                    Ok(EnrollmentSession {
                        id: r.get(0)?,
                        nonce: r.get(1)?,
                        login_state: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
    }

    async fn idempotent_outcome(
        &self,
        account: &str,
        key: &str,
    ) -> Result<Option<(String, StoredOutcome)>> {
        self.read(|c| read_outcome(c, account, key))
    }

    async fn finish_enrollment(&self, step: FinishEnrollmentStep) -> Result<EnrollmentFinished> {
        self.write(move |tx| {
            ensure_account(tx, &step.account, step.now)?;
            if let Some((scope, outcome)) = read_outcome(tx, &step.account, &step.idempotency_key)?
            {
                return replay_scoped(&step.enrollment_id, &scope, outcome);
            }
            let result = finish_enrollment_tx(tx, &step);
            let outcome = match &result {
                Ok(v) => StoredOutcome::Ok(v.clone()),
                Err(Error::Api(e)) => StoredOutcome::Error(e.clone()),
                Err(Error::Internal(_)) => return result,
            };
            store_outcome(
                tx,
                &step.account,
                &step.idempotency_key,
                &step.enrollment_id,
                &outcome,
                step.now,
            )?;
            result
        })
        .await
    }

    async fn activate_device(&self, step: ActivateStep) -> Result<bool> {
        self.write(move |tx| {
            let device = read_device(tx, &step.account, &step.device_id)?;
            let Some(device) = device else {
                return api(ApiError::DeviceUnknown);
            };
            match device.live_state(step.now, step.pending_device_ttl) {
                Some(DeviceState::Pending | DeviceState::Active) => {}
                Some(DeviceState::Disabled) | None => return api(ApiError::DeviceUnknown),
            }
            advance_counter(tx, &step.account, &device, step.counter, step.now)?;
            exec(
                tx,
                "UPDATE devices SET state = 'active', counter = ?3,
                        activated_at = COALESCE(activated_at, ?4)
                 WHERE id = ?1 AND account = ?2",
                params![
                    device.id,
                    step.account,
                    counter_to_sql(step.counter)?,
                    step.now
                ],
            )?;
            let activated = device.state == DeviceState::Pending;
            if activated {
                audit(
                    tx,
                    step.now,
                    &step.account,
                    "device_activated",
                    Some(&device.id),
                    None,
                )?;
            }
            Ok(activated)
        })
        .await
    }

    async fn create_otp_challenge(&self, step: ChallengeStep) -> Result<()> {
        self.write(move |tx| {
            let acct = account_in_tx(tx, &step.account, step.now)?;
            let device = read_device(tx, &step.account, &step.device_id)?;
            let Some(device) = device.filter(|d| d.state == DeviceState::Active) else {
                return api(ApiError::DeviceUnknown);
            };
            match step.login_counter {
                Some(counter) => {
                    advance_counter(tx, &step.account, &device, counter, step.now)?;
                    exec(
                        tx,
                        "UPDATE devices SET counter = ?2 WHERE id = ?1",
                        params![device.id, counter_to_sql(counter)?],
                    )?;
                }
                None => {
                    let open: u32 = query_row(
                        tx,
                        "SELECT COUNT(*) FROM otp_challenges
                         WHERE device_id = ?1 AND used_at IS NULL AND expires_at > ?2
                           AND pin_ordinal IS NULL",
                        params![step.device_id, step.now],
                        |r| r.get(0),
                    )?;
                    check_open_challenges(open, step.max_open, step.ttl)?;
                }
            }
            let ordinal = match &step.login {
                None => None,
                Some(login) => {
                    match &acct.pin_record {
                        None => return api(ApiError::NoPin),
                        Some(r) if *r != login.pin_record => return api(ApiError::PinStateChanged),
                        Some(_) => {}
                    }
                    Some(begin_pin_attempt(
                        tx,
                        &step.account,
                        step.pin_attempts,
                        step.now,
                    )?)
                }
            };
            exec(
                tx,
                "INSERT INTO otp_challenges (id, account, device_id, nonce, login_state,
                     pin_ordinal, created_at, expires_at, audience)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    step.challenge_id,
                    step.account,
                    step.device_id,
                    step.nonce,
                    step.login.as_ref().map(|l| &l.state),
                    ordinal,
                    step.now,
                    step.now + step.ttl as i64,
                    step.audience,
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn otp_challenge(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<OtpChallengeRecord>> {
        self.read(|c| {
            Ok(query_row(
                c,
                "SELECT c.id, c.device_id, c.nonce, c.login_state, d.public_key
                 FROM otp_challenges c JOIN devices d ON d.id = c.device_id
                 WHERE c.id = ?1 AND c.account = ?2 AND c.used_at IS NULL AND c.expires_at > ?3",
                params![id, account, now],
                |r| {
                    Ok(OtpChallengeRecord {
                        id: r.get(0)?,
                        device_id: r.get(1)?,
                        nonce: r.get(2)?,
                        login_state: r.get(3)?,
                        device_public_key: r.get(4)?,
                    })
                },
            )
            .optional()?)
        })
    }

    async fn issue_otp(&self, step: IssueOtpStep) -> Result<()> {
        self.write(move |tx| {
            let account = step.account.as_str();
            let now = step.now;
            let UsedChallenge {
                device_id,
                ordinal,
                audience,
                ..
            } = use_challenge(tx, &step.challenge_id, account, now, ChallengeKind::Device)?;
            if let OtpProof::BadSignature = step.proof {
                return api(ApiError::BadSignature);
            }
            let device = read_device(tx, account, &device_id)?;
            let Some(device) = device.filter(|d| d.state == DeviceState::Active) else {
                return api(ApiError::DeviceUnknown);
            };
            advance_counter(tx, account, &device, step.counter, now)?;
            exec(
                tx,
                "UPDATE devices SET counter = ?2, last_used_at = ?3 WHERE id = ?1",
                params![device_id, counter_to_sql(step.counter)?, now],
            )?;
            let with_pin = match step.proof {
                OtpProof::BadSignature => unreachable!("handled above"),
                OtpProof::WithoutPin => false,
                OtpProof::Pin { ok } => {
                    let ordinal =
                        ordinal.ok_or_else(|| anyhow!("PIN challenge without ordinal"))?;
                    if !ok {
                        return Err(
                            pin_failed(tx, account, ordinal, step.pin_attempts, now)?.into()
                        );
                    }
                    reset_pin_failures(tx, account)?;
                    true
                }
            };
            exec(
                tx,
                "INSERT INTO otps (mac, account, device_id, with_pin, issued_at, expires_at,
                                   audience)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    step.otp_mac,
                    account,
                    device_id,
                    with_pin,
                    now,
                    now + step.otp_ttl as i64,
                    audience,
                ],
            )?;
            audit(
                tx,
                now,
                account,
                "otp_issued",
                Some(&device_id),
                Some(if with_pin { "with_pin" } else { "without_pin" }),
            )
        })
        .await
    }

    async fn use_otp(
        &self,
        otp_mac: &[u8],
        now: i64,
        relying_party: &str,
    ) -> Result<Option<VerifiedOtp>> {
        let (mac, rp) = (otp_mac.to_vec(), relying_party.to_string());
        self.write(move |tx| {
            let used = query_row(
                tx,
                "UPDATE otps SET used_at = ?2, used_by = ?3
                     WHERE mac = ?1 AND used_at IS NULL AND expires_at > ?2 AND audience = ?3
                       AND EXISTS (SELECT 1 FROM devices d
                                   WHERE d.id = otps.device_id AND d.state = 'active')
                     RETURNING account, device_id, with_pin, issued_at",
                params![mac, now, rp],
                |r| {
                    Ok(VerifiedOtp {
                        subject: r.get(0)?,
                        device_id: r.get(1)?,
                        with_pin: r.get(2)?,
                        issued_at: r.get(3)?,
                        pin_set_at: None,
                        pin_set_by: None,
                        pin_recovered_at: None,
                    })
                },
            )
            .optional()?;
            let used = match used {
                None => None,
                Some(mut v) => {
                    let (at, by, recovered): (Option<i64>, Option<String>, Option<i64>) =
                        query_row(
                            tx,
                            "SELECT pin_set_at, pin_set_by, pin_recovered_at FROM accounts
                             WHERE subject = ?1",
                            [&v.subject],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )?;
                    v.pin_set_at = at;
                    v.pin_set_by = by.as_deref().and_then(PinOrigin::parse);
                    v.pin_recovered_at = recovered;
                    Some(v)
                }
            };
            if let Some(v) = &used {
                audit(
                    tx,
                    now,
                    &v.subject,
                    "otp_used",
                    Some(&v.device_id),
                    Some(&rp),
                )?;
            }
            Ok(used)
        })
        .await
    }

    async fn list_devices(
        &self,
        account: &str,
        now: i64,
        pending_ttl: u64,
    ) -> Result<Vec<DeviceSummary>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, name, platform, state, created_at, last_used_at FROM devices
                 WHERE account = ?1
                   AND (state = 'active' OR (state = 'pending' AND created_at > ?2))
                 ORDER BY created_at, rowid",
            )?;
            let rows = stmt.query_map(
                params![account, now.saturating_sub(pending_ttl as i64)],
                |r| {
                    let platform: String = r.get(2)?;
                    Ok(DeviceSummary {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        platform: Platform::parse(&platform).ok_or_else(|| {
                            rusqlite::Error::InvalidColumnType(
                                2,
                                format!("platform {platform}"),
                                rusqlite::types::Type::Text,
                            )
                        })?,
                        state: parse_state(&r.get::<_, String>(3)?)?,
                        created_at: r.get(4)?,
                        last_used_at: r.get(5)?,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn revoke_device(&self, account: &str, device_id: &str, now: i64) -> Result<()> {
        let (account, device_id) = (account.to_string(), device_id.to_string());
        self.write(move |tx| {
            match read_device(tx, &account, &device_id)? {
                Some(d) if d.state != DeviceState::Disabled => {}
                _ => return api(ApiError::DeviceUnknown),
            }
            disable_device(tx, &account, &device_id, now, "revoked by the account")
        })
        .await
    }

    async fn remove_enrollments(&self, account: &str, now: i64) -> Result<bool> {
        let account = account.to_string();
        self.write(move |tx| {
            let had_pin = account_in_tx(tx, &account, now)?.pin_record.is_some();
            let disabled = disable_every_device(tx, &account, now)?;
            exec(
                tx,
                "UPDATE accounts SET pin_record = NULL, pin_credential_id = NULL, pin_failures = 0
                 WHERE subject = ?1",
                [&account],
            )?;
            audit(
                tx,
                now,
                &account,
                "enrollments_removed",
                None,
                Some(&format!("{disabled} devices")),
            )?;
            Ok(had_pin || disabled > 0)
        })
        .await
    }

    async fn device_operation(&self, step: DeviceOperationStep) -> Result<OperationOutcome> {
        self.write(move |tx| {
            let account = step.account.as_str();
            let now = step.now;
            let kind = step.operation.challenge_kind();
            let challenge = use_challenge(tx, &step.challenge_id, account, now, kind)?;
            let device_id = challenge.device_id.as_str();
            if !step.signature_ok {
                return api(ApiError::BadSignature);
            }
            let device = read_device(tx, account, device_id)?;
            let Some(device) = device.filter(|d| d.state == DeviceState::Active) else {
                return api(ApiError::DeviceUnknown);
            };
            advance_counter(tx, account, &device, step.counter, now)?;
            exec(
                tx,
                "UPDATE devices SET counter = ?2, last_used_at = ?3 WHERE id = ?1",
                params![device_id, counter_to_sql(step.counter)?, now],
            )?;
            match (challenge.ordinal, step.pin_ok) {
                (Some(ordinal), Some(false)) => {
                    return Err(pin_failed(tx, account, ordinal, step.pin_attempts, now)?.into())
                }
                (Some(_), Some(true)) => reset_pin_failures(tx, account)?,
                (None, None) => {}
                _ => {
                    return api(ApiError::InvalidParameter {
                        name: "login".into(),
                    })
                }
            }
            step.operation
                .check_pin_proof(challenge.ordinal.is_some())?;
            let mut outcome = OperationOutcome::default();
            match &step.operation {
                DeviceOperation::StartPinUpdate { next } => {
                    if let Some(next) = next {
                        open_pin_change(tx, account, device_id, "update", next, now)?;
                    }
                }
                DeviceOperation::StartPinReset { code, next } => {
                    account_in_tx(tx, account, now)?.check_recovery_allowed(now)?;
                    let code_id = check_code(tx, code)?;
                    consume_code(tx, code_id, now)?;
                    open_pin_change(tx, account, device_id, "reset", next, now)?;
                }
                DeviceOperation::FinishPinChange { pin_record } => {
                    let (Some(change), Some(credential_id)) =
                        (&challenge.pin_change, &challenge.credential_id)
                    else {
                        return Err(anyhow!("PIN-change challenge without its change").into());
                    };
                    let origin = pin_change_origin(change)?;
                    if origin == PinOrigin::SmsRecovery {
                        account_in_tx(tx, account, now)?.check_recovery_allowed(now)?;
                    }
                    set_pin(tx, account, pin_record, credential_id, origin, now)?;
                    let event = if origin == PinOrigin::SmsRecovery {
                        "pin_reset"
                    } else {
                        "pin_updated"
                    };
                    audit(tx, now, account, event, Some(device_id), None)?;
                    outcome.pin_set_by = Some(origin);
                }
                DeviceOperation::ModifyPhoneNumber {
                    code,
                    phone_number,
                    recovery_hold,
                } => {
                    let previous = account_in_tx(tx, account, now)?.phone_number;
                    let code_id = check_code(tx, code)?;
                    consume_code(tx, code_id, now)?;
                    exec(
                        tx,
                        "UPDATE accounts SET phone_number = ?2, recovery_held_until = ?3,
                                previous_phone_number = phone_number
                         WHERE subject = ?1",
                        params![account, phone_number, now + *recovery_hold as i64],
                    )?;
                    audit(
                        tx,
                        now,
                        account,
                        "phone_number_modified",
                        Some(device_id),
                        Some(if challenge.ordinal.is_some() {
                            "pin proven"
                        } else {
                            "without pin"
                        }),
                    )?;
                    outcome.previous_phone_number = previous;
                }
            }
            Ok(outcome)
        })
        .await
    }

    async fn admin_list_devices(&self, account: &str) -> Result<Vec<AdminDeviceSummary>> {
        let account = account.to_string();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, name, platform, state, created_at, activated_at, last_used_at
                 FROM devices WHERE account = ?1 ORDER BY created_at, rowid",
            )?;
            let rows = stmt.query_map([account], |r| {
                Ok(AdminDeviceSummary {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    platform: r.get(2)?,
                    state: parse_state(&r.get::<_, String>(3)?)?,
                    created_at: r.get(4)?,
                    activated_at: r.get(5)?,
                    last_used_at: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn admin_disable_device(
        &self,
        account: &str,
        device_id: &str,
        by: &str,
        now: i64,
    ) -> Result<()> {
        let (account, device_id, by) = (account.to_string(), device_id.to_string(), by.to_string());
        self.write(move |tx| {
            if read_device(tx, &account, &device_id)?.is_none() {
                return api(ApiError::DeviceUnknown);
            }
            disable_device(tx, &account, &device_id, now, &by)
        })
        .await
    }

    async fn restore_phone_number(&self, account: &str, now: i64) -> Result<()> {
        let account = account.to_string();
        self.write(move |tx| {
            ensure_account(tx, &account, now)?;
            let restored = exec(
                tx,
                "UPDATE accounts SET phone_number = previous_phone_number,
                        previous_phone_number = NULL, recovery_held_until = NULL
                 WHERE subject = ?1 AND previous_phone_number IS NOT NULL",
                [&account],
            )?;
            if restored == 0 {
                return api(ApiError::NoPhoneNumber);
            }
            let disabled = disable_every_device(tx, &account, now)?;
            audit(
                tx,
                now,
                &account,
                "phone_number_restored",
                None,
                Some(&format!("admin, {disabled} devices disabled")),
            )
        })
        .await
    }

    async fn unblock_account(&self, account: &str, by: &str, now: i64) -> Result<()> {
        let (account, by) = (account.to_string(), by.to_string());
        self.write(move |tx| {
            ensure_account(tx, &account, now)?;
            reset_pin_failures(tx, &account)?;
            audit(tx, now, &account, "account_unblocked", None, Some(&by))
        })
        .await
    }

    async fn audit_trail(
        &self,
        account: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let account = account.map(str::to_string);
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, at, account, event, device_id, detail FROM audit
                 WHERE (?1 IS NULL OR account = ?1) AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![account, after_id, limit], |r| {
                Ok(AuditEvent {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    account: r.get(2)?,
                    event: r.get(3)?,
                    device_id: r.get(4)?,
                    detail: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn audit_chain(&self, after_id: i64, limit: u32) -> Result<Vec<ChainedAuditRow>> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, account, event, device_id, detail, prev_id, mac FROM audit
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after_id, limit], |r| {
                    Ok(ChainedAuditRow {
                        event: AuditEvent {
                            id: r.get(0)?,
                            at: r.get(1)?,
                            account: r.get(2)?,
                            event: r.get(3)?,
                            device_id: r.get(4)?,
                            detail: r.get(5)?,
                        },
                        prev_id: r.get(6)?,
                        mac: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn purge(&self, step: PurgeStep) -> Result<PurgeCounts> {
        self.write(move |tx| {
            let mut counts = [0u64; 7];
            for (n, (sql, bound)) in counts.iter_mut().zip(step.statements()) {
                *n = exec(tx, sql, [bound])? as u64;
            }
            Ok(PurgeCounts::from_statement_counts(counts))
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.run(|c| Ok(query_row(c, "SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn close(&self) {
        drop(self.reader.lock().unwrap_or_else(|p| p.into_inner()).take());
        let conn = self.conn.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let taken = conn.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(c) = taken {
                if let Err((_, e)) = c.close() {
                    tracing::warn!(error = %e, "closing the database failed");
                }
            }
        })
        .await;
    }
}
