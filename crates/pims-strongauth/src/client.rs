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

pub struct ServerClient {
    http: reqwest::Client,
    base_url: String,
    /// When a connection to the server last failed; cleared by any answer.
    connect_failed_at: Mutex<Option<Instant>>,
}

impl ServerClient {
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            // Never follow a redirect: it could lead an https server's clients to plain http or
            // to another host, with the access token.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("pims-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("TLS backend initialises");
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
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(token)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION)
            .header(TRANSACTION_HEADER, transaction_id);
        if let Some(body) = body {
            request = request.json(body);
        }
        let sent = request.send().await;
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
    use tokio::net::TcpListener;

    use super::*;

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
