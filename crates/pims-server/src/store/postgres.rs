//! [`Store`] on PostgreSQL, for many replicas on one database. Each step is one READ COMMITTED
//! transaction that first locks the account row (`SELECT … FOR UPDATE`): every step of one
//! account is then serialised across all replicas, and because each later statement of a READ
//! COMMITTED transaction reads the latest committed rows, counters read after the lock are
//! exact. The per-number SMS limit spans accounts, so it also takes a transaction-scoped
//! advisory lock on the number (always after the account lock, so locks cannot cycle).
//! Marking an OTP used is one `UPDATE … RETURNING`.

use std::time::Duration;

use anyhow::{anyhow, Context};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use pims_proto::{ApiError, DeviceState, EnrollmentFinished, Platform};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::postgres_schema::{chain_existing_audit_after, MIGRATIONS};
use super::*;
use crate::audit::{link_mac, AuditKey, Chains, Link};
use crate::error::{api, Error, Result};

/// Arbitrary key of the advisory lock that serialises migrations across replicas.
const MIGRATION_LOCK: i64 = 0x5049_4d53_4d49_4752;
/// Arbitrary key of the advisory lock that lets one replica purge at a time.
const PURGE_LOCK: i64 = 0x5049_4d53_5055_5247;

type Tx<'a> = deadpool_postgres::Transaction<'a>;
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub struct PostgresStore {
    pool: Pool,
    audit_key: AuditKey,
}

tokio::task_local! {
    /// The audit key during a store step, so [`audit`] keeps the call shape of the other
    /// helpers (a transaction and the row) wherever a step calls it.
    static AUDIT_KEY: AuditKey;
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db` or key=value form) with a pool
    /// of at most `pool_size` connections and brings the schema up to date; audit rows are
    /// chained under `audit_key`.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        audit_key: AuditKey,
    ) -> anyhow::Result<PostgresStore> {
        let pg: tokio_postgres::Config = url.parse().context("parsing database_url")?;
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .context("building the PostgreSQL pool")?;
        let store = PostgresStore { pool, audit_key };
        store.migrate().await?;
        Ok(store)
    }

    /// The schema version whose migration chains the audit rows already there.
    pub fn audit_chain_schema_version() -> usize {
        chain_existing_audit_after()
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut client = self.pool.get().await.context("connecting to PostgreSQL")?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS pims_schema (version INTEGER NOT NULL)")
            .await?;
        let version: i32 = match tx.query_opt("SELECT version FROM pims_schema", &[]).await? {
            Some(row) => row.get(0),
            None => {
                tx.execute("INSERT INTO pims_schema (version) VALUES (0)", &[])
                    .await?;
                0
            }
        };
        let version = version as usize;
        anyhow::ensure!(
            version <= MIGRATIONS.len(),
            "database schema version {version} is newer than this server ({})",
            MIGRATIONS.len()
        );
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.batch_execute(sql)
                .await
                .with_context(|| format!("applying migration {}", i + 1))?;
            if i + 1 == chain_existing_audit_after() {
                chain_existing_audit(&tx, &self.audit_key).await?;
            }
            tx.execute("UPDATE pims_schema SET version = $1", &[&(i as i32 + 1)])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool
            .get()
            .await
            .map_err(|e| anyhow!("PostgreSQL connection: {e}").into())
    }
}

/// Chains the rows written before the chain existed, in id order (see
/// `CHAIN_EXISTING_AUDIT`); they are as trustworthy as the database at upgrade time.
async fn chain_existing_audit(tx: &Tx<'_>, key: &AuditKey) -> anyhow::Result<()> {
    let rows = tx
        .query(
            "SELECT id, at, account, event, device_id, detail FROM audit ORDER BY id",
            &[],
        )
        .await?;
    let update = tx
        .prepare("UPDATE audit SET prev_id = $2, mac = $3 WHERE id = $1")
        .await?;
    let mut chains = Chains::default();
    for r in &rows {
        let row = AuditEvent {
            id: r.get(0),
            at: r.get(1),
            account: r.get(2),
            event: r.get(3),
            device_id: r.get(4),
            detail: r.get(5),
        };
        let (prev_id, mac) = chains.append(key, &row);
        tx.execute(&update, &[&row.id, &prev_id, &&mac[..]]).await?;
    }
    if !rows.is_empty() {
        tracing::info!(rows = rows.len(), "chained the existing audit rows");
    }
    Ok(())
}

/// Commits what the step wrote unless it failed internally (see the [`Store`] contract).
async fn finish<T>(tx: Tx<'_>, result: Result<T>) -> Result<T> {
    match result {
        Err(Error::Internal(_)) => tx.rollback().await?,
        _ => tx.commit().await?,
    }
    result
}

// ---- statement helpers (prepared once per connection) ------------------------------------

async fn exec<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<u64> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

async fn opt<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, params).await?)
}

async fn one<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<Row> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_one(&stmt, params).await?)
}

fn parse_state(s: &str) -> Result<DeviceState> {
    match s {
        "pending" => Ok(DeviceState::Pending),
        "active" => Ok(DeviceState::Active),
        "disabled" => Ok(DeviceState::Disabled),
        other => Err(anyhow!("unknown device state {other}").into()),
    }
}

fn counter_to_sql(counter: u64) -> Result<i64> {
    i64::try_from(counter).map_err(|_| {
        Error::Api(ApiError::InvalidParameter {
            name: "counter".into(),
        })
    })
}

fn small(v: i32) -> u32 {
    v.max(0) as u32
}

/// The columns [`account_from_row`] reads, in order.
const ACCOUNT_COLUMNS: &str =
    "phone_number, pin_record, pin_credential_id, pin_failures, recovery_held_until";

fn account_from_row(r: &Row) -> AccountRecord {
    AccountRecord {
        phone_number: r.get(0),
        pin_record: r.get(1),
        pin_credential_id: r.get(2),
        pin_failures: small(r.get(3)),
        recovery_held_until: r.get(4),
    }
}

/// Creates the account if needed and locks its row until the end of the transaction. The lock
/// is tried first: accounts exist on almost every step, which then costs one round trip.
async fn lock_account(tx: &Tx<'_>, account: &str, now: i64) -> Result<AccountRecord> {
    let lock = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE subject = $1 FOR UPDATE");
    if let Some(row) = opt(tx, &lock, &[&account]).await? {
        return Ok(account_from_row(&row));
    }
    exec(
        tx,
        "INSERT INTO accounts (subject, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&account, &now],
    )
    .await?;
    Ok(account_from_row(&one(tx, &lock, &[&account]).await?))
}

/// Locks the account row if it exists (steps on devices that never create an account).
async fn lock_existing_account(tx: &Tx<'_>, account: &str) -> Result<()> {
    opt(
        tx,
        "SELECT 1 FROM accounts WHERE subject = $1 FOR UPDATE",
        &[&account],
    )
    .await?;
    Ok(())
}

async fn read_account<C: GenericClient>(c: &C, account: &str) -> Result<Option<AccountRecord>> {
    Ok(opt(
        c,
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE subject = $1"),
        &[&account],
    )
    .await?
    .as_ref()
    .map(account_from_row))
}

async fn read_device<C: GenericClient>(
    c: &C,
    account: &str,
    device_id: &str,
) -> Result<Option<DeviceRecord>> {
    let row = opt(
        c,
        "SELECT id, public_key, state, counter, activation_nonce, created_at
         FROM devices WHERE id = $1 AND account = $2",
        &[&device_id, &account],
    )
    .await?;
    row.map(|r| {
        Ok(DeviceRecord {
            id: r.get(0),
            public_key: r.get(1),
            state: parse_state(r.get(2))?,
            counter: r.get::<_, i64>(3) as u64,
            activation_nonce: r.get(4),
            created_at: r.get(5),
        })
    })
    .transpose()
}

async fn audit(
    tx: &Tx<'_>,
    now: i64,
    account: &str,
    event: &str,
    device_id: Option<&str>,
    detail: Option<&str>,
) -> Result<()> {
    // The account's appends are serialised by its row lock: every step takes it first, and
    // taking it again here costs nothing then (it still covers a step that did not). An account
    // without a row (an event of no account) takes an advisory lock on its name instead. The
    // head is read in the statement that takes the lock, so after waiting it may be stale: the
    // insert then finds a newer row, inserts nothing, and the head is read again, under the lock.
    const HEAD: &str = "WITH locked AS (SELECT 1 FROM accounts WHERE subject = $1 FOR UPDATE)
        SELECT (SELECT COUNT(*) FROM locked), p.id, p.mac, nextval('audit_id_seq')
        FROM (SELECT 1) AS one
        LEFT JOIN LATERAL (SELECT id, mac FROM audit WHERE account = $1 ORDER BY id DESC LIMIT 1)
          AS p ON true";
    const INSERT: &str =
        "INSERT INTO audit (id, prev_id, at, account, event, device_id, detail, mac)
        SELECT $1::BIGINT, $2::BIGINT, $3::BIGINT, $4::TEXT, $5::TEXT, $6::TEXT, $7::TEXT, $8::BYTEA
        WHERE NOT EXISTS (SELECT 1 FROM audit WHERE account = $4 AND id > COALESCE($2, 0))";
    let key = AUDIT_KEY
        .try_with(AuditKey::clone)
        .map_err(|_| anyhow!("audit outside a store step"))?;
    let mut advisory = false;
    for _ in 0..3 {
        let head = one(tx, HEAD, &[&account]).await?;
        if head.get::<_, i64>(0) == 0 && !advisory {
            exec(
                tx,
                "SELECT pg_advisory_xact_lock(hashtextextended('audit:' || $1, 0))",
                &[&account],
            )
            .await?;
            advisory = true;
            continue;
        }
        let prev_id: Option<i64> = head.get(1);
        let prev_mac: Option<Vec<u8>> = head.get(2);
        let id: i64 = head.get(3);
        let link = Link {
            id,
            prev_id,
            at: now,
            account,
            event,
            device_id,
            detail,
        };
        let mac = link_mac(&key, prev_mac.as_deref(), &link).to_vec();
        let params: Params<'_> = &[
            &id, &prev_id, &now, &account, &event, &device_id, &detail, &mac,
        ];
        if exec(tx, INSERT, params).await? == 1 {
            return Ok(());
        }
    }
    Err(anyhow!("the audit chain of an account moved while locked").into())
}

async fn live_device_count(tx: &Tx<'_>, account: &str, now: i64, pending_ttl: u64) -> Result<u32> {
    let row = one(
        tx,
        "SELECT COUNT(*) FROM devices WHERE account = $1
           AND (state = 'active' OR (state = 'pending' AND created_at > $2))",
        &[&account, &now.saturating_sub(pending_ttl as i64)],
    )
    .await?;
    Ok(row.get::<_, i64>(0) as u32)
}

async fn disable_device(
    tx: &Tx<'_>,
    account: &str,
    device_id: &str,
    now: i64,
    why: &str,
) -> Result<()> {
    exec(
        tx,
        "UPDATE devices SET state = 'disabled' WHERE id = $1 AND account = $2",
        &[&device_id, &account],
    )
    .await?;
    audit(
        tx,
        now,
        account,
        "device_disabled",
        Some(device_id),
        Some(why),
    )
    .await
}

/// The counter rule ([`DeviceRecord::counter_advances`]) on a step: a counter that does not
/// grow disables the device, and the step answers `DeviceUnknown`.
async fn advance_counter(
    tx: &Tx<'_>,
    account: &str,
    device: &DeviceRecord,
    presented: u64,
    now: i64,
) -> Result<()> {
    if device.counter_advances(presented) {
        return Ok(());
    }
    disable_device(tx, account, &device.id, now, COUNTER_REPLAYED).await?;
    api(ApiError::DeviceUnknown)
}

/// Records a failed PIN proof whose start was the `ordinal`-th counted attempt.
async fn pin_failed(
    tx: &Tx<'_>,
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
    )
    .await?;
    if outcome == ApiError::PinBlocked {
        audit(tx, now, account, "pin_blocked", None, None).await?;
    }
    Ok(outcome)
}

/// Rejects a blocked account, else counts (and audits) one more PIN attempt and returns its
/// ordinal. The caller holds the account lock, so the count read here is the latest. The
/// attempt counts from its start: an attempt never finished still counts.
async fn begin_pin_attempt(tx: &Tx<'_>, account: &str, limit: u32, now: i64) -> Result<u32> {
    let row = opt(
        tx,
        "UPDATE accounts SET pin_failures = pin_failures + 1
         WHERE subject = $1 AND pin_failures < $2 RETURNING pin_failures",
        &[&account, &(limit as i32)],
    )
    .await?;
    let Some(row) = row else {
        return api(ApiError::AccountBlocked);
    };
    let ordinal = small(row.get(0));
    audit(
        tx,
        now,
        account,
        "pin_attempt",
        None,
        Some(&pin_attempt_detail(ordinal, limit)),
    )
    .await?;
    Ok(ordinal)
}

struct UsedChallenge {
    device_id: String,
    ordinal: Option<i32>,
    /// `reset` or `update` for a PIN-change challenge.
    pin_change: Option<String>,
    credential_id: Option<String>,
    audience: Option<String>,
}

/// Makes `record` the account's PIN, which also clears the failure count.
async fn set_pin(
    tx: &Tx<'_>,
    account: &str,
    record: &[u8],
    credential_id: &str,
    origin: PinOrigin,
    now: i64,
) -> Result<()> {
    exec(
        tx,
        "UPDATE accounts SET pin_record = $2, pin_credential_id = $3, pin_failures = 0,
                pin_set_at = $4, pin_set_by = $5,
                pin_recovered_at = CASE WHEN $5 = 'sms_recovery' THEN $4
                                        ELSE pin_recovered_at END
         WHERE subject = $1",
        &[&account, &record, &credential_id, &now, &origin.as_str()],
    )
    .await?;
    // Logins started against the previous PIN and PIN changes authorized before this one
    // must not finish over the new PIN.
    exec(
        tx,
        "UPDATE otp_challenges SET used_at = $2
         WHERE account = $1 AND used_at IS NULL
           AND (pin_ordinal IS NOT NULL OR pin_change IS NOT NULL)",
        &[&account, &now],
    )
    .await?;
    exec(
        tx,
        "UPDATE enrollment_sessions SET finished_at = $2
         WHERE account = $1 AND finished_at IS NULL AND login_state IS NOT NULL",
        &[&account, &now],
    )
    .await?;
    Ok(())
}

/// Records the challenge a PIN change finishes over, with what its start authorized.
async fn open_pin_change(
    tx: &Tx<'_>,
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
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &next.challenge_id,
            &account,
            &device_id,
            &next.nonce,
            &change,
            &next.credential_id,
            &now,
            &(now + next.ttl as i64),
        ],
    )
    .await?;
    Ok(())
}

/// Disables every device of the account and closes its open enrollment sessions and
/// challenges (started against devices or a PIN that no longer count); the number disabled.
async fn disable_every_device(tx: &Tx<'_>, account: &str, now: i64) -> Result<u64> {
    let disabled = exec(
        tx,
        "UPDATE devices SET state = 'disabled' WHERE account = $1 AND state != 'disabled'",
        &[&account],
    )
    .await?;
    exec(
        tx,
        "UPDATE enrollment_sessions SET finished_at = $2
         WHERE account = $1 AND finished_at IS NULL",
        &[&account, &now],
    )
    .await?;
    exec(
        tx,
        "UPDATE otp_challenges SET used_at = $2 WHERE account = $1 AND used_at IS NULL",
        &[&account, &now],
    )
    .await?;
    Ok(disabled)
}

async fn reset_pin_failures(tx: &Tx<'_>, account: &str) -> Result<()> {
    exec(
        tx,
        "UPDATE accounts SET pin_failures = 0 WHERE subject = $1",
        &[&account],
    )
    .await?;
    Ok(())
}

async fn resolve_number(tx: &Tx<'_>, account: &str, target: &CodeTarget) -> Result<Option<String>> {
    match target {
        CodeTarget::TrustedNumber => match read_account(tx, account)
            .await?
            .and_then(|a| a.phone_number)
        {
            Some(n) => Ok(Some(n)),
            None => api(ApiError::NoPhoneNumber),
        },
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
async fn check_code(tx: &Tx<'_>, check: &CodeCheck) -> Result<i64> {
    let number = resolve_number(tx, &check.account, &check.target).await?;
    let row = opt(
        tx,
        "SELECT id, phone_number, nonce, expires_at, checks, state FROM sms_codes
         WHERE account = $1 AND purpose = $2 AND ($3::TEXT IS NULL OR phone_number = $3)
         ORDER BY id DESC LIMIT 1",
        &[&check.account, &check.purpose.as_str(), &number],
    )
    .await?;
    let Some(row) = row else {
        return Err(invalid_code(false, 0));
    };
    let id: i64 = row.get(0);
    let phone: String = row.get(1);
    let nonce: Vec<u8> = row.get(2);
    let expires_at: i64 = row.get(3);
    let checks = small(row.get(4));
    let state: &str = row.get(5);
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
        "UPDATE sms_codes SET checks = $2 WHERE id = $1",
        &[&id, &(checks as i32)],
    )
    .await?;
    if (check.matcher)(&phone, &nonce) {
        return Ok(id);
    }
    if checks >= check.max_checks {
        exec(
            tx,
            "UPDATE sms_codes SET state = 'exhausted' WHERE id = $1",
            &[&id],
        )
        .await?;
    }
    Err(invalid_code(false, check.max_checks - checks))
}

/// Uses up a code that an earlier check accepted, if it is still valid.
async fn consume_code(tx: &Tx<'_>, code_id: i64, now: i64) -> Result<()> {
    let row = one(
        tx,
        "SELECT expires_at, state FROM sms_codes WHERE id = $1",
        &[&code_id],
    )
    .await?;
    let expires_at: i64 = row.get(0);
    let state: &str = row.get(1);
    if state != "live" {
        return Err(invalid_code(false, 0));
    }
    if now >= expires_at {
        return Err(invalid_code(true, 0));
    }
    exec(
        tx,
        "UPDATE sms_codes SET state = 'consumed' WHERE id = $1",
        &[&code_id],
    )
    .await?;
    Ok(())
}

/// `RateLimited` if the sends of the window (`sql` counts them) already reached `limit`.
async fn sends_in_window(tx: &Tx<'_>, sql: &str, value: &str, now: i64, limit: u32) -> Result<()> {
    let row = one(tx, sql, &[&value, &send_window_start(now)]).await?;
    check_sends(row.get(0), row.get(1), now, limit)
}

/// The per-address limit ([`check_address_sends`]); the ordinal of this send. The caller
/// holds the address's advisory lock.
async fn address_sends(tx: &Tx<'_>, address: &str, now: i64, limit: u32) -> Result<i64> {
    let last = opt(
        tx,
        "SELECT seq FROM sms_address_sends WHERE client_address = $1
         ORDER BY seq DESC LIMIT 1",
        &[&address],
    )
    .await?
    .map(|r| r.get(0));
    let first = opt(
        tx,
        "SELECT seq, sent_at FROM sms_address_sends WHERE client_address = $1 AND sent_at > $2
         ORDER BY sent_at, seq LIMIT 1",
        &[&address, &send_window_start(now)],
    )
    .await?
    .map(|r| (r.get(0), r.get(1)));
    check_address_sends(last, first, now, limit)
}

async fn store_outcome(
    tx: &Tx<'_>,
    account: &str,
    key: &str,
    scope: &str,
    outcome: &StoredOutcome,
    now: i64,
) -> Result<()> {
    let json = serde_json::to_string(outcome).map_err(anyhow::Error::from)?;
    exec(
        tx,
        "INSERT INTO idempotency (account, key, scope, outcome, created_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[&account, &key, &scope, &json, &now],
    )
    .await?;
    Ok(())
}

async fn read_outcome<C: GenericClient>(
    c: &C,
    account: &str,
    key: &str,
) -> Result<Option<(String, StoredOutcome)>> {
    let row = opt(
        c,
        "SELECT scope, outcome FROM idempotency WHERE account = $1 AND key = $2",
        &[&account, &key],
    )
    .await?;
    match row {
        None => Ok(None),
        Some(r) => {
            let outcome = serde_json::from_str(r.get(1)).map_err(anyhow::Error::from)?;
            Ok(Some((r.get(0), outcome)))
        }
    }
}

// ---- steps ---------------------------------------------------------------------------------

async fn prepare_sms_code_tx(tx: &Tx<'_>, req: &SmsSendRequest) -> Result<SmsToSend> {
    lock_account(tx, &req.account, req.now).await?;
    let number = resolve_number(tx, &req.account, &req.target)
        .await?
        .ok_or_else(|| anyhow!("an SMS needs a number"))?;
    // Sends to one number are counted across accounts: serialise them per number too.
    exec(
        tx,
        "SELECT pg_advisory_xact_lock(hashtextextended('pims-sms-number:' || $1, 0))",
        &[&number],
    )
    .await?;
    sends_in_window(
        tx,
        "SELECT COUNT(*), MIN(sent_at) FROM sms_sends WHERE account = $1 AND sent_at > $2",
        &req.account,
        req.now,
        req.per_account_per_hour,
    )
    .await?;
    sends_in_window(
        tx,
        "SELECT COUNT(*), MIN(sent_at) FROM sms_sends WHERE phone_number = $1 AND sent_at > $2",
        &number,
        req.now,
        req.per_number_per_hour,
    )
    .await?;
    let address_seq = if let Some(address) = &req.client_address {
        // Also across accounts and numbers; taken last, so locks are always in one order.
        exec(
            tx,
            "SELECT pg_advisory_xact_lock(hashtextextended('pims-sms-address:' || $1, 0))",
            &[address],
        )
        .await?;
        Some(address_sends(tx, address, req.now, req.per_address_per_hour).await?)
    } else {
        None
    };
    exec(
        tx,
        "WITH send AS (INSERT INTO sms_sends (account, phone_number, sent_at, client_address)
                       VALUES ($1, $2, $3, $4) RETURNING id)
         INSERT INTO sms_address_sends (send_id, client_address, seq, sent_at)
         SELECT id, $4, $5, $3 FROM send WHERE $5::BIGINT IS NOT NULL",
        &[
            &req.account,
            &number,
            &req.now,
            &req.client_address,
            &address_seq,
        ],
    )
    .await?;
    // A live code is resent as is: same code, same expiry.
    let live = opt(
        tx,
        "SELECT nonce, expires_at FROM sms_codes
         WHERE account = $1 AND purpose = $2 AND phone_number = $3
           AND state = 'live' AND expires_at > $4 AND checks < $5
         ORDER BY id DESC LIMIT 1",
        &[
            &req.account,
            &req.purpose.as_str(),
            &number,
            &req.now,
            &(req.max_checks as i32),
        ],
    )
    .await?;
    if let Some(r) = live {
        return Ok(SmsToSend {
            phone_number: number,
            nonce: r.get(0),
            expires_at: r.get(1),
            resend: true,
        });
    }
    let expires_at = req.now + req.ttl as i64;
    exec(
        tx,
        "INSERT INTO sms_codes (account, purpose, phone_number, nonce, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &req.account,
            &req.purpose.as_str(),
            &number,
            &req.new_nonce,
            &req.now,
            &expires_at,
        ],
    )
    .await?;
    Ok(SmsToSend {
        phone_number: number,
        nonce: req.new_nonce.clone(),
        expires_at,
        resend: false,
    })
}

async fn add_phone_number_tx(tx: &Tx<'_>, check: &CodeCheck, phone_number: &str) -> Result<()> {
    let acct = lock_account(tx, &check.account, check.now).await?;
    if acct.phone_number.is_some() {
        return api(ApiError::PhoneNumberAlreadyRegistered);
    }
    let code_id = check_code(tx, check).await?;
    consume_code(tx, code_id, check.now).await?;
    exec(
        tx,
        "UPDATE accounts SET phone_number = $2 WHERE subject = $1",
        &[&check.account, &phone_number],
    )
    .await?;
    audit(
        tx,
        check.now,
        &check.account,
        "phone_number_added",
        None,
        None,
    )
    .await
}

async fn start_enrollment_tx(tx: &Tx<'_>, step: &StartEnrollmentStep) -> Result<()> {
    let account = step.account.as_str();
    let now = step.now;
    let acct = lock_account(tx, account, now).await?;
    let (purpose, target) = acct.enrollment_code(step)?;
    if live_device_count(tx, account, now, step.limits.pending_device_ttl).await?
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
    )
    .await?;
    let ordinal = match &step.login {
        Some(_) => {
            Some(begin_pin_attempt(tx, account, step.limits.pin_attempts, now).await? as i32)
        }
        None => None,
    };
    exec(
        tx,
        "INSERT INTO enrollment_sessions (id, account, nonce, login_state, pin_ordinal,
             sms_code_id, phone_number, created_at, expires_at, pin_credential_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &step.session_id,
            &account,
            &step.nonce,
            &step.login.as_ref().map(|l| &l.state),
            &ordinal,
            &code_id,
            &step.phone_number,
            &now,
            &(now + step.ttl as i64),
            &step.credential_id,
        ],
    )
    .await?;
    Ok(())
}

async fn finish_enrollment_tx(
    tx: &Tx<'_>,
    step: &FinishEnrollmentStep,
) -> Result<EnrollmentFinished> {
    let account = step.account.as_str();
    let now = step.now;
    let session = opt(
        tx,
        "SELECT pin_ordinal, sms_code_id, phone_number, pin_credential_id FROM enrollment_sessions
         WHERE id = $1 AND account = $2 AND finished_at IS NULL AND expires_at > $3",
        &[&step.enrollment_id, &account, &now],
    )
    .await?;
    let Some(session) = session else {
        return api(ApiError::SessionExpired);
    };
    let ordinal: Option<i32> = session.get(0);
    let code_id: i64 = session.get(1);
    let new_number: Option<String> = session.get(2);
    let credential_id: Option<String> = session.get(3);
    exec(
        tx,
        "UPDATE enrollment_sessions SET finished_at = $2 WHERE id = $1",
        &[&step.enrollment_id, &now],
    )
    .await?;

    match &step.proof {
        EnrollmentProof::BadSignature => return api(ApiError::BadSignature),
        EnrollmentProof::Login { pin_ok: false } => {
            let ordinal = ordinal.ok_or_else(|| anyhow!("login session without ordinal"))?;
            let outcome =
                pin_failed(tx, account, small(ordinal), step.limits.pin_attempts, now).await?;
            return Err(outcome.into());
        }
        // A proven PIN resets the count even if a later check fails.
        EnrollmentProof::Login { pin_ok: true } => reset_pin_failures(tx, account).await?,
        EnrollmentProof::Register { .. } => {}
    }

    let acct = read_account(tx, account)
        .await?
        .ok_or_else(|| anyhow!("account row vanished"))?;
    if new_number.is_some() && acct.phone_number.is_some() {
        return api(ApiError::PhoneNumberAlreadyRegistered);
    }
    if let EnrollmentProof::Register { .. } = step.proof {
        if acct.pin_record.is_some() {
            return api(ApiError::PinStateChanged);
        }
        acct.check_recovery_allowed(now)?;
    }
    if live_device_count(tx, account, now, step.limits.pending_device_ttl).await?
        >= step.limits.max_devices
    {
        return api(ApiError::DeviceLimitReached);
    }
    consume_code(tx, code_id, now).await?;

    if let EnrollmentProof::Register { pin_record } = &step.proof {
        let credential_id =
            credential_id.ok_or_else(|| anyhow!("registration session without identifier"))?;
        let had_pin: bool = one(
            tx,
            "SELECT pin_set_at IS NOT NULL FROM accounts WHERE subject = $1",
            &[&account],
        )
        .await?
        .get(0);
        let origin = registered_pin_origin(had_pin);
        set_pin(tx, account, pin_record, &credential_id, origin, now).await?;
        audit(
            tx,
            now,
            account,
            "pin_registered",
            None,
            Some(origin.as_str()),
        )
        .await?;
    }
    if let Some(number) = &new_number {
        exec(
            tx,
            "UPDATE accounts SET phone_number = $2 WHERE subject = $1",
            &[&account, number],
        )
        .await?;
        audit(tx, now, account, "phone_number_added", None, None).await?;
    }
    let d = &step.device;
    exec(
        tx,
        "INSERT INTO devices (id, account, public_key, name, platform, state, counter,
                              activation_nonce, created_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7)",
        &[
            &d.id,
            &account,
            &d.public_key,
            &d.name,
            &d.platform.as_str(),
            &d.activation_nonce,
            &now,
        ],
    )
    .await?;
    audit(
        tx,
        now,
        account,
        "device_enrolled",
        Some(&d.id),
        Some(d.platform.as_str()),
    )
    .await?;
    Ok(EnrollmentFinished {
        device_id: d.id.clone(),
        activation_nonce: d.activation_nonce.clone().into(),
    })
}

async fn finish_enrollment_idempotent(
    tx: &Tx<'_>,
    step: &FinishEnrollmentStep,
) -> Result<EnrollmentFinished> {
    lock_account(tx, &step.account, step.now).await?;
    if let Some((scope, outcome)) = read_outcome(tx, &step.account, &step.idempotency_key).await? {
        return replay_scoped(&step.enrollment_id, &scope, outcome);
    }
    let result = finish_enrollment_tx(tx, step).await;
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
    )
    .await?;
    result
}

async fn activate_device_tx(tx: &Tx<'_>, step: &ActivateStep) -> Result<bool> {
    lock_existing_account(tx, &step.account).await?;
    let Some(device) = read_device(tx, &step.account, &step.device_id).await? else {
        return api(ApiError::DeviceUnknown);
    };
    match device.live_state(step.now, step.pending_device_ttl) {
        Some(DeviceState::Pending | DeviceState::Active) => {}
        Some(DeviceState::Disabled) | None => return api(ApiError::DeviceUnknown),
    }
    advance_counter(tx, &step.account, &device, step.counter, step.now).await?;
    exec(
        tx,
        "UPDATE devices SET state = 'active', counter = $3,
                activated_at = COALESCE(activated_at, $4)
         WHERE id = $1 AND account = $2",
        &[
            &device.id,
            &step.account,
            &counter_to_sql(step.counter)?,
            &step.now,
        ],
    )
    .await?;
    let activated = device.state == DeviceState::Pending;
    if activated {
        audit(
            tx,
            step.now,
            &step.account,
            "device_activated",
            Some(&device.id),
            None,
        )
        .await?;
    }
    Ok(activated)
}

async fn create_otp_challenge_tx(tx: &Tx<'_>, step: &ChallengeStep) -> Result<()> {
    let acct = lock_account(tx, &step.account, step.now).await?;
    let device = read_device(tx, &step.account, &step.device_id).await?;
    let Some(device) = device.filter(|d| d.state == DeviceState::Active) else {
        return api(ApiError::DeviceUnknown);
    };
    match step.login_counter {
        Some(counter) => {
            advance_counter(tx, &step.account, &device, counter, step.now).await?;
            exec(
                tx,
                "UPDATE devices SET counter = $2 WHERE id = $1",
                &[&device.id, &counter_to_sql(counter)?],
            )
            .await?;
        }
        None => {
            let open: i64 = one(
                tx,
                "SELECT COUNT(*) FROM otp_challenges
                 WHERE device_id = $1 AND used_at IS NULL AND expires_at > $2
                   AND pin_ordinal IS NULL",
                &[&step.device_id, &step.now],
            )
            .await?
            .get(0);
            check_open_challenges(open as u32, step.max_open, step.ttl)?;
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
            Some(begin_pin_attempt(tx, &step.account, step.pin_attempts, step.now).await? as i32)
        }
    };
    exec(
        tx,
        "INSERT INTO otp_challenges (id, account, device_id, nonce, login_state,
             pin_ordinal, created_at, expires_at, audience)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &step.challenge_id,
            &step.account,
            &step.device_id,
            &step.nonce,
            &step.login.as_ref().map(|l| &l.state),
            &ordinal,
            &step.now,
            &(step.now + step.ttl as i64),
            &step.audience,
        ],
    )
    .await?;
    Ok(())
}

/// Uses up a live challenge of the account of the given kind: its device, the ordinal of the
/// PIN attempt it started and, for a PIN change, what it authorized. One statement, so only
/// one of two racing uses wins it.
async fn use_challenge(
    tx: &Tx<'_>,
    challenge_id: &str,
    account: &str,
    now: i64,
    kind: ChallengeKind,
) -> Result<UsedChallenge> {
    let challenge = opt(
        tx,
        "UPDATE otp_challenges SET used_at = $3
         WHERE id = $1 AND account = $2 AND used_at IS NULL AND expires_at > $3
           AND (pin_change IS NOT NULL) = $4
         RETURNING device_id, pin_ordinal, pin_change, pin_credential_id, audience",
        &[
            &challenge_id,
            &account,
            &now,
            &(kind == ChallengeKind::PinChange),
        ],
    )
    .await?;
    match challenge {
        Some(row) => Ok(UsedChallenge {
            device_id: row.get(0),
            ordinal: row.get(1),
            pin_change: row.get(2),
            credential_id: row.get(3),
            audience: row.get(4),
        }),
        None => api(ApiError::SessionExpired),
    }
}

async fn issue_otp_tx(tx: &Tx<'_>, step: &IssueOtpStep) -> Result<()> {
    let account = step.account.as_str();
    let now = step.now;
    lock_existing_account(tx, account).await?;
    let UsedChallenge {
        device_id,
        ordinal,
        audience,
        ..
    } = use_challenge(tx, &step.challenge_id, account, now, ChallengeKind::Device).await?;
    if let OtpProof::BadSignature = step.proof {
        return api(ApiError::BadSignature);
    }
    let device = read_device(tx, account, &device_id).await?;
    let Some(device) = device.filter(|d| d.state == DeviceState::Active) else {
        return api(ApiError::DeviceUnknown);
    };
    advance_counter(tx, account, &device, step.counter, now).await?;
    exec(
        tx,
        "UPDATE devices SET counter = $2, last_used_at = $3 WHERE id = $1",
        &[&device_id, &counter_to_sql(step.counter)?, &now],
    )
    .await?;
    let with_pin = match step.proof {
        OtpProof::BadSignature => unreachable!("handled above"),
        OtpProof::WithoutPin => false,
        OtpProof::Pin { ok } => {
            let ordinal = ordinal.ok_or_else(|| anyhow!("PIN challenge without ordinal"))?;
            if !ok {
                let outcome =
                    pin_failed(tx, account, small(ordinal), step.pin_attempts, now).await?;
                return Err(outcome.into());
            }
            reset_pin_failures(tx, account).await?;
            true
        }
    };
    exec(
        tx,
        "INSERT INTO otps (mac, account, device_id, with_pin, issued_at, expires_at, audience)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &step.otp_mac,
            &account,
            &device_id,
            &with_pin,
            &now,
            &(now + step.otp_ttl as i64),
            &audience,
        ],
    )
    .await?;
    audit(
        tx,
        now,
        account,
        "otp_issued",
        Some(&device_id),
        Some(if with_pin { "with_pin" } else { "without_pin" }),
    )
    .await
}

async fn use_otp_tx(tx: &Tx<'_>, mac: &[u8], now: i64, rp: &str) -> Result<Option<VerifiedOtp>> {
    let row = opt(
        tx,
        "UPDATE otps SET used_at = $2, used_by = $3
         FROM accounts a, devices d
         WHERE otps.mac = $1 AND otps.used_at IS NULL AND otps.expires_at > $2
           AND otps.audience = $3
           AND a.subject = otps.account AND d.id = otps.device_id AND d.state = 'active'
         RETURNING otps.account, otps.device_id, otps.with_pin, otps.issued_at,
                   a.pin_set_at, a.pin_set_by, a.pin_recovered_at",
        &[&mac, &now, &rp],
    )
    .await?;
    let used = row.map(|r| VerifiedOtp {
        subject: r.get(0),
        device_id: r.get(1),
        with_pin: r.get(2),
        issued_at: r.get(3),
        pin_set_at: r.get(4),
        pin_set_by: r.get::<_, Option<&str>>(5).and_then(PinOrigin::parse),
        pin_recovered_at: r.get(6),
    });
    if let Some(v) = &used {
        audit(
            tx,
            now,
            &v.subject,
            "otp_used",
            Some(&v.device_id),
            Some(rp),
        )
        .await?;
    }
    Ok(used)
}

async fn remove_enrollments_tx(tx: &Tx<'_>, account: &str, now: i64) -> Result<bool> {
    let had_pin = lock_account(tx, account, now).await?.pin_record.is_some();
    let disabled = disable_every_device(tx, account, now).await?;
    exec(
        tx,
        "UPDATE accounts SET pin_record = NULL, pin_credential_id = NULL, pin_failures = 0
         WHERE subject = $1",
        &[&account],
    )
    .await?;
    audit(
        tx,
        now,
        account,
        "enrollments_removed",
        None,
        Some(&format!("{disabled} devices")),
    )
    .await?;
    Ok(had_pin || disabled > 0)
}

async fn device_operation_tx(tx: &Tx<'_>, step: &DeviceOperationStep) -> Result<OperationOutcome> {
    let account = step.account.as_str();
    let now = step.now;
    let acct = lock_account(tx, account, now).await?;
    let kind = step.operation.challenge_kind();
    let challenge = use_challenge(tx, &step.challenge_id, account, now, kind).await?;
    let device_id = challenge.device_id.as_str();
    if !step.signature_ok {
        return api(ApiError::BadSignature);
    }
    let device = read_device(tx, account, device_id).await?;
    let Some(device) = device.filter(|d| d.state == DeviceState::Active) else {
        return api(ApiError::DeviceUnknown);
    };
    advance_counter(tx, account, &device, step.counter, now).await?;
    exec(
        tx,
        "UPDATE devices SET counter = $2, last_used_at = $3 WHERE id = $1",
        &[&device_id, &counter_to_sql(step.counter)?, &now],
    )
    .await?;
    match (challenge.ordinal, step.pin_ok) {
        (Some(ordinal), Some(false)) => {
            let outcome = pin_failed(tx, account, small(ordinal), step.pin_attempts, now).await?;
            return Err(outcome.into());
        }
        (Some(_), Some(true)) => reset_pin_failures(tx, account).await?,
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
                open_pin_change(tx, account, device_id, "update", next, now).await?;
            }
        }
        DeviceOperation::StartPinReset { code, next } => {
            acct.check_recovery_allowed(now)?;
            let code_id = check_code(tx, code).await?;
            consume_code(tx, code_id, now).await?;
            open_pin_change(tx, account, device_id, "reset", next, now).await?;
        }
        DeviceOperation::FinishPinChange { pin_record } => {
            let (Some(change), Some(credential_id)) =
                (&challenge.pin_change, &challenge.credential_id)
            else {
                return Err(anyhow!("PIN-change challenge without its change").into());
            };
            let origin = pin_change_origin(change)?;
            if origin == PinOrigin::SmsRecovery {
                acct.check_recovery_allowed(now)?;
            }
            set_pin(tx, account, pin_record, credential_id, origin, now).await?;
            let event = if origin == PinOrigin::SmsRecovery {
                "pin_reset"
            } else {
                "pin_updated"
            };
            audit(tx, now, account, event, Some(device_id), None).await?;
            outcome.pin_set_by = Some(origin);
        }
        DeviceOperation::ModifyPhoneNumber {
            code,
            phone_number,
            recovery_hold,
        } => {
            let code_id = check_code(tx, code).await?;
            consume_code(tx, code_id, now).await?;
            exec(
                tx,
                "UPDATE accounts SET phone_number = $2, recovery_held_until = $3,
                        previous_phone_number = phone_number
                 WHERE subject = $1",
                &[&account, phone_number, &(now + *recovery_hold as i64)],
            )
            .await?;
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
            )
            .await?;
            outcome.previous_phone_number = acct.phone_number.clone();
        }
    }
    Ok(outcome)
}

/// Runs one step in its own transaction; `$body` sees the transaction as `tx`.
macro_rules! step {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let mut client = $self.client().await?;
        let $tx = client.transaction().await?;
        let result = AUDIT_KEY.scope($self.audit_key.clone(), $body).await;
        finish($tx, result).await
    }};
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn account(&self, account: &str) -> Result<Option<AccountRecord>> {
        read_account(&self.client().await?, account).await
    }

    async fn accounts_with_phone_number(&self, phone_number: &str) -> Result<Vec<String>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT subject FROM accounts WHERE phone_number = $1 ORDER BY subject",
                &[&phone_number],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn device(&self, account: &str, device_id: &str) -> Result<Option<DeviceRecord>> {
        read_device(&self.client().await?, account, device_id).await
    }

    async fn prepare_sms_code(&self, req: SmsSendRequest) -> Result<SmsToSend> {
        step!(self, |tx| prepare_sms_code_tx(&tx, &req))
    }

    async fn check_sms_code(&self, check: CodeCheck) -> Result<bool> {
        step!(self, |tx| async {
            let acct = lock_account(&tx, &check.account, check.now).await?;
            check_code(&tx, &check).await?;
            Ok(acct.pin_record.is_some())
        })
    }

    async fn add_phone_number(&self, check: CodeCheck, phone_number: String) -> Result<()> {
        step!(self, |tx| add_phone_number_tx(&tx, &check, &phone_number))
    }

    async fn start_enrollment(&self, step: StartEnrollmentStep) -> Result<()> {
        step!(self, |tx| start_enrollment_tx(&tx, &step))
    }

    async fn enrollment_session(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<EnrollmentSession>> {
        let row = opt(
            &self.client().await?,
            "SELECT id, nonce, login_state FROM enrollment_sessions
             WHERE id = $1 AND account = $2 AND finished_at IS NULL AND expires_at > $3",
            &[&id, &account, &now],
        )
        .await?;
        Ok(row.map(|r| EnrollmentSession {
            id: r.get(0),
            nonce: r.get(1),
            login_state: r.get(2),
        }))
    }

    async fn idempotent_outcome(
        &self,
        account: &str,
        key: &str,
    ) -> Result<Option<(String, StoredOutcome)>> {
        read_outcome(&self.client().await?, account, key).await
    }

    async fn finish_enrollment(&self, step: FinishEnrollmentStep) -> Result<EnrollmentFinished> {
        step!(self, |tx| finish_enrollment_idempotent(&tx, &step))
    }

    async fn activate_device(&self, step: ActivateStep) -> Result<bool> {
        step!(self, |tx| activate_device_tx(&tx, &step))
    }

    async fn create_otp_challenge(&self, step: ChallengeStep) -> Result<()> {
        step!(self, |tx| create_otp_challenge_tx(&tx, &step))
    }

    async fn otp_challenge(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<OtpChallengeRecord>> {
        let row = opt(
            &self.client().await?,
            "SELECT c.id, c.device_id, c.nonce, c.login_state, d.public_key
             FROM otp_challenges c JOIN devices d ON d.id = c.device_id
             WHERE c.id = $1 AND c.account = $2 AND c.used_at IS NULL AND c.expires_at > $3",
            &[&id, &account, &now],
        )
        .await?;
        Ok(row.map(|r| OtpChallengeRecord {
            id: r.get(0),
            device_id: r.get(1),
            nonce: r.get(2),
            login_state: r.get(3),
            device_public_key: r.get(4),
        }))
    }

    async fn issue_otp(&self, step: IssueOtpStep) -> Result<()> {
        step!(self, |tx| issue_otp_tx(&tx, &step))
    }

    async fn use_otp(
        &self,
        otp_mac: &[u8],
        now: i64,
        relying_party: &str,
    ) -> Result<Option<VerifiedOtp>> {
        step!(self, |tx| use_otp_tx(&tx, otp_mac, now, relying_party))
    }

    async fn list_devices(
        &self,
        account: &str,
        now: i64,
        pending_ttl: u64,
    ) -> Result<Vec<DeviceSummary>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, name, platform, state, created_at, last_used_at FROM devices
                 WHERE account = $1
                   AND (state = 'active' OR (state = 'pending' AND created_at > $2))
                 ORDER BY created_at, seq",
            )
            .await?;
        client
            .query(&stmt, &[&account, &now.saturating_sub(pending_ttl as i64)])
            .await?
            .iter()
            .map(|r| {
                let platform: &str = r.get(2);
                Ok(DeviceSummary {
                    id: r.get(0),
                    name: r.get(1),
                    platform: Platform::parse(platform)
                        .ok_or_else(|| anyhow!("unknown platform {platform}"))?,
                    state: parse_state(r.get(3))?,
                    created_at: r.get(4),
                    last_used_at: r.get(5),
                })
            })
            .collect()
    }

    async fn revoke_device(&self, account: &str, device_id: &str, now: i64) -> Result<()> {
        step!(self, |tx| async {
            lock_existing_account(&tx, account).await?;
            match read_device(&tx, account, device_id).await? {
                Some(d) if d.state != DeviceState::Disabled => {}
                _ => return api(ApiError::DeviceUnknown),
            }
            disable_device(&tx, account, device_id, now, "revoked by the account").await
        })
    }

    async fn remove_enrollments(&self, account: &str, now: i64) -> Result<bool> {
        step!(self, |tx| remove_enrollments_tx(&tx, account, now))
    }

    async fn device_operation(&self, step: DeviceOperationStep) -> Result<OperationOutcome> {
        step!(self, |tx| device_operation_tx(&tx, &step))
    }

    async fn admin_list_devices(&self, account: &str) -> Result<Vec<AdminDeviceSummary>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, name, platform, state, created_at, activated_at, last_used_at
                 FROM devices WHERE account = $1 ORDER BY created_at, seq",
            )
            .await?;
        client
            .query(&stmt, &[&account])
            .await?
            .iter()
            .map(|r| {
                Ok(AdminDeviceSummary {
                    id: r.get(0),
                    name: r.get(1),
                    platform: r.get(2),
                    state: parse_state(r.get(3))?,
                    created_at: r.get(4),
                    activated_at: r.get(5),
                    last_used_at: r.get(6),
                })
            })
            .collect()
    }

    async fn admin_disable_device(
        &self,
        account: &str,
        device_id: &str,
        by: &str,
        now: i64,
    ) -> Result<()> {
        step!(self, |tx| async {
            lock_existing_account(&tx, account).await?;
            if read_device(&tx, account, device_id).await?.is_none() {
                return api(ApiError::DeviceUnknown);
            }
            disable_device(&tx, account, device_id, now, by).await
        })
    }

    async fn restore_phone_number(&self, account: &str, now: i64) -> Result<()> {
        step!(self, |tx| async {
            lock_account(&tx, account, now).await?;
            let restored = exec(
                &tx,
                "UPDATE accounts SET phone_number = previous_phone_number,
                        previous_phone_number = NULL, recovery_held_until = NULL
                 WHERE subject = $1 AND previous_phone_number IS NOT NULL",
                &[&account],
            )
            .await?;
            if restored == 0 {
                return api(ApiError::NoPhoneNumber);
            }
            let disabled = disable_every_device(&tx, account, now).await?;
            audit(
                &tx,
                now,
                account,
                "phone_number_restored",
                None,
                Some(&format!("admin, {disabled} devices disabled")),
            )
            .await
        })
    }

    async fn unblock_account(&self, account: &str, by: &str, now: i64) -> Result<()> {
        step!(self, |tx| async {
            lock_account(&tx, account, now).await?;
            reset_pin_failures(&tx, account).await?;
            audit(&tx, now, account, "account_unblocked", None, Some(by)).await
        })
    }

    async fn audit_trail(
        &self,
        account: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, at, account, event, device_id, detail FROM audit
                 WHERE ($1::TEXT IS NULL OR account = $1) AND id > $2 ORDER BY id LIMIT $3",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&account, &after_id, &i64::from(limit)])
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEvent {
                id: r.get(0),
                at: r.get(1),
                account: r.get(2),
                event: r.get(3),
                device_id: r.get(4),
                detail: r.get(5),
            })
            .collect())
    }

    async fn audit_chain(&self, after_id: i64, limit: u32) -> Result<Vec<ChainedAuditRow>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, at, account, event, device_id, detail, prev_id, mac FROM audit
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .await?;
        let rows = client.query(&stmt, &[&after_id, &i64::from(limit)]).await?;
        Ok(rows
            .iter()
            .map(|r| ChainedAuditRow {
                event: AuditEvent {
                    id: r.get(0),
                    at: r.get(1),
                    account: r.get(2),
                    event: r.get(3),
                    device_id: r.get(4),
                    detail: r.get(5),
                },
                prev_id: r.get(6),
                mac: r.get(7),
            })
            .collect())
    }

    async fn purge(&self, step: PurgeStep) -> Result<PurgeCounts> {
        step!(self, |tx| async {
            // One replica purges at a time; the others skip this round.
            let lock = one(&tx, "SELECT pg_try_advisory_xact_lock($1)", &[&PURGE_LOCK]).await?;
            if !lock.get::<_, bool>(0) {
                return Ok(PurgeCounts::default());
            }
            let mut counts = [0u64; 7];
            for (n, (sql, bound)) in counts.iter_mut().zip(step.statements()) {
                *n = exec(&tx, &sql.replace("?1", "$1"), &[&bound]).await?;
            }
            Ok(PurgeCounts::from_statement_counts(counts))
        })
    }

    async fn ping(&self) -> Result<()> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close();
    }
}
