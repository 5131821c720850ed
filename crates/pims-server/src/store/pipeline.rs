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

/// How many rows a write sent ahead must have changed, checked at the commit.
#[derive(Clone, Copy)]
pub(super) enum Changes {
    Any,
    /// Exactly one, else the step fails (and rolls back) with this internal error.
    One(&'static str),
}

impl Changes {
    pub fn check(self, changed: u64) -> Result<()> {
        match self {
            Changes::One(otherwise) if changed != 1 => Err(anyhow!(otherwise).into()),
            _ => Ok(()),
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

    /// Sends a write now (in its place) and checks its answer at the end.
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
            let changed = client.execute_raw(&stmt, owned.iter()).await?;
            changes.check(changed)
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
