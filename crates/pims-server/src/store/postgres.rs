//! [`Store`](super::Store) on PostgreSQL, for many replicas on one database. Each step is one READ COMMITTED
//! transaction that first locks the account row (`SELECT … FOR UPDATE`): every step of one
//! account is then serialised across all replicas, and because each later statement of a READ
//! COMMITTED transaction reads the latest committed rows, counters read after the lock are
//! exact. The per-number SMS limit spans accounts, so it also takes a transaction-scoped
//! advisory lock on the number (always after the account lock, so locks cannot cycle).
//! Marking an OTP used is one `UPDATE … RETURNING`.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Context};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use pims_proto::{DeviceState, PinOrigin, Platform, SmsPurpose};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use super::pipeline::{Changes, Pipeline};
use super::postgres_schema::{chain_existing_audit_after, MIGRATIONS};
use super::rows::DEVICE_CHANGED;
use super::rows::{
    AddressSends, CodeRow, NewChallenge, NewOtp, Rows, SendsOf, SessionRow, UsedChallenge,
};
use super::sql;
use super::steps::store_over_steps;
use super::{
    AccountRecord, AdminDeviceSummary, AuditEvent, AuditPageAt, AuditQuery, AuditVisit,
    ChainedAuditRow, ChallengeKind, DeviceRecord, DeviceSummary, EnrollmentSession,
    NewDeviceRecord, OtpChallengeRecord, PinFacts, StartEnrollmentStep, TrustedNumber, VerifiedOtp,
};
use crate::audit::{link_mac, AuditKey, Chains, Link};
use crate::error::Result;

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
    let rows = tx.query(sql::pg::AUDIT_ROWS, &[]).await?;
    let update = tx.prepare(sql::pg::SET_AUDIT_LINK).await?;
    let mut chains = Chains::default();
    for r in &rows {
        let row = audit_event(r);
        let (prev_id, mac) = chains.append(key, &row);
        tx.execute(&update, &[&row.id, &prev_id, &&mac[..]]).await?;
    }
    if !rows.is_empty() {
        tracing::info!(rows = rows.len(), "chained the existing audit rows");
    }
    Ok(())
}

macro_rules! pg_step {
    ($store:ident, $r:ident => $body:expr) => {{
        let client = $store.client().await?;
        let $r = &PgRows::new(&client, &$store.audit_key, true);
        let result = $body.await;
        $r.finish(result).await
    }};
}

macro_rules! pg_read {
    ($store:ident, $r:ident => $body:expr) => {{
        let client = $store.client().await?;
        let $r = &PgRows::new(&client, &$store.audit_key, false);
        $body.await
    }};
}

store_over_steps!(PostgresStore, step: pg_step, read: pg_read);

impl PostgresStore {
    async fn ping_db(&self) -> Result<()> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn close_db(&self) {
        self.pool.close();
    }

    /// Every page in one REPEATABLE READ transaction on one connection: one snapshot, taken
    /// by its first statement (the statement's preparation). A walk that fails or is dropped
    /// rolls it back.
    async fn audit_walk_db(&self, page: u32, visit: &mut AuditVisit<'_>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let stmt = tx.prepare_cached(sql::pg::AUDIT_CHAIN).await?;
        let read_page = |after_id: i64, limit: u32| {
            let (tx, stmt) = (&tx, &stmt);
            async move {
                let rows = tx.query(stmt, &[&after_id, &i64::from(limit)]).await?;
                Ok(rows.iter().map(chained_audit_row).collect())
            }
        };
        super::steps::audit_walk(page, read_page, visit).await?;
        tx.commit().await?;
        Ok(())
    }
}

// ---- rows ------------------------------------------------------------------------------------

/// [`sql::pg::ACCOUNT`] under the account's row lock.
static ACCOUNT_FOR_UPDATE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{} FOR UPDATE", sql::pg::ACCOUNT));

/// [`sql::pg::TAKE_CHALLENGE`] with its device's [`sql::pg::DEVICE`] columns (the account's
/// own device, as `DEVICE` reads it), in one statement.
static TAKE_CHALLENGE_WITH_DEVICE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH taken AS ({}) SELECT taken.*, d.id, d.public_key, d.state, d.counter,
                d.activation_nonce, d.created_at, d.assurance
         FROM taken LEFT JOIN devices d ON d.id = taken.device_id AND d.account = $2",
        sql::pg::TAKE_CHALLENGE
    )
});

/// An account's audit head and the id of its next row ([`AuditHead`]), read after the
/// statement that locks the account. The id is taken only when the account exists (so locked),
/// and is not given back when the step writes no audit row: ids grow, with gaps.
const HEAD_OF_ACCOUNT: &str = "SELECT $1::TEXT, p.id, p.mac,
      CASE WHEN EXISTS (SELECT 1 FROM accounts WHERE subject = $1)
           THEN nextval('audit_id_seq') END
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL
      (SELECT id, mac FROM audit WHERE account = $1 ORDER BY id DESC LIMIT 1) AS p ON true";
/// [`HEAD_OF_ACCOUNT`] of the account an OTP (by its MAC) belongs to.
const HEAD_OF_OTP_ACCOUNT: &str = "SELECT o.account, p.id, p.mac,
      CASE WHEN EXISTS (SELECT 1 FROM accounts WHERE subject = o.account)
           THEN nextval('audit_id_seq') END
    FROM (SELECT (SELECT account FROM otps WHERE mac = $1) AS account) AS o
    LEFT JOIN LATERAL
      (SELECT id, mac FROM audit WHERE account = o.account ORDER BY id DESC LIMIT 1) AS p ON true";
const CHAIN_MOVED: &str = "the audit chain of an account moved while locked";

/// The rows of a pooled connection: a step's [`Pipeline`], or single statements outside one.
/// Every statement is prepared once per connection.
struct PgRows<'a> {
    c: &'a deadpool_postgres::Client,
    step: Option<Pipeline<'a>>,
    audit_key: &'a AuditKey,
    /// The locked account's audit head, read right after its lock (see [`Self::lock_with_head`]).
    head: Mutex<Option<AuditHead>>,
}

/// The last audit row of an account and, until a row takes it, the id its next row takes.
struct AuditHead {
    account: String,
    prev_id: Option<i64>,
    prev_mac: Option<Vec<u8>>,
    next_id: Option<i64>,
}

impl<'a> PgRows<'a> {
    fn new(c: &'a deadpool_postgres::Client, audit_key: &'a AuditKey, step: bool) -> Self {
        PgRows {
            c,
            step: step.then(|| Pipeline::begin(c)),
            audit_key,
            head: Mutex::new(None),
        }
    }

    async fn finish<T>(&self, result: Result<T>) -> Result<T> {
        match &self.step {
            Some(step) => step.finish(result).await,
            None => result,
        }
    }

    /// Runs one statement; in a step, in its place in the pipeline.
    async fn run<T, F>(
        &self,
        sql: &str,
        statement: impl FnOnce(&'a tokio_postgres::Client, Statement) -> F,
    ) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    {
        let place = self.step.as_ref().map(Pipeline::place);
        let stmt = self.c.prepare_cached(sql).await?;
        let client: &'a tokio_postgres::Client = self.c;
        match (&self.step, place) {
            (Some(step), Some(place)) => step.in_turn(place, statement(client, stmt)).await,
            _ => Ok(statement(client, stmt).await?),
        }
    }

    async fn exec(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        self.run(sql, |c, stmt| async move { c.execute(&stmt, params).await })
            .await
    }

    async fn opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        self.run(
            sql,
            |c, stmt| async move { c.query_opt(&stmt, params).await },
        )
        .await
    }

    async fn one(&self, sql: &str, params: Params<'_>) -> Result<Row> {
        self.run(
            sql,
            |c, stmt| async move { c.query_one(&stmt, params).await },
        )
        .await
    }

    async fn all(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        self.run(sql, |c, stmt| async move { c.query(&stmt, params).await })
            .await
    }

    /// A write whose result the step does not read: in a step it is sent in its place and
    /// answered at the commit, so that it costs no round trip of its own.
    async fn write(&self, sql: &str, params: Params<'_>, changes: Changes) -> Result<()> {
        let Some(step) = &self.step else {
            return changes.check(self.exec(sql, params).await?);
        };
        let place = step.place();
        let stmt = self.c.prepare_cached(&changes.guarded(sql)).await?;
        step.write_ahead(place, stmt, params, changes).await
    }

    /// Takes an account's row lock with `lock` and, in the same round trip, reads its audit
    /// head: sent after the lock, that read starts once the lock is granted, so it sees the
    /// head every earlier holder committed and an audit row of this step needs no read of its
    /// own. Whether the lock found the account.
    async fn lock_with_head(&self, lock: &str, head: &str, key: Params<'_>) -> Result<Option<Row>> {
        let (locked, head) = futures::try_join!(self.opt(lock, key), self.one(head, key))?;
        let found = (
            head.get::<_, Option<String>>(0),
            head.get::<_, Option<i64>>(3),
        );
        *self.head.lock().expect("audit head") = match (&locked, found) {
            (Some(_), (Some(account), Some(next_id))) => Some(AuditHead {
                account,
                prev_id: head.get(1),
                prev_mac: head.get(2),
                next_id: Some(next_id),
            }),
            _ => None,
        };
        Ok(locked)
    }
}

/// A device from [`sql::pg::DEVICE`]'s columns, starting at column `at`.
fn device_record(r: &Row, at: usize) -> Result<DeviceRecord> {
    Ok(DeviceRecord {
        id: r.get(at),
        public_key: r.get(at + 1),
        state: parse_state(r.get(at + 2))?,
        counter: r.get::<_, i64>(at + 3) as u64,
        activation_nonce: r.get(at + 4),
        created_at: r.get(at + 5),
        assurance: r.get(at + 6),
    })
}

fn parse_state(s: &str) -> Result<DeviceState> {
    DeviceState::parse(s).ok_or_else(|| anyhow!("unknown device state {s}").into())
}

/// A count or ordinal stored as INTEGER.
fn small(v: i32) -> u32 {
    v.max(0) as u32
}

fn small_opt(v: Option<i32>) -> Option<u32> {
    v.map(small)
}

/// A count or ordinal to store as INTEGER.
fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Maps the columns of [`sql::pg::AUDIT_ROWS`] and its kin.
fn audit_event(r: &Row) -> AuditEvent {
    AuditEvent {
        id: r.get(0),
        at: r.get(1),
        account: r.get(2),
        event: r.get(3),
        device_id: r.get(4),
        detail: r.get(5),
    }
}

/// Maps the columns of [`sql::pg::AUDIT_CHAIN`].
fn chained_audit_row(r: &Row) -> ChainedAuditRow {
    ChainedAuditRow {
        event: audit_event(r),
        prev_id: r.get(6),
        mac: r.get(7),
    }
}

fn account_record(r: &Row) -> AccountRecord {
    AccountRecord {
        phone_number: r.get(0),
        pin_record: r.get(1),
        pin_credential_id: r.get(2),
        pin_failures: small(r.get(3)),
        recovery_held_until: r.get(4),
        pin_ever_set: r.get(5),
        pre_hold_phone_number: r.get(6),
        restore_nonce: r.get(7),
    }
}

fn code_row(r: &Row) -> CodeRow {
    CodeRow {
        id: r.get(0),
        phone_number: r.get(1),
        nonce: r.get(2),
        expires_at: r.get(3),
        checks: small(r.get(4)),
        state: r.get(5),
    }
}

/// Each step is one READ COMMITTED transaction that locks the account row first (see the
/// module documentation); the SMS limits that span accounts take advisory locks.
impl Rows for PgRows<'_> {
    /// The lock is tried first: accounts exist on almost every step, which then costs one
    /// round trip.
    async fn lock_account(&self, account: &str, now: i64) -> Result<AccountRecord> {
        let lock = ACCOUNT_FOR_UPDATE.as_str();
        let key: Params<'_> = &[&account];
        if let Some(row) = self.lock_with_head(lock, HEAD_OF_ACCOUNT, key).await? {
            return Ok(account_record(&row));
        }
        self.exec(sql::pg::INSERT_ACCOUNT, &[&account, &now])
            .await?;
        match self.lock_with_head(lock, HEAD_OF_ACCOUNT, key).await? {
            Some(row) => Ok(account_record(&row)),
            None => Err(anyhow!("the account inserted is missing").into()),
        }
    }

    async fn lock_existing_account(&self, account: &str) -> Result<()> {
        const LOCK: &str = "SELECT 1 FROM accounts WHERE subject = $1 FOR UPDATE";
        self.lock_with_head(LOCK, HEAD_OF_ACCOUNT, &[&account])
            .await?;
        Ok(())
    }

    async fn lock_account_of_otp(&self, mac: &[u8]) -> Result<()> {
        const LOCK: &str = "SELECT 1 FROM accounts
             WHERE subject = (SELECT account FROM otps WHERE mac = $1) FOR UPDATE";
        self.lock_with_head(LOCK, HEAD_OF_OTP_ACCOUNT, &[&mac])
            .await?;
        Ok(())
    }

    async fn account(&self, account: &str) -> Result<Option<AccountRecord>> {
        let row = self.opt(sql::pg::ACCOUNT, &[&account]).await?;
        Ok(row.as_ref().map(account_record))
    }

    async fn pin_facts(&self, account: &str) -> Result<Option<PinFacts>> {
        let row = self.opt(sql::pg::PIN_FACTS, &[&account]).await?;
        Ok(row.map(|r| PinFacts {
            pin_set_at: r.get(0),
            pin_set_by: r.get::<_, Option<&str>>(1).and_then(PinOrigin::parse),
            pin_recovered_at: r.get(2),
        }))
    }

    async fn accounts_with_phone_number(&self, phone_number: &str) -> Result<Vec<String>> {
        let rows = self
            .all(sql::pg::ACCOUNTS_WITH_PHONE_NUMBER, &[&phone_number])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn accounts_with_subject_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<String>> {
        let rows = self
            .all(
                sql::pg::ACCOUNTS_WITH_SUBJECT_PREFIX,
                &[&prefix, &i64::from(limit)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn add_pin_attempt(&self, account: &str) -> Result<u32> {
        let row = self.one(sql::pg::ADD_PIN_ATTEMPT, &[&account]).await?;
        Ok(small(row.get(0)))
    }

    async fn reset_pin_failures(&self, account: &str) -> Result<()> {
        self.write(sql::pg::RESET_PIN_FAILURES, &[&account], Changes::Any)
            .await
    }

    async fn store_pin(
        &self,
        account: &str,
        record: &[u8],
        credential_id: &str,
        origin: PinOrigin,
        now: i64,
    ) -> Result<()> {
        self.write(
            sql::pg::STORE_PIN,
            &[&account, &record, &credential_id, &now, &origin.as_str()],
            Changes::Any,
        )
        .await
    }

    async fn clear_pin(&self, account: &str) -> Result<()> {
        self.write(sql::pg::CLEAR_PIN, &[&account], Changes::Any)
            .await
    }

    async fn set_phone_number(&self, account: &str, phone_number: &str) -> Result<()> {
        self.write(
            sql::pg::SET_PHONE_NUMBER,
            &[&account, &phone_number],
            Changes::Any,
        )
        .await
    }

    async fn set_trusted_number(&self, account: &str, number: &TrustedNumber) -> Result<()> {
        self.write(
            sql::pg::SET_TRUSTED_NUMBER,
            &[
                &account,
                &number.phone_number,
                &number.pre_hold_phone_number,
                &number.recovery_held_until,
                &number.restore_nonce,
            ],
            Changes::Any,
        )
        .await
    }

    async fn audit(
        &self,
        now: i64,
        account: &str,
        event: &str,
        device_id: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        // The account's appends are serialised by its row lock: every step takes it first, and
        // taking it again here costs nothing then (it still covers a step that did not). An
        // account without a row (an event of no account) takes an advisory lock on its name
        // instead. The head is read in the statement that takes the lock, so after waiting it
        // may be stale: the insert then finds a newer row, inserts nothing, and the head is
        // read again, under the lock.
        const HEAD: &str = "WITH locked AS (SELECT 1 FROM accounts WHERE subject = $1 FOR UPDATE)
            SELECT (SELECT COUNT(*) FROM locked), p.id, p.mac, nextval('audit_id_seq')
            FROM (SELECT 1) AS one
            LEFT JOIN LATERAL
              (SELECT id, mac FROM audit WHERE account = $1 ORDER BY id DESC LIMIT 1)
              AS p ON true";
        const INSERT: &str =
            "INSERT INTO audit (id, prev_id, at, account, event, device_id, detail, mac)
            SELECT $1::BIGINT, $2::BIGINT, $3::BIGINT, $4::TEXT, $5::TEXT, $6::TEXT, $7::TEXT,
                   $8::BYTEA
            WHERE NOT EXISTS (SELECT 1 FROM audit WHERE account = $4 AND id > COALESCE($2, 0))";
        // The MAC of this row as the `id`-th, chained after (`prev_id`, `prev_mac`).
        let mac = |id: i64, prev_id: Option<i64>, prev_mac: Option<&[u8]>| {
            let link = Link {
                id,
                prev_id,
                at: now,
                account,
                event,
                device_id,
                detail,
            };
            link_mac(self.audit_key, prev_mac, &link).to_vec()
        };
        let locked_head = {
            let mut head = self.head.lock().expect("audit head");
            match head.take() {
                Some(h) if h.account == account => Some(h),
                other => {
                    *head = other;
                    None
                }
            }
        };
        if let Some(head) = locked_head {
            // A further row of this step takes a new id; its head is the row written now.
            let id = match head.next_id {
                Some(id) => id,
                None => {
                    let next = self.one("SELECT nextval('audit_id_seq')", &[]).await?;
                    next.get(0)
                }
            };
            let mac = mac(id, head.prev_id, head.prev_mac.as_deref());
            let params: Params<'_> = &[
                &id,
                &head.prev_id,
                &now,
                &account,
                &event,
                &device_id,
                &detail,
                &mac,
            ];
            self.write(INSERT, params, Changes::One(CHAIN_MOVED))
                .await?;
            *self.head.lock().expect("audit head") = Some(AuditHead {
                account: account.to_string(),
                prev_id: Some(id),
                prev_mac: Some(mac),
                next_id: None,
            });
            return Ok(());
        }
        let mut advisory = false;
        for _ in 0..3 {
            let head = self.one(HEAD, &[&account]).await?;
            if head.get::<_, i64>(0) == 0 && !advisory {
                self.exec(
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
            let mac = mac(id, prev_id, prev_mac.as_deref());
            let params: Params<'_> = &[
                &id, &prev_id, &now, &account, &event, &device_id, &detail, &mac,
            ];
            if self.exec(INSERT, params).await? == 1 {
                return Ok(());
            }
        }
        Err(anyhow!(CHAIN_MOVED).into())
    }

    async fn audit_trail(
        &self,
        account: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let rows = self
            .all(
                sql::pg::AUDIT_TRAIL,
                &[&account, &after_id, &i64::from(limit)],
            )
            .await?;
        Ok(rows.iter().map(audit_event).collect())
    }

    async fn audit_search(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let (sql, bound) = match q.page {
            AuditPageAt::OlderThan(id) => (sql::pg::AUDIT_OLDER, id),
            AuditPageAt::NewerThan(id) => (sql::pg::AUDIT_NEWER, id),
        };
        let rows = self
            .all(
                sql,
                &[
                    &q.account,
                    &q.event,
                    &q.by,
                    &q.from,
                    &q.to,
                    &bound,
                    &i64::from(q.limit),
                ],
            )
            .await?;
        Ok(rows.iter().map(audit_event).collect())
    }

    async fn audit_chain(&self, after_id: i64, limit: u32) -> Result<Vec<ChainedAuditRow>> {
        let rows = self
            .all(sql::pg::AUDIT_CHAIN, &[&after_id, &i64::from(limit)])
            .await?;
        Ok(rows.iter().map(chained_audit_row).collect())
    }

    async fn device(&self, account: &str, device_id: &str) -> Result<Option<DeviceRecord>> {
        let row = self.opt(sql::pg::DEVICE, &[&device_id, &account]).await?;
        row.map(|r| device_record(&r, 0)).transpose()
    }

    async fn live_device_count(&self, account: &str, pending_since: i64) -> Result<u32> {
        let row = self
            .one(sql::pg::LIVE_DEVICE_COUNT, &[&account, &pending_since])
            .await?;
        Ok(row.get::<_, i64>(0) as u32)
    }

    async fn live_devices(&self, account: &str, pending_since: i64) -> Result<Vec<DeviceSummary>> {
        let rows = self
            .all(sql::pg::LIVE_DEVICES, &[&account, &pending_since])
            .await?;
        rows.iter()
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
                    assurance: r.get(6),
                })
            })
            .collect()
    }

    async fn all_devices(&self, account: &str) -> Result<Vec<AdminDeviceSummary>> {
        let rows = self.all(sql::pg::ALL_DEVICES, &[&account]).await?;
        rows.iter()
            .map(|r| {
                Ok(AdminDeviceSummary {
                    id: r.get(0),
                    name: r.get(1),
                    platform: r.get(2),
                    state: parse_state(r.get(3))?,
                    created_at: r.get(4),
                    activated_at: r.get(5),
                    last_used_at: r.get(6),
                    re_enablable: r.get(7),
                    assurance: r.get(8),
                    assurance_detail: r.get(9),
                })
            })
            .collect()
    }

    async fn insert_device(&self, account: &str, device: &NewDeviceRecord, now: i64) -> Result<()> {
        self.write(
            sql::pg::INSERT_DEVICE,
            &[
                &device.id,
                &account,
                &device.public_key,
                &device.name,
                &device.platform.as_str(),
                &device.activation_nonce,
                &now,
                &device.assurance,
                &device.assurance_detail,
            ],
            Changes::Any,
        )
        .await
    }

    async fn activate_device(
        &self,
        account: &str,
        device_id: &str,
        counter: i64,
        now: i64,
    ) -> Result<bool> {
        let updated = self
            .exec(
                sql::pg::ACTIVATE_DEVICE,
                &[&device_id, &account, &counter, &now],
            )
            .await?;
        Ok(updated == 1)
    }

    async fn set_device_counter(
        &self,
        device_id: &str,
        counter: i64,
        used_at: Option<i64>,
    ) -> Result<()> {
        self.write(
            sql::pg::SET_DEVICE_COUNTER,
            &[&device_id, &counter, &used_at],
            Changes::One(DEVICE_CHANGED),
        )
        .await
    }

    async fn disable_device(
        &self,
        account: &str,
        device_id: &str,
        by_operator: bool,
    ) -> Result<()> {
        let by = by_operator.then_some("operator");
        self.exec(sql::pg::DISABLE_DEVICE, &[&device_id, &account, &by])
            .await?;
        Ok(())
    }

    async fn disable_devices(&self, account: &str) -> Result<u64> {
        self.exec(sql::pg::DISABLE_DEVICES, &[&account]).await
    }

    async fn forget_operator_disables(&self, account: &str) -> Result<()> {
        self.write(sql::pg::FORGET_OPERATOR_DISABLES, &[&account], Changes::Any)
            .await
    }

    async fn enable_device(&self, account: &str, device_id: &str) -> Result<bool> {
        Ok(self
            .exec(sql::pg::ENABLE_DEVICE, &[&device_id, &account])
            .await?
            == 1)
    }

    async fn insert_session(
        &self,
        step: &StartEnrollmentStep,
        pin_ordinal: Option<u32>,
        sms_code_id: i64,
    ) -> Result<()> {
        self.write(
            sql::pg::INSERT_SESSION,
            &[
                &step.session_id,
                &step.account,
                &step.nonce,
                &step.login.as_ref().map(|l| &l.state),
                &pin_ordinal.map(int),
                &sms_code_id,
                &step.phone_number,
                &step.now,
                &(step.now + step.ttl as i64),
                &step.credential_id,
            ],
            Changes::Any,
        )
        .await
    }

    async fn take_session(&self, account: &str, id: &str, now: i64) -> Result<Option<SessionRow>> {
        let row = self
            .opt(sql::pg::TAKE_SESSION, &[&id, &account, &now])
            .await?;
        Ok(row.map(|r| SessionRow {
            pin_ordinal: small_opt(r.get(0)),
            sms_code_id: r.get(1),
            phone_number: r.get(2),
            pin_credential_id: r.get(3),
        }))
    }

    async fn open_session(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<EnrollmentSession>> {
        let row = self
            .opt(sql::pg::OPEN_SESSION, &[&id, &account, &now])
            .await?;
        Ok(row.map(|r| EnrollmentSession {
            id: r.get(0),
            nonce: r.get(1),
            login_state: r.get(2),
        }))
    }

    async fn close_sessions(&self, account: &str, now: i64, logins_only: bool) -> Result<()> {
        self.write(
            sql::pg::CLOSE_SESSIONS,
            &[&account, &now, &logins_only],
            Changes::Any,
        )
        .await
    }

    async fn insert_challenge(&self, c: &NewChallenge<'_>) -> Result<()> {
        self.write(
            sql::pg::INSERT_CHALLENGE,
            &[
                &c.id,
                &c.account,
                &c.device_id,
                &c.nonce,
                &c.login_state,
                &c.pin_ordinal.map(int),
                &c.pin_change,
                &c.pin_credential_id,
                &c.audience,
                &c.created_at,
                &c.expires_at,
            ],
            Changes::Any,
        )
        .await
    }

    async fn take_challenge(
        &self,
        account: &str,
        id: &str,
        now: i64,
        kind: ChallengeKind,
    ) -> Result<Option<UsedChallenge>> {
        let row = self
            .opt(
                &TAKE_CHALLENGE_WITH_DEVICE,
                &[&id, &account, &now, &(kind == ChallengeKind::PinChange)],
            )
            .await?;
        row.map(|r| {
            if r.get::<_, Option<&str>>(5).is_none() {
                return Err(anyhow!("a challenge of a device not found").into());
            }
            Ok(UsedChallenge {
                device: device_record(&r, 5)?,
                ordinal: small_opt(r.get(1)),
                pin_change: r.get(2),
                credential_id: r.get(3),
                audience: r.get(4),
            })
        })
        .transpose()
    }

    async fn open_challenge(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<OtpChallengeRecord>> {
        let row = self
            .opt(sql::pg::OPEN_CHALLENGE, &[&id, &account, &now])
            .await?;
        Ok(row.map(|r| OtpChallengeRecord {
            id: r.get(0),
            device_id: r.get(1),
            nonce: r.get(2),
            login_state: r.get(3),
            device_public_key: r.get(4),
        }))
    }

    async fn open_unsigned_challenges(&self, device_id: &str, now: i64) -> Result<u32> {
        let row = self
            .one(sql::pg::OPEN_UNSIGNED_CHALLENGES, &[&device_id, &now])
            .await?;
        Ok(row.get::<_, i64>(0) as u32)
    }

    async fn close_challenges(&self, account: &str, now: i64, pin_only: bool) -> Result<()> {
        self.write(
            sql::pg::CLOSE_CHALLENGES,
            &[&account, &now, &pin_only],
            Changes::Any,
        )
        .await
    }

    async fn latest_code(
        &self,
        account: &str,
        purpose: SmsPurpose,
        phone_number: Option<&str>,
    ) -> Result<Option<CodeRow>> {
        let row = self
            .opt(
                sql::pg::LATEST_CODE,
                &[&account, &purpose.as_str(), &phone_number],
            )
            .await?;
        Ok(row.as_ref().map(code_row))
    }

    async fn code(&self, id: i64) -> Result<CodeRow> {
        Ok(code_row(&self.one(sql::pg::CODE, &[&id]).await?))
    }

    async fn set_code_checks(&self, id: i64, checks: u32) -> Result<()> {
        self.write(sql::pg::SET_CODE_CHECKS, &[&id, &int(checks)], Changes::Any)
            .await
    }

    async fn set_code_state(&self, id: i64, state: &str) -> Result<()> {
        self.write(sql::pg::SET_CODE_STATE, &[&id, &state], Changes::Any)
            .await
    }

    async fn resendable_code(
        &self,
        account: &str,
        purpose: SmsPurpose,
        phone_number: &str,
        now: i64,
        max_checks: u32,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        let row = self
            .opt(
                sql::pg::RESENDABLE_CODE,
                &[
                    &account,
                    &purpose.as_str(),
                    &phone_number,
                    &now,
                    &int(max_checks),
                ],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn insert_code(
        &self,
        account: &str,
        purpose: SmsPurpose,
        phone_number: &str,
        nonce: &[u8],
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        self.write(
            sql::pg::INSERT_CODE,
            &[
                &account,
                &purpose.as_str(),
                &phone_number,
                &nonce,
                &now,
                &expires_at,
            ],
            Changes::Any,
        )
        .await
    }

    async fn lock_number(&self, phone_number: &str) -> Result<()> {
        self.exec(
            "SELECT pg_advisory_xact_lock(hashtextextended('pims-sms-number:' || $1, 0))",
            &[&phone_number],
        )
        .await?;
        Ok(())
    }

    async fn lock_address(&self, address: &str) -> Result<()> {
        self.exec(
            "SELECT pg_advisory_xact_lock(hashtextextended('pims-sms-address:' || $1, 0))",
            &[&address],
        )
        .await?;
        Ok(())
    }

    async fn sends(&self, of: SendsOf<'_>, since: i64) -> Result<(i64, Option<i64>)> {
        let (sql, value) = match of {
            SendsOf::Account(account) => (sql::pg::SENDS_OF_ACCOUNT, account),
            SendsOf::Number(number) => (sql::pg::SENDS_TO_NUMBER, number),
        };
        let row = self.one(sql, &[&value, &since]).await?;
        Ok((row.get(0), row.get(1)))
    }

    async fn address_sends(&self, address: &str, since: i64) -> Result<AddressSends> {
        let last = self
            .opt(sql::pg::LAST_ADDRESS_SEND, &[&address])
            .await?
            .map(|r| r.get(0));
        let first_in_window = self
            .opt(sql::pg::FIRST_ADDRESS_SEND_IN_WINDOW, &[&address, &since])
            .await?
            .map(|r| (r.get(0), r.get(1)));
        Ok(AddressSends {
            last,
            first_in_window,
        })
    }

    async fn record_send(
        &self,
        account: &str,
        phone_number: &str,
        now: i64,
        address: Option<(&str, i64)>,
    ) -> Result<()> {
        let (address, seq) = (address.map(|(a, _)| a), address.map(|(_, s)| s));
        self.exec(
            "WITH send AS (INSERT INTO sms_sends (account, phone_number, sent_at, client_address)
                           VALUES ($1, $2, $3, $4) RETURNING id)
             INSERT INTO sms_address_sends (send_id, client_address, seq, sent_at)
             SELECT id, $4, $5, $3 FROM send WHERE $5::BIGINT IS NOT NULL",
            &[&account, &phone_number, &now, &address, &seq],
        )
        .await?;
        Ok(())
    }

    async fn outcome(&self, account: &str, key: &str) -> Result<Option<(String, String)>> {
        let row = self.opt(sql::pg::OUTCOME, &[&account, &key]).await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn store_outcome(
        &self,
        account: &str,
        key: &str,
        scope: &str,
        outcome: &str,
        now: i64,
    ) -> Result<()> {
        self.write(
            sql::pg::STORE_OUTCOME,
            &[&account, &key, &scope, &outcome, &now],
            Changes::Any,
        )
        .await
    }

    async fn insert_otp(&self, otp: &NewOtp<'_>) -> Result<()> {
        self.write(
            sql::pg::INSERT_OTP,
            &[
                &otp.mac,
                &otp.account,
                &otp.device_id,
                &otp.with_pin,
                &otp.issued_at,
                &otp.expires_at,
                &otp.audience,
            ],
            Changes::Any,
        )
        .await
    }

    async fn use_otp(
        &self,
        mac: &[u8],
        now: i64,
        relying_party: &str,
    ) -> Result<Option<VerifiedOtp>> {
        let row = self
            .opt(sql::pg::USE_OTP, &[&mac, &now, &relying_party])
            .await?;
        Ok(row.map(|r| VerifiedOtp {
            subject: r.get(0),
            device_id: r.get(1),
            with_pin: r.get(2),
            issued_at: r.get(3),
            pin_set_at: r.get(4),
            pin_set_by: r.get::<_, Option<&str>>(5).and_then(PinOrigin::parse),
            pin_recovered_at: r.get(6),
            assurance: r.get(7),
        }))
    }

    async fn lock_purge(&self) -> Result<bool> {
        let row = self
            .one("SELECT pg_try_advisory_xact_lock($1)", &[&PURGE_LOCK])
            .await?;
        Ok(row.get(0))
    }

    async fn purge(&self, sql: &str, bound: i64) -> Result<u64> {
        self.exec(&sql.replace("?1", "$1"), &[&bound]).await
    }
}
