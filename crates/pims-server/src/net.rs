//! The listener: accepts connections within the caps, serves HTTP/1.1 on each with header,
//! keep-alive and request deadlines, and shuts down gracefully. Nothing here needs a request
//! to be authenticated, so this is what an anonymous attacker meets first.

use std::collections::HashMap;
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

/// Open connections, in all and per client key.
struct ConnectionCaps {
    total: AtomicUsize,
    per_key: Mutex<HashMap<String, usize>>,
    max_total: usize,
    /// `None`: not capped per address (behind a trusted balancer).
    max_per_key: Option<usize>,
    refused: AtomicU64,
    /// Seconds since `epoch` of the last warning, so a flood logs one line per interval.
    last_warning: AtomicU64,
    epoch: Instant,
}

/// One admitted connection; releases its place when dropped.
struct Admitted {
    caps: Arc<ConnectionCaps>,
    key: String,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.caps.total.fetch_sub(1, Ordering::Relaxed);
        let mut per_key = self.caps.per_key.lock().unwrap();
        if let Some(n) = per_key.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                per_key.remove(&self.key);
            }
        }
    }
}

const WARNING_INTERVAL_SECONDS: u64 = 10;

impl ConnectionCaps {
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admitted> {
        let key = client_key(peer);
        let mut per_key = self.per_key.lock().unwrap();
        let mine = per_key.get(&key).copied().unwrap_or(0);
        let total = self.total.load(Ordering::Relaxed);
        let over_total = total >= self.max_total;
        let over_key = self.max_per_key.is_some_and(|max| mine >= max);
        if over_total || over_key {
            drop(per_key);
            self.refused(&key, over_total);
            return None;
        }
        per_key.insert(key.clone(), mine + 1);
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            caps: self.clone(),
            key,
        })
    }

    fn refused(&self, key: &str, over_total: bool) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.epoch.elapsed().as_secs() + WARNING_INTERVAL_SECONDS;
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + WARNING_INTERVAL_SECONDS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.refused.store(0, Ordering::Relaxed);
            tracing::warn!(
                client = %key,
                cap = if over_total { "max_connections" } else { "max_connections_per_address" },
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
    let caps = Arc::new(ConnectionCaps {
        total: AtomicUsize::new(0),
        per_key: Mutex::new(HashMap::new()),
        max_total: limits.max_connections,
        max_per_key: (!trust_forwarded_for).then_some(limits.max_connections_per_address),
        refused: AtomicU64::new(0),
        last_warning: AtomicU64::new(0),
        epoch: Instant::now(),
    });
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
            let _admitted = admitted;
            let activity = Arc::new(Activity::default());
            let for_requests = activity.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let in_flight = InFlight::begin(&for_requests);
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let response = app.clone().oneshot(req);
                async move {
                    let response = response.await;
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

// ---- admin-token failures ---------------------------------------------------------------

/// Failed admin authentications one client address may make in [`FAILURE_WINDOW_SECONDS`];
/// after that every admin request from it, even with the right token, gets 429 until the
/// window ends.
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW_SECONDS: i64 = 60;
/// Addresses tracked before expired windows are swept.
const SWEEP_ABOVE: usize = 10_000;

/// Admin-token failures per client address ([`client_key`]), in fixed windows.
///
/// In process, not in the database: the store has no generic counter and the admin API is an
/// operator's tool, usually reached on an internal network, so each replica bounding guesses at
/// 5 a minute per address is enough (a 32+ character token is not guessable online anyway);
/// what matters is that guessing is slow and visible in the log.
#[derive(Default)]
pub struct AdminFailures {
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl AdminFailures {
    /// Seconds until `client` may try again, when its window is used up.
    pub(crate) fn blocked_for(&self, client: &str, now: i64) -> Option<u64> {
        let windows = self.windows.lock().unwrap();
        match windows.get(client) {
            Some(&(start, n)) if n >= MAX_FAILURES && now < start + FAILURE_WINDOW_SECONDS => {
                Some((start + FAILURE_WINDOW_SECONDS - now) as u64)
            }
            _ => None,
        }
    }

    pub(crate) fn record(&self, client: &str, now: i64) -> u32 {
        let mut windows = self.windows.lock().unwrap();
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, (start, _)| now < *start + FAILURE_WINDOW_SECONDS);
        }
        let entry = windows.entry(client.to_string()).or_insert((now, 0));
        if now >= entry.0 + FAILURE_WINDOW_SECONDS {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
