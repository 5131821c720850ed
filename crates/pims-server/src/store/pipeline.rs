//! A PostgreSQL step as one pipeline: its statements go on the wire in the order the step
//! issues them, without waiting for one another's answers unless the step needs an answer to
//! decide. `BEGIN` travels with the first statement; a write whose result the step does not read
//! is sent at once and its answer checked at the end, when `COMMIT` travels with the last ones.
//! The server executes a connection's statements one after another, so a lock statement still
//! completes before anything sent after it starts: a step may join its lock with the reads it
//! guards, and each of them sees every commit made before the lock was granted.
//!
//! tokio-postgres puts a statement on the wire at its future's first poll ([`send_now`]); a
//! statement is prepared (once per connection) before its turn comes, so a first preparation
//! cannot let a later statement overtake it.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

use anyhow::anyhow;
use futures::future::BoxFuture;
use futures::task::noop_waker_ref;
use tokio::sync::Notify;
use tokio_postgres::types::{private::BytesMut, Format, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

use crate::error::{Error, Result};

/// Polls `fut` once, which sends its statement; its answer is awaited later.
fn send_now<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    match Pin::new(fut).poll(&mut Context::from_waker(noop_waker_ref())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// Places in the order statements were issued; each is sent only when every earlier place has
/// been sent or given up.
#[derive(Default)]
struct SendOrder {
    places: Mutex<Places>,
    turn: Notify,
}

#[derive(Default)]
struct Places {
    issued: u64,
    next: u64,
    done_early: BTreeSet<u64>,
}

/// A statement's place in the order; dropping it (sent, or given up on an error) lets the next
/// place go.
pub(super) struct Place<'a> {
    order: &'a SendOrder,
    n: u64,
}

impl SendOrder {
    fn place(&self) -> Place<'_> {
        let mut places = self.places.lock().expect("send order");
        let n = places.issued;
        places.issued += 1;
        Place { order: self, n }
    }
}

impl Place<'_> {
    /// Waits until every earlier place is done.
    async fn turn(&self) {
        loop {
            let notified = self.order.turn.notified();
            if self.order.places.lock().expect("send order").next == self.n {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut places = self.order.places.lock().expect("send order");
        places.done_early.insert(self.n);
        loop {
            let next = places.next;
            if !places.done_early.remove(&next) {
                break;
            }
            places.next += 1;
        }
        drop(places);
        self.order.turn.notify_waiters();
    }
}

/// A parameter already encoded for its statement's type, so that a write sent now and
/// answered at the commit owns what it sends.
struct Encoded {
    bytes: Option<Vec<u8>>,
    format: Format,
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoded")
    }
}

impl ToSql for Encoded {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.bytes {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    /// Checked when encoded, against the statement's own types.
    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.to_sql(ty, out)
    }

    fn encode_format(&self, _: &Type) -> Format {
        self.format
    }
}

fn encode(stmt: &Statement, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Encoded>> {
    if params.len() != stmt.params().len() {
        return Err(anyhow!("{} parameters for {}", params.len(), stmt.params().len()).into());
    }
    params
        .iter()
        .zip(stmt.params())
        .map(|(param, ty)| {
            let mut out = BytesMut::new();
            let is_null = param
                .to_sql_checked(ty, &mut out)
                .map_err(|e| anyhow!("encoding a {ty} parameter: {e}"))?;
            Ok(Encoded {
                bytes: matches!(is_null, IsNull::No).then(|| out.to_vec()),
                format: param.encode_format(ty),
            })
        })
        .collect()
}

/// How many rows a write must change.
#[derive(Clone, Copy)]
pub(super) enum Changes {
    Any,
    /// Exactly one, else the step fails and rolls back with this internal error.
    One(&'static str),
}

impl Changes {
    /// The check of a write answered at once.
    pub fn check(self, changed: u64) -> Result<()> {
        match self {
            Changes::One(otherwise) if changed != 1 => Err(anyhow!(otherwise).into()),
            _ => Ok(()),
        }
    }

    /// `sql` for a write sent ahead (a single-row `INSERT` or `UPDATE` for [`Changes::One`]):
    /// the check is the server's, so that a refused write aborts the transaction and the
    /// `COMMIT` already sent behind it commits nothing (a division by zero when no row changed).
    pub fn guarded(self, sql: &str) -> std::borrow::Cow<'_, str> {
        match self {
            Changes::Any => sql.into(),
            Changes::One(_) => format!(
                "WITH changed AS ({sql} RETURNING 1) SELECT 1 / (SELECT COUNT(*) FROM changed)::INT"
            )
            .into(),
        }
    }

    /// The answer of a write sent ahead with [`Self::guarded`].
    fn answer(self, answer: std::result::Result<u64, tokio_postgres::Error>) -> Result<()> {
        match (self, answer) {
            (_, Ok(_)) => Ok(()),
            (Changes::One(otherwise), Err(e))
                if e.code() == Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO) =>
            {
                Err(anyhow!(otherwise).into())
            }
            (_, Err(e)) => Err(e.into()),
        }
    }
}

/// One step's transaction on one connection.
pub(super) struct Pipeline<'a> {
    client: &'a Client,
    order: SendOrder,
    /// `BEGIN` and the writes sent ahead, answered at the end.
    ahead: Mutex<Vec<BoxFuture<'a, Result<()>>>>,
    open: AtomicBool,
}

impl<'a> Pipeline<'a> {
    /// Sends `BEGIN`; it travels with the step's first statement.
    pub fn begin(client: &'a Client) -> Pipeline<'a> {
        let pipeline = Pipeline {
            client,
            order: SendOrder::default(),
            ahead: Mutex::default(),
            open: AtomicBool::new(true),
        };
        pipeline.send_ahead(Box::pin(
            async move { Ok(client.batch_execute("BEGIN").await?) },
        ));
        pipeline
    }

    fn send_ahead(&self, mut fut: BoxFuture<'a, Result<()>>) {
        let fut: BoxFuture<'a, Result<()>> = match send_now(&mut fut) {
            Some(done) => Box::pin(std::future::ready(done)),
            None => fut,
        };
        self.ahead.lock().expect("pipeline").push(fut);
    }

    /// Takes the next place; then the statement is prepared, then it waits for its turn.
    pub fn place(&self) -> Place<'_> {
        self.order.place()
    }

    /// Sends a write now (in its place) and checks its answer at the end; `stmt` is
    /// [`Changes::guarded`]. Answers are read only then, so a write sent ahead returns no rows
    /// or one small row.
    pub async fn write_ahead(
        &self,
        place: Place<'_>,
        stmt: Statement,
        params: &[&(dyn ToSql + Sync)],
        changes: Changes,
    ) -> Result<()> {
        let owned = encode(&stmt, params)?;
        place.turn().await;
        let client = self.client;
        self.send_ahead(Box::pin(async move {
            changes.answer(client.execute_raw(&stmt, owned.iter()).await)
        }));
        drop(place);
        Ok(())
    }

    /// Sends `fut`'s statement in `place` and returns its answer.
    pub async fn in_turn<F, T>(&self, place: Place<'_>, fut: F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    {
        place.turn().await;
        let mut fut = std::pin::pin!(fut);
        let early = send_now(&mut fut);
        drop(place);
        Ok(match early {
            Some(out) => out?,
            None => fut.await?,
        })
    }

    /// Commits what the step wrote unless it failed internally (see the [`Store`] contract),
    /// with the writes still in flight; a write that failed fails the step, and then nothing of
    /// it was committed.
    ///
    /// [`Store`]: super::Store
    pub async fn finish<T>(&self, result: Result<T>) -> Result<T> {
        let end = match result {
            Err(Error::Internal(_)) => "ROLLBACK",
            _ => "COMMIT",
        };
        let client = self.client;
        if end == "COMMIT" {
            // A statement of the step whose answer nobody awaited (a joined branch dropped
            // after another failed) may have aborted the transaction; PostgreSQL then answers
            // COMMIT as ROLLBACK without an error, but refuses this.
            self.send_ahead(Box::pin(async move {
                Ok(client.batch_execute("SELECT 1").await?)
            }));
        }
        self.send_ahead(Box::pin(
            async move { Ok(client.batch_execute(end).await?) },
        ));
        self.open.store(false, Ordering::Relaxed);
        let ahead = std::mem::take(&mut *self.ahead.lock().expect("pipeline"));
        let failed = futures::future::join_all(ahead)
            .await
            .into_iter()
            .find_map(Result::err);
        match (result, failed) {
            (Err(Error::Internal(e)), _) => Err(Error::Internal(e)),
            // What the step answered did not happen.
            (_, Some(failed)) => Err(failed),
            (result, None) => result,
        }
    }
}

/// A step abandoned half-way (its request dropped) rolls back before the connection serves
/// anyone else: `ROLLBACK` is queued behind whatever was sent.
impl Drop for Pipeline<'_> {
    fn drop(&mut self) {
        if self.open.load(Ordering::Relaxed) {
            send_now(&mut Box::pin(self.client.batch_execute("ROLLBACK")));
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use tokio_postgres::NoTls;

    /// A connection to a new database with table `t`, and the cluster it lives on (kept
    /// running while held).
    async fn client(name: &str) -> Option<(Client, impl Drop)> {
        let cluster = crate::testing::shared_cluster().expect("starting PostgreSQL")?;
        let url = cluster.create_database(name).await.unwrap();
        let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
            .batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
            .await
            .unwrap();
        Some((client, cluster))
    }

    async fn rows(client: &Client) -> i64 {
        let row = client.query_one("SELECT COUNT(*) FROM t", &[]).await;
        row.unwrap().get(0)
    }

    /// A step that sent the insert of one row of `t`.
    async fn step_that_inserted_a_row(client: &Client) -> Pipeline<'_> {
        let step = Pipeline::begin(client);
        let insert = client.prepare("INSERT INTO t VALUES (1, 1)").await.unwrap();
        step.write_ahead(step.place(), insert, &[], Changes::Any)
            .await
            .unwrap();
        step
    }

    fn internal(result: Result<()>) -> String {
        match result {
            Err(Error::Internal(e)) => format!("{e:#}"),
            other => panic!("not an internal failure: {other:?}"),
        }
    }

    /// `COMMIT` is on the wire before the answers are read; a write its guard refused still
    /// commits nothing of the step.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_its_guard_refuses_rolls_back_the_whole_step() {
        let Some((client, _cluster)) = client("pipeline_guard").await else {
            return;
        };
        let step = step_that_inserted_a_row(&client).await;
        let refused = Changes::One("no such row");
        let update = client
            .prepare(&refused.guarded("UPDATE t SET v = 2 WHERE id = 2"))
            .await
            .unwrap();
        step.write_ahead(step.place(), update, &[], refused)
            .await
            .unwrap();
        assert_eq!(internal(step.finish(Ok(())).await), "no such row");
        assert_eq!(rows(&client).await, 0);
    }

    /// A statement whose answer nobody awaited (a joined branch dropped) and that failed
    /// aborted the transaction: the step fails, nothing of it is committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_nobody_awaited_fails_the_step() {
        let Some((client, _cluster)) = client("pipeline_unawaited").await else {
            return;
        };
        let step = step_that_inserted_a_row(&client).await;
        let duplicate = client.prepare("INSERT INTO t VALUES (1, 2)").await.unwrap();
        let mut sent = Box::pin(step.in_turn(step.place(), client.execute(&duplicate, &[])));
        assert!(futures::poll!(&mut sent).is_pending());
        drop(sent);
        let failed = internal(step.finish(Ok(())).await);
        assert!(failed.contains("aborted"), "{failed}");
        assert_eq!(rows(&client).await, 0);
    }
}
