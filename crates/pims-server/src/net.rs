//! The listener: accepts connections within the caps (per address, per address block, in all;
//! at the global cap the oldest connection not yet served makes room), serves HTTP/1.1 on each
//! with header, keep-alive and request deadlines, and shuts down gracefully. Nothing here needs a request
//! to be authenticated, so this is what an anonymous attacker meets first.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::config::HttpLimits;

/// The key under which a client address is counted, for every per-address limit (connections
/// here, SMS sends in the store): IPv4 exactly, IPv6 by its /64 (one subscriber's prefix holds
/// 2^64 addresses, so per-address limits on full IPv6 addresses are no limit at all), and an
/// IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
    }
}

/// The address block a client belongs to, for its share of the connection cap: an IPv4 /24
/// and an IPv6 /48 (the smallest blocks routed between networks, and what one site or one
/// rented subnet gets), an IPv4-mapped IPv6 address as its IPv4 block. An attacker can hold
/// many addresses of one block (64 on one host's loopback, a /64 per IPv6 subscriber), rarely
/// many blocks.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum AddressBlock {
    V4([u8; 3]),
    V6([u16; 3]),
}

fn address_block(ip: IpAddr) -> AddressBlock {
    let v4 = |v4: std::net::Ipv4Addr| {
        let o = v4.octets();
        AddressBlock::V4([o[0], o[1], o[2]])
    };
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(a) => v4(a),
            None => {
                let s = v6.segments();
                AddressBlock::V6([s[0], s[1], s[2]])
            }
        },
    }
}

impl std::fmt::Display for AddressBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            AddressBlock::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            AddressBlock::V6([a, b, c]) => {
                write!(f, "{}/48", std::net::Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0))
            }
        }
    }
}

/// The part of `max_connections` one address block may hold: an eighth. Idle connections
/// cannot hold the cap (the oldest of those not yet served makes room for a newcomer, see
/// [`ConnectionCaps::admit`]), but served, kept-alive ones can; with a share, whoever holds
/// them needs at least eight blocks to fill the cap, not eight addresses of one host. An eighth
/// (512 of the default 4096, four addresses at the default `max_connections_per_address`)
/// leaves a network behind NAT room for several busy public addresses.
const BLOCK_SHARE_DIVISOR: usize = 8;

/// Open connections, in all, per client key and per address block, and the admitted ones not
/// yet served.
struct ConnectionCaps {
    table: Mutex<Table>,
    max_total: usize,
    /// `None`: not capped per address nor per block (behind a trusted balancer, every
    /// connection comes from it).
    max_per_key: Option<usize>,
    max_per_block: Option<usize>,
    refusals: RateLimited,
    evictions: RateLimited,
    epoch: Instant,
}

#[derive(Default)]
struct Table {
    total: usize,
    per_key: HashMap<String, usize>,
    per_block: HashMap<AddressBlock, usize>,
    /// Admitted connections that have not started a request yet (still waiting for or reading
    /// the first request's head), oldest first: the ones closed to make room at the cap.
    unserved: BTreeMap<u64, Arc<Slot>>,
    next_id: u64,
}

/// One admitted connection's place. `served` and `evicted` change under the table's lock,
/// and at most one of them is ever set.
struct Slot {
    id: u64,
    key: String,
    block: AddressBlock,
    /// A request has started on it: never evicted.
    served: AtomicBool,
    /// Closed to make room; its place is already given to another.
    evicted: AtomicBool,
    /// Wakes the connection's task to close it once evicted.
    close: Notify,
}

impl Table {
    fn count(&mut self, slot: &Slot) {
        self.total += 1;
        *self.per_key.entry(slot.key.clone()).or_default() += 1;
        *self.per_block.entry(slot.block).or_default() += 1;
    }

    fn release(&mut self, slot: &Slot) {
        self.total -= 1;
        if let Some(n) = self.per_key.get_mut(&slot.key) {
            *n -= 1;
            if *n == 0 {
                self.per_key.remove(&slot.key);
            }
        }
        if let Some(n) = self.per_block.get_mut(&slot.block) {
            *n -= 1;
            if *n == 0 {
                self.per_block.remove(&slot.block);
            }
        }
    }
}

/// One admitted connection; releases its place when dropped (unless evicted: its place was
/// released then).
struct Admitted {
    caps: Arc<ConnectionCaps>,
    slot: Arc<Slot>,
}

impl Admitted {
    /// Called as a request starts: from then on the connection is never evicted. `false` when
    /// it was evicted first (its task is closing it).
    fn start_request(&self) -> bool {
        if self.slot.served.load(Ordering::Relaxed) {
            return true;
        }
        let mut table = self.caps.table.lock().unwrap();
        if self.slot.evicted.load(Ordering::Relaxed) {
            return false;
        }
        self.slot.served.store(true, Ordering::Relaxed);
        table.unserved.remove(&self.slot.id);
        true
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut table = self.caps.table.lock().unwrap();
        if !self.slot.evicted.load(Ordering::Relaxed) {
            table.unserved.remove(&self.slot.id);
            table.release(&self.slot);
        }
    }
}

const WARNING_INTERVAL_SECONDS: u64 = 10;

/// Events of one kind, logged at most once per [`WARNING_INTERVAL_SECONDS`] so that a flood
/// writes one line per interval.
#[derive(Default)]
struct RateLimited {
    since_last: AtomicU64,
    /// Seconds since the caps' `epoch` (plus one interval) of the last line.
    last: AtomicU64,
}

impl RateLimited {
    /// Counts one event; `Some(events since the last line)` when a line is due now.
    fn count(&self, epoch: Instant) -> Option<u64> {
        let events = self.since_last.fetch_add(1, Ordering::Relaxed) + 1;
        let now = epoch.elapsed().as_secs() + WARNING_INTERVAL_SECONDS;
        let last = self.last.load(Ordering::Relaxed);
        if now >= last + WARNING_INTERVAL_SECONDS
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.since_last.store(0, Ordering::Relaxed);
            return Some(events);
        }
        None
    }
}

impl ConnectionCaps {
    fn new(limits: &HttpLimits, trust_forwarded_for: bool) -> ConnectionCaps {
        let share = (limits.max_connections / BLOCK_SHARE_DIVISOR).max(1);
        ConnectionCaps {
            table: Mutex::new(Table::default()),
            max_total: limits.max_connections,
            max_per_key: (!trust_forwarded_for).then_some(limits.max_connections_per_address),
            max_per_block: (!trust_forwarded_for).then_some(share),
            refusals: RateLimited::default(),
            evictions: RateLimited::default(),
            epoch: Instant::now(),
        }
    }

    /// Admits a connection from `peer`, or `None` to close it at once. Over its address's cap
    /// or its block's share, it is refused. At the global cap, the oldest connection that has
    /// not started a request yet is closed and the newcomer takes its place: idle connections
    /// cannot keep clients out, while a connection serving a request or served and kept alive
    /// is never closed for a newcomer. Only when every open connection is such a one is the
    /// newcomer refused.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admitted> {
        let key = client_key(peer);
        let block = address_block(peer);
        let mut table = self.table.lock().unwrap();
        let mine = table.per_key.get(&key).copied().unwrap_or(0);
        if self.max_per_key.is_some_and(|max| mine >= max) {
            drop(table);
            self.refused(&key, "max_connections_per_address");
            return None;
        }
        let my_block = table.per_block.get(&block).copied().unwrap_or(0);
        if self.max_per_block.is_some_and(|max| my_block >= max) {
            drop(table);
            self.refused(
                &block.to_string(),
                "max_connections share of an address block",
            );
            return None;
        }
        let mut evicted = None;
        if table.total >= self.max_total {
            let Some((_, victim)) = table.unserved.pop_first() else {
                drop(table);
                self.refused(&key, "max_connections");
                return None;
            };
            victim.evicted.store(true, Ordering::Relaxed);
            table.release(&victim);
            // Its task closes the socket as soon as it runs (so open sockets may exceed the cap
            // by the evicted ones not yet closed, for that instant); the place is the
            // newcomer's now.
            victim.close.notify_one();
            evicted = Some(victim);
        }
        let slot = Arc::new(Slot {
            id: table.next_id,
            key,
            block,
            served: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
        });
        table.next_id += 1;
        table.count(&slot);
        table.unserved.insert(slot.id, slot.clone());
        drop(table);
        if let Some(victim) = evicted {
            if let Some(evicted) = self.evictions.count(self.epoch) {
                tracing::warn!(
                    client = %victim.key,
                    cap = "max_connections",
                    evicted_since_last_warning = evicted,
                    "connection closed before its first request to admit another: \
                     the connection cap is reached"
                );
            }
        }
        Some(Admitted {
            caps: self.clone(),
            slot,
        })
    }

    fn refused(&self, client: &str, cap: &'static str) {
        if let Some(refused) = self.refusals.count(self.epoch) {
            tracing::warn!(
                client = %client,
                cap,
                refused_since_last_warning = refused,
                "connection refused: over the connection cap"
            );
        }
    }
}

/// Activity of one connection, for the keep-alive deadline.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// End of the last response; `None` before the first (the header deadline covers that).
    last_done: Mutex<Option<Instant>>,
    changed: Notify,
}

struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.changed.notify_waiters();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_done.lock().unwrap() = Some(Instant::now());
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_waiters();
    }
}

impl Activity {
    /// Resolves once the connection has had no request in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let changed = self.changed.notified();
            let mut changed = pin!(changed);
            changed.as_mut().enable();
            let last = *self.last_done.lock().unwrap();
            match last {
                Some(at) if self.in_flight.load(Ordering::Relaxed) == 0 => {
                    let deadline = at + idle;
                    if Instant::now() >= deadline {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline.into()) => {}
                        _ = changed => {}
                    }
                }
                _ => changed.await,
            }
        }
    }
}

/// The router with the request-level bounds: body size (413) and whole-request deadline.
pub fn bounded(app: Router, limits: &HttpLimits) -> Router {
    let timeout = Duration::from_secs(limits.request_timeout_seconds);
    app.layer(middleware::from_fn(move |req: Request, next: Next| {
        request_deadline(timeout, req, next)
    }))
    .layer(DefaultBodyLimit::max(limits.max_body_bytes))
}

/// 408 when the deadline passes while the client is still sending its body (its fault), else
/// 503 (ours: the handler or the database was too slow).
async fn request_deadline(timeout: Duration, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let received = Arc::new(AtomicBool::new(body.is_end_stream()));
    let body = Body::new(Tracked {
        inner: body,
        received: received.clone(),
    });
    match tokio::time::timeout(timeout, next.run(Request::from_parts(parts, body))).await {
        Ok(response) => response,
        Err(_) => {
            let status = if received.load(Ordering::Relaxed) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::REQUEST_TIMEOUT
            };
            tracing::warn!(status = status.as_u16(), "request timed out");
            (status, [(header::CONNECTION, "close")], "request timed out").into_response()
        }
    }
}

/// A request body that records when it has been read to its end.
struct Tracked {
    inner: Body,
    received: Arc<AtomicBool>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.received.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets requests in
/// flight finish and returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    trust_forwarded_for: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let caps = Arc::new(ConnectionCaps::new(&limits, trust_forwarded_for));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_seconds))
        .keep_alive(true);
    let keep_alive = Duration::from_secs(limits.keep_alive_timeout_seconds);
    // Connection tasks hold a receiver each; `closed()` resolves when the last one is gone.
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(admitted) = caps.admit(peer.ip()) else {
            drop(stream); // Closed at once, not queued.
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let http = http.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let admitted = Arc::new(admitted);
            let slot = admitted.slot.clone();
            let activity = Arc::new(Activity::default());
            let for_requests = activity.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let in_flight = InFlight::begin(&for_requests);
                // Evicted between its head arriving and this call: its task is closing it.
                let serving = admitted.start_request();
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let app = app.clone();
                async move {
                    let response = if serving {
                        app.oneshot(req).await
                    } else {
                        Ok(evicted_response())
                    };
                    drop(in_flight);
                    response
                }
            });
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let mut conn = pin!(conn);
            let mut stopping = false;
            let mut idle_closing = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = activity.idle_for(keep_alive), if !idle_closing => {
                        idle_closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    // Evicted to admit another (it had not started a request): closed at once.
                    _ = slot.close.notified() => break,
                }
            }
            drop(stop);
        });
    }
    drop(listener);
    drop(stop_rx);
    // Every connection finishes what it is doing, then closes.
    let _ = stop_tx.send(());
    stop_tx.closed().await;
    Ok(())
}

fn evicted_response() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONNECTION, "close")],
        "over the connection cap",
    )
        .into_response()
}

// ---- admin-token failures ---------------------------------------------------------------

/// Wrong admin tokens one client address may present in [`FAILURE_WINDOW_SECONDS`] before its
/// further wrong ones are answered slowly.
pub const FREE_FAILURES_PER_ADDRESS: u32 = 5;
/// Wrong admin tokens from all addresses together in a window before every further wrong one is
/// answered slowly too (many addresses guessing at once).
pub const FREE_FAILURES_IN_ALL: u32 = 100;
pub const FAILURE_WINDOW_SECONDS: i64 = 60;
/// The longest a wrong token waits for its 401.
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(10);
/// Addresses tracked before expired windows are swept.
const SWEEP_ABOVE: usize = 10_000;

/// Admin-token failures per client address ([`client_key`]) and in all, in fixed windows.
///
/// A wrong token is never an address's last word: the right token is always accepted at once
/// (anyone behind the helpdesk's NAT could otherwise lock its operators out). Wrong ones are
/// answered more and more slowly past the free ones, per address and in all: a 32+ character
/// token is not guessable online anyway, so what matters is that guessing is slow, costs the
/// server nothing but a sleeping task (connections are capped), and shows in the log.
///
/// In process, not in the database: each replica slows its own guesses.
#[derive(Default)]
pub struct AdminFailures {
    windows: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    by_address: HashMap<String, (i64, u32)>,
    all: (i64, u32),
}

/// Counts one failure in a fixed window starting at the first one; the count in the window.
fn count_in_window(window: &mut (i64, u32), now: i64) -> u32 {
    if window.1 == 0 || now >= window.0 + FAILURE_WINDOW_SECONDS {
        *window = (now, 0);
    }
    window.1 += 1;
    window.1
}

/// One second per failure past the free ones for an address, a tenth of one per failure past
/// the free ones in all; the larger, at most [`MAX_FAILURE_DELAY`].
pub fn failure_delay(of_address: u32, in_all: u32) -> Duration {
    let by_address =
        Duration::from_secs(of_address.saturating_sub(FREE_FAILURES_PER_ADDRESS) as u64);
    let by_all = Duration::from_millis(100 * in_all.saturating_sub(FREE_FAILURES_IN_ALL) as u64);
    by_address.max(by_all).min(MAX_FAILURE_DELAY)
}

/// A counted failure: how many in the window, and how long to wait before answering it.
pub(crate) struct Failure {
    pub of_address: u32,
    pub delay: Duration,
}

impl AdminFailures {
    pub(crate) fn record(&self, client: &str, now: i64) -> Failure {
        let mut windows = self.windows.lock().unwrap();
        if windows.by_address.len() > SWEEP_ABOVE {
            windows
                .by_address
                .retain(|_, (start, _)| now < *start + FAILURE_WINDOW_SECONDS);
        }
        let of_address = count_in_window(
            windows
                .by_address
                .entry(client.to_string())
                .or_insert((now, 0)),
            now,
        );
        let in_all = count_in_window(&mut windows.all, now);
        Failure {
            of_address,
            delay: failure_delay(of_address, in_all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_admin_tokens_wait_longer_past_the_free_ones_per_address_and_in_all() {
        assert_eq!(failure_delay(5, 5), Duration::ZERO);
        assert_eq!(failure_delay(6, 6), Duration::from_secs(1));
        assert_eq!(failure_delay(8, 8), Duration::from_secs(3));
        assert_eq!(failure_delay(1, 100), Duration::ZERO);
        assert_eq!(failure_delay(1, 120), Duration::from_secs(2));
        assert_eq!(failure_delay(1_000, 1), MAX_FAILURE_DELAY);
        assert_eq!(failure_delay(1, 1_000_000), MAX_FAILURE_DELAY);

        let failures = AdminFailures::default();
        for n in 1..=5 {
            let f = failures.record("a", 0);
            assert_eq!((f.of_address, f.delay), (n, Duration::ZERO));
        }
        assert_eq!(failures.record("a", 59).delay, Duration::from_secs(1));
        // Another address starts free; a new window starts the address over.
        assert_eq!(failures.record("b", 59).delay, Duration::ZERO);
        assert_eq!(failures.record("a", 60).of_address, 1);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix() {
        let key = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_ne!(key("203.0.113.7"), key("203.0.113.8"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(
            key("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            key("2001:db8:1:2:0:0:0:1")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
    }

    #[test]
    fn connection_shares_count_ipv4_by_24_and_ipv6_by_48() {
        let block = |s: &str| address_block(s.parse().unwrap()).to_string();
        assert_eq!(block("203.0.113.7"), "203.0.113.0/24");
        assert_eq!(block("203.0.113.7"), block("203.0.113.250"));
        assert_ne!(block("203.0.113.7"), block("203.0.114.7"));
        assert_eq!(block("::ffff:203.0.113.7"), "203.0.113.0/24");
        assert_eq!(block("2001:db8:1:2::1"), "2001:db8:1::/48");
        assert_eq!(block("2001:db8:1:2::1"), block("2001:db8:1:ffff:1::9"));
        assert_ne!(block("2001:db8:1::1"), block("2001:db8:2::1"));
        // The per-address key is unchanged: a /24 is many addresses, a /48 many /64s.
        assert_ne!(
            client_key("203.0.113.7".parse().unwrap()),
            block("203.0.113.7")
        );
    }

    #[test]
    fn at_the_global_cap_the_oldest_unserved_connection_makes_room() {
        let limits = HttpLimits {
            max_connections: 3,
            max_connections_per_address: 10,
            ..HttpLimits::default()
        };
        let caps = Arc::new(ConnectionCaps::new(&limits, false));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let served = caps.admit(ip("10.0.1.1")).unwrap();
        assert!(served.start_request());
        let idle_old = caps.admit(ip("10.0.2.1")).unwrap();
        let idle_new = caps.admit(ip("10.0.3.1")).unwrap();
        // Full: a newcomer takes the oldest unserved one's place, not the served one's.
        let newcomer = caps.admit(ip("10.0.4.1")).unwrap();
        assert!(idle_old.slot.evicted.load(Ordering::Relaxed));
        assert!(!idle_new.slot.evicted.load(Ordering::Relaxed));
        assert!(!idle_old.start_request());
        assert_eq!(caps.table.lock().unwrap().total, 3);
        // The evicted one's place was released once; dropping it releases nothing more.
        drop(idle_old);
        assert_eq!(caps.table.lock().unwrap().total, 3);
        assert!(newcomer.start_request());
        assert!(idle_new.start_request());
        // Everyone served: refused.
        assert!(caps.admit(ip("10.0.5.1")).is_none());
        drop(served);
        let table = caps.table.lock().unwrap();
        assert_eq!(table.total, 2);
        assert!(table.unserved.is_empty());
        assert_eq!(table.per_block.len(), 2);
        assert_eq!(table.per_key.len(), 2);
    }
}
