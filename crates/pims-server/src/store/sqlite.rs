//! [`Store`](super::Store) on SQLite, WAL: one writing connection on its own thread (SQLite
//! serialises writers anyway) that commits the steps waiting together in one `BEGIN IMMEDIATE`
//! transaction, each in its savepoint; reads outside a step on a second, read-only connection.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use std::future::Future;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};

use anyhow::{anyhow, Context};
use pims_proto::{DeviceState, PinOrigin, Platform, SmsPurpose};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use super::rows::{
    AddressSends, CodeRow, NewChallenge, NewOtp, Rows, SendsOf, SessionRow, UsedChallenge,
    DEVICE_CHANGED,
};
use super::schema::{chain_existing_audit_after, MIGRATIONS};
use super::sql;
use super::steps::store_over_steps;
use super::{
    AccountRecord, AdminDeviceSummary, AuditEvent, AuditPageAt, AuditQuery, AuditVisit,
    ChainedAuditRow, ChallengeKind, DeviceRecord, DeviceSummary, EnrollmentSession,
    NewDeviceRecord, OtpChallengeRecord, PinFacts, StartEnrollmentStep, TrustedNumber, VerifiedOtp,
};
use crate::audit::{link_mac, AuditKey, Chains, Link};
use crate::error::{Error, Result};

/// Each connection's page cache, in KiB (negative: SQLite's unit for a size). The default
/// 2 MiB keeps the hot rows of a few hundred accounts; with 100,000 accounts their index pages
/// fall out of it and every step reads them again from the OS (measured: OTP without PIN
/// 21 % dearer at 100,000 accounts than at 200 with the default).
const PAGE_CACHE: i64 = -32 * 1024;

/// WAL pages after which a commit copies the WAL back into the database (SQLite's default is
/// 1,000). A step rewrites the same few hot pages (a device's row, an account's index entries)
/// many times between two checkpoints; each checkpoint writes a page once however often it
/// changed, so a longer WAL writes less per step (measured: 70 → 57 KiB of disk per OTP
/// without PIN) and stalls the writer less often (a commit that checkpoints answers after
/// it: rarer stalls, each longer). 10,000 pages is a WAL of about 40 MiB.
const WAL_CHECKPOINT_PAGES: i64 = 10_000;

/// What the WAL file is cut back to once a checkpoint has emptied it: it grows past the
/// checkpoint size while a long read (`pims audit verify`) keeps the checkpoint from finishing,
/// and would otherwise keep that size on disk.
const WAL_FILE_LIMIT_BYTES: i64 = 64 << 20;

pub struct SqliteStore {
    /// The writer thread's queue: every step runs there, on the one writing connection.
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
        conn.pragma_update(None, "cache_size", PAGE_CACHE)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", WAL_FILE_LIMIT_BYTES)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        register_audit_mac(&conn, audit_key.clone())?;
        migrate(&mut conn, &audit_key)?;
        let reader = Connection::open(path)
            .with_context(|| format!("opening database {}", path.display()))?;
        reader.busy_timeout(Duration::from_secs(10))?;
        reader.pragma_update(None, "query_only", "ON")?;
        reader.pragma_update(None, "cache_size", PAGE_CACHE)?;
        reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (writer, jobs) = mpsc::channel();
        let writer_thread = std::thread::Builder::new()
            .name("pims-sqlite-writer".into())
            .spawn(move || write_batches(conn, jobs))
            .context("starting the SQLite writer thread")?;
        Ok(SqliteStore {
            writer: Mutex::new(Some(writer)),
            writer_thread: Mutex::new(Some(writer_thread)),
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
        self.write(move |conn| Ok(conn.pragma_query_value(None, name, |row| row.get(0))?))
            .await
    }

    /// The schema version whose migration chains the audit rows already there.
    pub fn audit_chain_schema_version() -> usize {
        chain_existing_audit_after()
    }

    /// Runs `f` as one step on the writer: its writes commit unless it fails internally, and
    /// its answer comes once they are on disk.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let failed = matches!(result, Err(Error::Internal(_)));
            let deliver: Deliver = Box::new(move |committed| {
                let result = match committed {
                    Ok(()) => result,
                    Err(e) => Err(anyhow!("committing the step: {e}").into()),
                };
                let _ = answer.send(result);
            });
            (failed, deliver)
        });
        let sent = match &*self.writer.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(writer) => writer.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(anyhow!("the store is closed").into());
        }
        answered
            .await
            .map_err(|_| anyhow!("the store's writer stopped"))?
    }
}

/// A step for the writer: runs over the connection and says whether it failed internally,
/// with how to deliver its answer once the batch's commit is known.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Deliver) + Send>;
type Deliver = Box<dyn FnOnce(std::result::Result<(), &str>) + Send>;

/// Steps waiting together, at most, in one transaction.
const MAX_BATCH: usize = 64;

/// The writer thread: takes every step waiting (group commit), runs each in its own
/// savepoint of one immediate transaction (a step that fails internally rolls back to it, so
/// each keeps its own all-or-nothing) and commits them together: one fsync for the batch,
/// and every answer waits for it. Under load this is what keeps fsyncs and thread wake-ups
/// from growing with the requests; alone, a step commits as before.
fn write_batches(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut delivers = Vec::with_capacity(batch.len());
        // A failed batch (disk full, I/O error, a panic) fails every step of it, none half
        // done: the transaction rolls back, and the thread goes on with the next batch.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_batch(&mut conn, batch, &mut delivers)
        }));
        let outcome = match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the writer panicked".to_string()),
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, steps = delivers.len(), "a batch of store steps failed");
        }
        for deliver in delivers {
            deliver(outcome.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the database failed");
    }
}

fn run_batch(
    conn: &mut Connection,
    batch: Vec<Job>,
    delivers: &mut Vec<Deliver>,
) -> rusqlite::Result<()> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for job in batch {
        let mut step = tx.savepoint()?;
        // A panicking step is an internal failure of its own; its caller sees the writer drop
        // its answer.
        match std::panic::catch_unwind(AssertUnwindSafe(|| job(&step))) {
            Ok((failed, deliver)) => {
                delivers.push(deliver);
                if failed {
                    step.rollback()?;
                }
            }
            Err(_) => {
                tracing::error!("a store step panicked");
                step.rollback()?;
            }
        }
        step.commit()?;
    }
    tx.commit()
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
        .prepare_cached(sql::sqlite::AUDIT_ROWS)?
        .query_map([], audit_event)?
        .collect::<rusqlite::Result<_>>()?;
    let mut chains = Chains::default();
    for row in &rows {
        let (prev_id, mac) = chains.append(key, row);
        tx.execute(
            sql::sqlite::SET_AUDIT_LINK,
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
    let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
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

// ---- rows ----------------------------------------------------------------------------------

/// Every statement is compiled once per connection and kept: compiling one costs more than
/// running it.
const STATEMENT_CACHE: usize = 256;

/// Runs a step or read of [`super::steps`] to its end, here: SQLite rows never wait, so the
/// future is ready on its first poll.
fn ready<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    match pin!(future).poll(&mut TaskContext::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(anyhow!("a SQLite step waited").into()),
    }
}

macro_rules! sqlite_step {
    ($store:ident, $r:ident => $body:expr) => {
        $store
            .write(move |tx| {
                let $r = &SqliteRows(tx);
                ready($body)
            })
            .await
    };
}

macro_rules! sqlite_read {
    ($store:ident, $r:ident => $body:expr) => {
        $store.read(|c| {
            let $r = &SqliteRows(c);
            ready($body)
        })
    };
}

store_over_steps!(SqliteStore, step: sqlite_step, read: sqlite_read);

impl SqliteStore {
    async fn ping_db(&self) -> Result<()> {
        self.write(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    /// Every page in one read transaction on the reader: one snapshot, taken by the first
    /// page's query. (Ids are taken in the writer's transaction, so rows commit in id order
    /// here anyway; the reader stays taken until the walk ends.)
    async fn audit_walk_db(&self, page: u32, visit: &mut AuditVisit<'_>) -> Result<()> {
        self.read(|c| {
            let tx = c.unchecked_transaction()?;
            let rows = SqliteRows(&tx);
            let read_page = |after_id: i64, limit: u32| rows.audit_chain(after_id, limit);
            ready(super::steps::audit_walk(page, read_page, visit))?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Closes the reader, then lets the writer finish the steps already queued and close.
    async fn close_db(&self) {
        drop(self.reader.lock().unwrap_or_else(|p| p.into_inner()).take());
        drop(self.writer.lock().unwrap_or_else(|p| p.into_inner()).take());
        let thread = self
            .writer_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The rows of one connection: the writer's transaction in a step, the reader outside one.
struct SqliteRows<'a>(&'a Connection);

impl SqliteRows<'_> {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> Result<u64> {
        Ok(self.0.prepare_cached(sql)?.execute(params)? as u64)
    }

    fn opt<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<Option<T>>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        Ok(self
            .0
            .prepare_cached(sql)?
            .query_row(params, f)
            .optional()?)
    }

    fn one<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        Ok(self.0.prepare_cached(sql)?.query_row(params, f)?)
    }

    fn all<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<Vec<T>>
    where
        P: rusqlite::Params,
        F: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        let mut stmt = self.0.prepare_cached(sql)?;
        let rows = stmt.query_map(params, f)?;
        Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
    }
}

fn invalid_column(index: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(index, what, rusqlite::types::Type::Text)
}

fn parse_state(index: usize, s: &str) -> rusqlite::Result<DeviceState> {
    DeviceState::parse(s).ok_or_else(|| invalid_column(index, format!("device state {s}")))
}

/// Maps the columns of [`sql::sqlite::AUDIT_ROWS`] and its kin.
fn audit_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        id: r.get(0)?,
        at: r.get(1)?,
        account: r.get(2)?,
        event: r.get(3)?,
        device_id: r.get(4)?,
        detail: r.get(5)?,
    })
}

fn account_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRecord> {
    Ok(AccountRecord {
        phone_number: r.get(0)?,
        pin_record: r.get(1)?,
        pin_credential_id: r.get(2)?,
        pin_failures: r.get(3)?,
        recovery_held_until: r.get(4)?,
        pin_ever_set: r.get(5)?,
        pre_hold_phone_number: r.get(6)?,
        restore_nonce: r.get(7)?,
    })
}

fn code_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CodeRow> {
    Ok(CodeRow {
        id: r.get(0)?,
        phone_number: r.get(1)?,
        nonce: r.get(2)?,
        expires_at: r.get(3)?,
        checks: r.get(4)?,
        state: r.get(5)?,
    })
}

/// A step's writes are serialised by its `BEGIN IMMEDIATE`, so the locks PostgreSQL takes are
/// no-ops here.
impl Rows for SqliteRows<'_> {
    async fn lock_account(&self, account: &str, now: i64) -> Result<AccountRecord> {
        self.exec(sql::sqlite::INSERT_ACCOUNT, params![account, now])?;
        self.one(sql::sqlite::ACCOUNT, [account], account_record)
    }

    async fn lock_existing_account(&self, _account: &str) -> Result<()> {
        Ok(())
    }

    async fn lock_account_of_otp(&self, _mac: &[u8]) -> Result<()> {
        Ok(())
    }

    async fn account(&self, account: &str) -> Result<Option<AccountRecord>> {
        self.opt(sql::sqlite::ACCOUNT, [account], account_record)
    }

    async fn pin_facts(&self, account: &str) -> Result<Option<PinFacts>> {
        self.opt(sql::sqlite::PIN_FACTS, [account], |r| {
            Ok(PinFacts {
                pin_set_at: r.get(0)?,
                pin_set_by: r
                    .get::<_, Option<String>>(1)?
                    .as_deref()
                    .and_then(PinOrigin::parse),
                pin_recovered_at: r.get(2)?,
            })
        })
    }

    async fn accounts_with_phone_number(&self, phone_number: &str) -> Result<Vec<String>> {
        self.all(
            sql::sqlite::ACCOUNTS_WITH_PHONE_NUMBER,
            [phone_number],
            |r| r.get(0),
        )
    }

    async fn accounts_with_subject_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<String>> {
        self.all(
            sql::sqlite::ACCOUNTS_WITH_SUBJECT_PREFIX,
            params![prefix, limit],
            |r| r.get(0),
        )
    }

    async fn add_pin_attempt(&self, account: &str) -> Result<u32> {
        self.one(sql::sqlite::ADD_PIN_ATTEMPT, [account], |r| r.get(0))
    }

    async fn reset_pin_failures(&self, account: &str) -> Result<()> {
        self.exec(sql::sqlite::RESET_PIN_FAILURES, [account])?;
        Ok(())
    }

    async fn store_pin(
        &self,
        account: &str,
        record: &[u8],
        credential_id: &str,
        origin: PinOrigin,
        now: i64,
    ) -> Result<()> {
        self.exec(
            sql::sqlite::STORE_PIN,
            params![account, record, credential_id, now, origin.as_str()],
        )?;
        Ok(())
    }

    async fn clear_pin(&self, account: &str) -> Result<()> {
        self.exec(sql::sqlite::CLEAR_PIN, [account])?;
        Ok(())
    }

    async fn set_phone_number(&self, account: &str, phone_number: &str) -> Result<()> {
        self.exec(
            sql::sqlite::SET_PHONE_NUMBER,
            params![account, phone_number],
        )?;
        Ok(())
    }

    async fn set_trusted_number(&self, account: &str, number: &TrustedNumber) -> Result<()> {
        self.exec(
            sql::sqlite::SET_TRUSTED_NUMBER,
            params![
                account,
                number.phone_number,
                number.pre_hold_phone_number,
                number.recovery_held_until,
                number.restore_nonce
            ],
        )?;
        Ok(())
    }

    async fn audit(
        &self,
        now: i64,
        account: &str,
        event: &str,
        device_id: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        // Links to the account's last row (one writer at a time: the transaction is IMMEDIATE).
        self.exec(
            "INSERT INTO audit (id, prev_id, at, account, event, device_id, detail, mac)
             SELECT n.id, p.id, ?1, ?2, ?3, ?4, ?5,
                    pims_audit_mac(p.mac, n.id, p.id, ?1, ?2, ?3, ?4, ?5)
             FROM (SELECT COALESCE((SELECT MAX(id) FROM audit), 0) + 1 AS id) AS n
             LEFT JOIN (SELECT id, mac FROM audit WHERE account = ?2 ORDER BY id DESC LIMIT 1)
               AS p ON 1",
            params![now, account, event, device_id, detail],
        )?;
        Ok(())
    }

    async fn audit_trail(
        &self,
        account: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        self.all(
            sql::sqlite::AUDIT_TRAIL,
            params![account, after_id, limit],
            audit_event,
        )
    }

    async fn audit_search(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let (sql, bound) = match q.page {
            AuditPageAt::OlderThan(id) => (sql::sqlite::AUDIT_OLDER, id),
            AuditPageAt::NewerThan(id) => (sql::sqlite::AUDIT_NEWER, id),
        };
        self.all(
            sql,
            params![q.account, q.event, q.by, q.from, q.to, bound, q.limit],
            audit_event,
        )
    }

    async fn audit_chain(&self, after_id: i64, limit: u32) -> Result<Vec<ChainedAuditRow>> {
        self.all(sql::sqlite::AUDIT_CHAIN, params![after_id, limit], |r| {
            Ok(ChainedAuditRow {
                event: audit_event(r)?,
                prev_id: r.get(6)?,
                mac: r.get(7)?,
            })
        })
    }

    async fn device(&self, account: &str, device_id: &str) -> Result<Option<DeviceRecord>> {
        self.opt(sql::sqlite::DEVICE, params![device_id, account], |r| {
            Ok(DeviceRecord {
                id: r.get(0)?,
                public_key: r.get(1)?,
                state: parse_state(2, &r.get::<_, String>(2)?)?,
                counter: r.get::<_, i64>(3)? as u64,
                activation_nonce: r.get(4)?,
                created_at: r.get(5)?,
                assurance: r.get(6)?,
            })
        })
    }

    async fn live_device_count(&self, account: &str, pending_since: i64) -> Result<u32> {
        self.one(
            sql::sqlite::LIVE_DEVICE_COUNT,
            params![account, pending_since],
            |r| r.get(0),
        )
    }

    async fn live_devices(&self, account: &str, pending_since: i64) -> Result<Vec<DeviceSummary>> {
        self.all(
            sql::sqlite::LIVE_DEVICES,
            params![account, pending_since],
            |r| {
                let platform: String = r.get(2)?;
                Ok(DeviceSummary {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    platform: Platform::parse(&platform)
                        .ok_or_else(|| invalid_column(2, format!("platform {platform}")))?,
                    state: parse_state(3, &r.get::<_, String>(3)?)?,
                    created_at: r.get(4)?,
                    last_used_at: r.get(5)?,
                    assurance: r.get(6)?,
                })
            },
        )
    }

    async fn all_devices(&self, account: &str) -> Result<Vec<AdminDeviceSummary>> {
        self.all(sql::sqlite::ALL_DEVICES, [account], |r| {
            Ok(AdminDeviceSummary {
                id: r.get(0)?,
                name: r.get(1)?,
                platform: r.get(2)?,
                state: parse_state(3, &r.get::<_, String>(3)?)?,
                created_at: r.get(4)?,
                activated_at: r.get(5)?,
                last_used_at: r.get(6)?,
                re_enablable: r.get(7)?,
                assurance: r.get(8)?,
                assurance_detail: r.get(9)?,
            })
        })
    }

    async fn insert_device(&self, account: &str, device: &NewDeviceRecord, now: i64) -> Result<()> {
        self.exec(
            sql::sqlite::INSERT_DEVICE,
            params![
                device.id,
                account,
                device.public_key,
                device.name,
                device.platform.as_str(),
                device.activation_nonce,
                now,
                device.assurance,
                device.assurance_detail
            ],
        )?;
        Ok(())
    }

    async fn activate_device(
        &self,
        account: &str,
        device_id: &str,
        counter: i64,
        now: i64,
    ) -> Result<bool> {
        let updated = self.exec(
            sql::sqlite::ACTIVATE_DEVICE,
            params![device_id, account, counter, now],
        )?;
        Ok(updated == 1)
    }

    async fn set_device_counter(
        &self,
        device_id: &str,
        counter: i64,
        used_at: Option<i64>,
    ) -> Result<()> {
        let updated = self.exec(
            sql::sqlite::SET_DEVICE_COUNTER,
            params![device_id, counter, used_at],
        )?;
        match updated {
            1 => Ok(()),
            _ => Err(anyhow!(DEVICE_CHANGED).into()),
        }
    }

    async fn disable_device(
        &self,
        account: &str,
        device_id: &str,
        by_operator: bool,
    ) -> Result<()> {
        let by = by_operator.then_some("operator");
        self.exec(sql::sqlite::DISABLE_DEVICE, params![device_id, account, by])?;
        Ok(())
    }

    async fn disable_devices(&self, account: &str) -> Result<u64> {
        self.exec(sql::sqlite::DISABLE_DEVICES, [account])
    }

    async fn forget_operator_disables(&self, account: &str) -> Result<()> {
        self.exec(sql::sqlite::FORGET_OPERATOR_DISABLES, [account])?;
        Ok(())
    }

    async fn enable_device(&self, account: &str, device_id: &str) -> Result<bool> {
        Ok(self.exec(sql::sqlite::ENABLE_DEVICE, params![device_id, account])? == 1)
    }

    async fn insert_session(
        &self,
        step: &StartEnrollmentStep,
        pin_ordinal: Option<u32>,
        sms_code_id: i64,
    ) -> Result<()> {
        self.exec(
            sql::sqlite::INSERT_SESSION,
            params![
                step.session_id,
                step.account,
                step.nonce,
                step.login.as_ref().map(|l| &l.state),
                pin_ordinal,
                sms_code_id,
                step.phone_number,
                step.now,
                step.now + step.ttl as i64,
                step.credential_id,
            ],
        )?;
        Ok(())
    }

    async fn take_session(&self, account: &str, id: &str, now: i64) -> Result<Option<SessionRow>> {
        self.opt(sql::sqlite::TAKE_SESSION, params![id, account, now], |r| {
            Ok(SessionRow {
                pin_ordinal: r.get(0)?,
                sms_code_id: r.get(1)?,
                phone_number: r.get(2)?,
                pin_credential_id: r.get(3)?,
            })
        })
    }

    async fn open_session(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<EnrollmentSession>> {
        self.opt(sql::sqlite::OPEN_SESSION, params![id, account, now], |r| {
            Ok(EnrollmentSession {
                id: r.get(0)?,
                nonce: r.get(1)?,
                login_state: r.get(2)?,
            })
        })
    }

    async fn close_sessions(&self, account: &str, now: i64, logins_only: bool) -> Result<()> {
        self.exec(
            sql::sqlite::CLOSE_SESSIONS,
            params![account, now, logins_only],
        )?;
        Ok(())
    }

    async fn insert_challenge(&self, c: &NewChallenge<'_>) -> Result<()> {
        self.exec(
            sql::sqlite::INSERT_CHALLENGE,
            params![
                c.id,
                c.account,
                c.device_id,
                c.nonce,
                c.login_state,
                c.pin_ordinal,
                c.pin_change,
                c.pin_credential_id,
                c.audience,
                c.created_at,
                c.expires_at
            ],
        )?;
        Ok(())
    }

    async fn take_challenge(
        &self,
        account: &str,
        id: &str,
        now: i64,
        kind: ChallengeKind,
    ) -> Result<Option<UsedChallenge>> {
        let taken = self.opt(
            sql::sqlite::TAKE_CHALLENGE,
            params![id, account, now, kind == ChallengeKind::PinChange],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            },
        )?;
        let Some((device_id, ordinal, pin_change, credential_id, audience)) = taken else {
            return Ok(None);
        };
        let device = self
            .device(account, &device_id)
            .await?
            .ok_or_else(|| anyhow!("a challenge of a device not found"))?;
        Ok(Some(UsedChallenge {
            device,
            ordinal,
            pin_change,
            credential_id,
            audience,
        }))
    }

    async fn open_challenge(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<OtpChallengeRecord>> {
        self.opt(
            sql::sqlite::OPEN_CHALLENGE,
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
    }

    async fn open_unsigned_challenges(&self, device_id: &str, now: i64) -> Result<u32> {
        self.one(
            sql::sqlite::OPEN_UNSIGNED_CHALLENGES,
            params![device_id, now],
            |r| r.get(0),
        )
    }

    async fn close_challenges(&self, account: &str, now: i64, pin_only: bool) -> Result<()> {
        self.exec(
            sql::sqlite::CLOSE_CHALLENGES,
            params![account, now, pin_only],
        )?;
        Ok(())
    }

    async fn latest_code(
        &self,
        account: &str,
        purpose: SmsPurpose,
        phone_number: Option<&str>,
    ) -> Result<Option<CodeRow>> {
        self.opt(
            sql::sqlite::LATEST_CODE,
            params![account, purpose.as_str(), phone_number],
            code_row,
        )
    }

    async fn code(&self, id: i64) -> Result<CodeRow> {
        self.one(sql::sqlite::CODE, [id], code_row)
    }

    async fn set_code_checks(&self, id: i64, checks: u32) -> Result<()> {
        self.exec(sql::sqlite::SET_CODE_CHECKS, params![id, checks])?;
        Ok(())
    }

    async fn set_code_state(&self, id: i64, state: &str) -> Result<()> {
        self.exec(sql::sqlite::SET_CODE_STATE, params![id, state])?;
        Ok(())
    }

    async fn resendable_code(
        &self,
        account: &str,
        purpose: SmsPurpose,
        phone_number: &str,
        now: i64,
        max_checks: u32,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        self.opt(
            sql::sqlite::RESENDABLE_CODE,
            params![account, purpose.as_str(), phone_number, now, max_checks],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
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
        self.exec(
            sql::sqlite::INSERT_CODE,
            params![
                account,
                purpose.as_str(),
                phone_number,
                nonce,
                now,
                expires_at
            ],
        )?;
        Ok(())
    }

    async fn lock_number(&self, _phone_number: &str) -> Result<()> {
        Ok(())
    }

    async fn lock_address(&self, _address: &str) -> Result<()> {
        Ok(())
    }

    async fn sends(&self, of: SendsOf<'_>, since: i64) -> Result<(i64, Option<i64>)> {
        let (sql, value) = match of {
            SendsOf::Account(account) => (sql::sqlite::SENDS_OF_ACCOUNT, account),
            SendsOf::Number(number) => (sql::sqlite::SENDS_TO_NUMBER, number),
        };
        self.one(sql, params![value, since], |r| Ok((r.get(0)?, r.get(1)?)))
    }

    async fn address_sends(&self, address: &str, since: i64) -> Result<AddressSends> {
        Ok(AddressSends {
            last: self.opt(sql::sqlite::LAST_ADDRESS_SEND, [address], |r| r.get(0))?,
            first_in_window: self.opt(
                sql::sqlite::FIRST_ADDRESS_SEND_IN_WINDOW,
                params![address, since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?,
        })
    }

    async fn record_send(
        &self,
        account: &str,
        phone_number: &str,
        now: i64,
        address: Option<(&str, i64)>,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO sms_sends (account, phone_number, sent_at, client_address)
             VALUES (?1, ?2, ?3, ?4)",
            params![account, phone_number, now, address.map(|(a, _)| a)],
        )?;
        if let Some((address, seq)) = address {
            self.exec(
                "INSERT INTO sms_address_sends (send_id, client_address, seq, sent_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![self.0.last_insert_rowid(), address, seq, now],
            )?;
        }
        Ok(())
    }

    async fn outcome(&self, account: &str, key: &str) -> Result<Option<(String, String)>> {
        self.opt(sql::sqlite::OUTCOME, params![account, key], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }

    async fn store_outcome(
        &self,
        account: &str,
        key: &str,
        scope: &str,
        outcome: &str,
        now: i64,
    ) -> Result<()> {
        self.exec(
            sql::sqlite::STORE_OUTCOME,
            params![account, key, scope, outcome, now],
        )?;
        Ok(())
    }

    async fn insert_otp(&self, otp: &NewOtp<'_>) -> Result<()> {
        self.exec(
            sql::sqlite::INSERT_OTP,
            params![
                otp.mac,
                otp.account,
                otp.device_id,
                otp.with_pin,
                otp.issued_at,
                otp.expires_at,
                otp.audience
            ],
        )?;
        Ok(())
    }

    async fn use_otp(
        &self,
        mac: &[u8],
        now: i64,
        relying_party: &str,
    ) -> Result<Option<VerifiedOtp>> {
        // SQLite's UPDATE … FROM cannot return the joined account's columns: the RETURNING
        // subqueries read them.
        self.opt(
            sql::sqlite::USE_OTP,
            params![mac, now, relying_party],
            |r| {
                Ok(VerifiedOtp {
                    subject: r.get(0)?,
                    device_id: r.get(1)?,
                    with_pin: r.get(2)?,
                    issued_at: r.get(3)?,
                    pin_set_at: r.get(4)?,
                    pin_set_by: r
                        .get::<_, Option<String>>(5)?
                        .as_deref()
                        .and_then(PinOrigin::parse),
                    pin_recovered_at: r.get(6)?,
                    assurance: r.get(7)?,
                })
            },
        )
    }

    async fn lock_purge(&self) -> Result<bool> {
        Ok(true)
    }

    async fn purge(&self, sql: &str, bound: i64) -> Result<u64> {
        self.exec(sql, [bound])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for `sql`, one line per step.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        // Parameters left unbound: only the plan is wanted.
        let mut rows = statement.raw_query();
        let mut lines = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            lines.push(row.get::<_, String>(3).unwrap());
        }
        lines.join("\n")
    }

    /// Pragmas are per connection: these must be the writer's, the one that commits.
    #[tokio::test]
    async fn the_writer_checkpoints_every_10000_pages_and_cuts_the_wal_file_back() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::open(&dir.path().join("pims.sqlite3"), AuditKey::new([7; 32])).unwrap();
        assert_eq!(store.pragma("wal_autocheckpoint").await.unwrap(), 10_000);
        assert_eq!(store.pragma("journal_size_limit").await.unwrap(), 64 << 20);
        store.close_db().await;
    }

    #[test]
    fn challenges_are_found_by_account_or_device_and_no_index_holds_when_one_was_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pims.sqlite3");
        let _store = SqliteStore::open(&path, AuditKey::new([7; 32])).unwrap();
        let conn = Connection::open(&path).unwrap();
        assert_eq!(
            plan(&conn, sql::sqlite::CLOSE_CHALLENGES),
            "SEARCH otp_challenges USING INDEX otp_challenges_of_account (account=?)"
        );
        assert_eq!(
            plan(&conn, sql::sqlite::OPEN_UNSIGNED_CHALLENGES),
            "SEARCH otp_challenges USING INDEX otp_challenges_by_device_expiry \
             (device_id=? AND expires_at>?)"
        );
        // Taking a challenge sets `used_at`: with no index holding it, the update writes the
        // challenge's row and nothing else.
        let indexed: Vec<String> = conn
            .prepare(
                "SELECT i.name || '.' || c.name FROM pragma_index_list('otp_challenges') i,
                        pragma_index_info(i.name) c ORDER BY 1",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            indexed,
            [
                "otp_challenges_by_device_expiry.device_id",
                "otp_challenges_by_device_expiry.expires_at",
                "otp_challenges_of_account.account",
                "sqlite_autoindex_otp_challenges_1.id",
            ]
        );
    }
}
