//! HTTP client for the PIMS server `/v1` API.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pims_proto::endpoint::{self, Endpoint};
use pims_proto::{ApiError, ErrorBody, PROTOCOL_HEADER, PROTOCOL_VERSION, TRANSACTION_HEADER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a request got no usable answer.
#[derive(Debug)]
pub enum CallError {
    /// The server answered with an error of the protocol.
    Api(ApiError),
    /// No answer: unreachable, timed out, or the connection broke before the full answer.
    /// The server may or may not have acted on the request.
    Transport(String),
    /// An answer outside the protocol (proxy error page, 5xx without a body…).
    Unexpected(u16),
}

/// How long a refused connection is remembered (see [`ServerClient::known_unreachable`]).
const UNREACHABLE_MEMORY: Duration = Duration::from_secs(2);

/// An idle connection leaves the pool after this, well below the server's
/// `[http] keep_alive_timeout_seconds` (default 5): a request written to a connection the
/// server is closing at that moment is lost, and a POST that may have arrived cannot be resent.
const POOL_IDLE: Duration = Duration::from_secs(2);

/// Pause before resending a request whose connection could not be opened, so that a server
/// restarting or a route coming back has a chance.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(250);

pub struct ServerClient {
    http: reqwest::Client,
    base_url: String,
    /// When a connection to the server last failed; cleared by any answer.
    connect_failed_at: Mutex<Option<Instant>>,
}

impl ServerClient {
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let mut builder = reqwest::Client::builder()
            // Never follow a redirect: it could lead an https server's clients to plain http or
            // to another host, with the access token.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // A pooled connection found closed before the request was written is retried on a
            // fresh one by hyper-util (`retry_canceled_requests`, on by default); one closed
            // while the request is written is not, hence the short idle time.
            .pool_idle_timeout(POOL_IDLE)
            .user_agent(concat!("pims-sdk/", env!("CARGO_PKG_VERSION")));
        if !may_use_proxy(base_url) {
            // Also disables the proxies of the environment (`HTTP_PROXY`, `ALL_PROXY`…).
            builder = builder.no_proxy();
        }
        let http = builder.build().expect("TLS backend initialises");
        ServerClient {
            http,
            base_url: base_url.to_owned(),
            connect_failed_at: Mutex::new(None),
        }
    }

    /// Whether a connection failed within the last [`UNREACHABLE_MEMORY`] and nothing answered
    /// since. Reads that fall back to local state anyway skip the server then, rather than
    /// paying a connection attempt on every call; every other request still tries.
    pub fn known_unreachable(&self) -> bool {
        self.connect_failed_at
            .lock()
            .expect("not poisoned")
            .is_some_and(|at| at.elapsed() < UNREACHABLE_MEMORY)
    }

    /// Calls operation `E` of the endpoint table: `values` fill its path parameters in order,
    /// `query` is an optional `name=value` (GET only). No body is sent on GET.
    pub async fn call<E: Endpoint>(
        &self,
        values: &[&str],
        query: Option<(&str, &str)>,
        token: &str,
        transaction_id: &str,
        body: &E::Request,
    ) -> Result<E::Response, CallError> {
        let mut path = E::ROUTE.path(values);
        if let Some((name, value)) = query {
            path = format!("{path}?{name}={}", endpoint::encode_segment(value));
        }
        let (method, body) = match E::ROUTE.method {
            endpoint::Method::Get => (Method::GET, None),
            endpoint::Method::Post => (Method::POST, Some(body)),
        };
        self.send(method, &path, token, transaction_id, body).await
    }

    async fn send<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &str,
        transaction_id: &str,
        body: Option<&Req>,
    ) -> Result<Resp, CallError> {
        let url = format!("{}{path}", self.base_url);
        let request = || {
            let request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token)
                .header(PROTOCOL_HEADER, PROTOCOL_VERSION)
                .header(TRANSACTION_HEADER, transaction_id);
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        };
        let mut sent = request().send().await;
        if matches!(&sent, Err(e) if never_sent(e)) {
            tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
            sent = request().send().await;
        }
        *self.connect_failed_at.lock().expect("not poisoned") = match &sent {
            Err(e) if e.is_connect() => Some(Instant::now()),
            _ => None,
        };
        let response = sent.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            let body: &[u8] = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
                b"null"
            } else {
                &bytes
            };
            return serde_json::from_slice(body)
                .map_err(|_| CallError::Unexpected(status.as_u16()));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(ErrorBody { error }) => Err(CallError::Api(error)),
            Err(_) => Err(CallError::Unexpected(status.as_u16())),
        }
    }
}

/// Whether the request provably never reached the server, so that resending it cannot act
/// twice: its connection (TCP, proxy tunnel or TLS) could not be opened. Anything later (a reset
/// or timeout after writing) may have reached it and stays a [`CallError::Transport`]. A connect
/// timeout is not resent: it would double the wait for an unreachable server.
fn never_sent(e: &reqwest::Error) -> bool {
    e.is_connect() && !e.is_timeout()
}

/// Whether requests to `base_url` may go through a proxy of the environment: https to another
/// machine only, where the proxy gets a CONNECT and relays TLS it cannot read. A plain http
/// request would hand the proxy the access token, and loopback has no business leaving the
/// machine.
fn may_use_proxy(base_url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base_url) else {
        return false;
    };
    if url.scheme() != "https" {
        return false;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(std::net::IpAddr::V4(ip)) => !ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => {
            !(ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        }
        Err(_) => {
            // RFC 6761: `localhost` and its subdomains are this machine.
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            !(name == "localhost" || name.ends_with(".localhost"))
        }
    }
}

fn transport(e: reqwest::Error) -> CallError {
    // reqwest errors name the URL, which holds no secret; the body is never included.
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "connection"
    };
    CallError::Transport(format!("{kind}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn only_https_to_another_machine_may_go_through_a_proxy() {
        for url in [
            "https://pims.example.com",
            "https://10.0.0.1:8443",
            "https://[2001:db8::1]",
        ] {
            assert!(may_use_proxy(url), "{url}");
        }
        for url in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://localhost:8080",
            "http://[::1]:8080",
            "https://127.0.0.1:8443",
            "https://[::1]",
            "https://[::ffff:127.0.0.1]",
            "https://LOCALHOST.",
            "https://pims.localhost",
            // Refused by the configuration, and never proxied should it get here.
            "http://pims.example.com",
            "not a url",
        ] {
            assert!(!may_use_proxy(url), "{url}");
        }
    }

    #[test]
    fn the_pool_forgets_a_connection_well_before_the_server_closes_it() {
        // The server's default `[http] keep_alive_timeout_seconds`.
        assert!(POOL_IDLE <= Duration::from_secs(5) / 2);
    }

    /// How the fake server of the keep-alive tests treats its connections. Every answer is a
    /// kept-alive 204.
    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Closes a connection idle this long, as the server's keep-alive does.
        CloseIdleAfter(Duration),
        /// A request arriving on a connection idle at least this long is read and dropped
        /// without an answer: the server's close crossed it on the wire. The worst case of the
        /// keep-alive race, made deterministic.
        LoseAfterIdle(Duration),
        /// The second request of a connection is read in full, then the connection is reset.
        ResetSecond,
    }

    struct Fake {
        url: String,
        connections: Arc<AtomicUsize>,
        /// Requests read in full, answered or not.
        requests: Arc<AtomicUsize>,
        lost: Arc<AtomicUsize>,
    }

    async fn fake_server(behaviour: Behaviour) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Fake {
            url: format!("http://{}", listener.local_addr().unwrap()),
            connections: Arc::default(),
            requests: Arc::default(),
            lost: Arc::default(),
        };
        let (connections, requests, lost) = (
            fake.connections.clone(),
            fake.requests.clone(),
            fake.lost.clone(),
        );
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let (requests, lost) = (requests.clone(), lost.clone());
                tokio::spawn(async move {
                    let mut served = 0;
                    let mut idle_since = Instant::now();
                    loop {
                        let next = match behaviour {
                            Behaviour::CloseIdleAfter(after) if served > 0 => {
                                match tokio::time::timeout(after, read_request(&mut stream)).await {
                                    Ok(next) => next,
                                    Err(_) => break,
                                }
                            }
                            _ => read_request(&mut stream).await,
                        };
                        if !next {
                            break;
                        }
                        requests.fetch_add(1, Ordering::SeqCst);
                        match behaviour {
                            Behaviour::LoseAfterIdle(after)
                                if served > 0 && idle_since.elapsed() >= after =>
                            {
                                lost.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Behaviour::ResetSecond if served == 1 => {
                                stream.set_zero_linger().unwrap();
                                break;
                            }
                            _ => {}
                        }
                        if stream
                            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                            .await
                            .is_err()
                        {
                            break;
                        }
                        served += 1;
                        idle_since = Instant::now();
                    }
                });
            }
        });
        fake
    }

    /// Reads one whole request (head and `Content-Length` body); false at the end of the
    /// stream.
    async fn read_request(stream: &mut TcpStream) -> bool {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if data.len() >= end + 4 + length {
                    return true;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
    }

    async fn remove(client: &ServerClient) -> Result<endpoint::Empty, CallError> {
        client
            .call::<endpoint::EnrollmentsRemove>(&[], None, "token", "tx", &endpoint::Empty {})
            .await
    }

    #[tokio::test]
    async fn a_post_after_the_server_closed_the_idle_connection_gets_its_answer() {
        let fake = fake_server(Behaviour::CloseIdleAfter(Duration::from_secs(1))).await;
        let client = ServerClient::new(&fake.url, Duration::from_secs(5));
        remove(&client).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        remove(&client).await.unwrap();
        assert_eq!(fake.connections.load(Ordering::SeqCst), 2);
        assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_post_is_not_sent_on_a_connection_idle_long_enough_to_be_closing() {
        // The server side of the race: a connection idle this long may be closing.
        let fake = fake_server(Behaviour::LoseAfterIdle(
            POOL_IDLE + Duration::from_millis(500),
        ))
        .await;
        let client = ServerClient::new(&fake.url, Duration::from_secs(5));
        remove(&client).await.unwrap();
        tokio::time::sleep(POOL_IDLE + Duration::from_millis(700)).await;
        let answer = remove(&client).await;
        assert!(answer.is_ok(), "{answer:?}");
        assert_eq!(fake.lost.load(Ordering::SeqCst), 0);
        assert_eq!(fake.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_post_whose_connection_broke_after_it_arrived_is_not_sent_again() {
        let fake = fake_server(Behaviour::ResetSecond).await;
        let client = ServerClient::new(&fake.url, Duration::from_secs(5));
        remove(&client).await.unwrap();
        // On the kept-alive connection, which the client would retry on if it could.
        let answer = remove(&client).await;
        assert!(matches!(answer, Err(CallError::Transport(_))), "{answer:?}");
        tokio::time::sleep(CONNECT_RETRY_PAUSE + Duration::from_millis(300)).await;
        assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
        assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
        assert!(!client.known_unreachable());
    }

    #[tokio::test]
    async fn a_request_whose_connection_was_refused_is_sent_once_more() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = port.local_addr().unwrap();
        drop(port);
        let client = ServerClient::new(&format!("http://{addr}"), Duration::from_secs(5));
        // The server comes up while the client pauses after the refusal (on loopback, well
        // before these 50 ms).
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let server = TcpListener::bind(addr).await.unwrap();
            while let Ok((mut stream, _)) = server.accept().await {
                if read_request(&mut stream).await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
                    let _ = stream.write_all(answer.as_bytes()).await;
                }
            }
        });
        let answer = remove(&client).await;
        assert!(answer.is_ok(), "{answer:?}");
        assert_eq!(requests.load(Ordering::SeqCst), 1);
        assert!(!client.known_unreachable());
    }

    #[tokio::test]
    async fn a_refused_connection_is_remembered_until_the_server_answers() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = port.local_addr().unwrap();
        drop(port);
        let client = ServerClient::new(&format!("http://{addr}"), Duration::from_secs(5));
        assert!(!client.known_unreachable());
        let answer = client
            .call::<endpoint::Account>(&[], None, "token", "tx", &endpoint::Empty {})
            .await;
        assert!(matches!(answer, Err(CallError::Transport(_))), "{answer:?}");
        assert!(client.known_unreachable());

        // The server comes up on that port: a request still reaches it and clears the memory.
        let server = TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = server.accept().await {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let answer =
                    "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        let answer = client
            .call::<endpoint::Account>(&[], None, "token", "tx", &endpoint::Empty {})
            .await;
        assert!(
            matches!(answer, Err(CallError::Unexpected(418))),
            "{answer:?}"
        );
        assert!(!client.known_unreachable());
    }

    #[tokio::test]
    async fn a_redirect_is_never_followed() {
        // Where a redirect would lead: counts the connections it gets.
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        let reached = Arc::new(AtomicUsize::new(0));
        let counter = reached.clone();
        tokio::spawn(async move {
            while let Ok((_stream, _)) = target.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        // The "server": answers every request with a redirect there.
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = server.accept().await {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target_addr}/v1/account\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        let client = ServerClient::new(&format!("http://{server_addr}"), Duration::from_secs(5));
        let answer = client
            .call::<endpoint::Account>(&[], None, "token", "tx", &endpoint::Empty {})
            .await;
        assert!(
            matches!(answer, Err(CallError::Unexpected(307))),
            "{answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(reached.load(Ordering::SeqCst), 0);
    }
}
