//! A loopback HTTP proxy between a phone and the server that can lose answers or refuse
//! requests on chosen paths: the network faults a phone meets, reproduced for real.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request reaches the server, which acts on it; its answer never reaches the phone.
    LoseAnswer,
    /// The request never reaches the server.
    Unreachable,
    /// The request reaches the server, but the phone gets the answer to the previous request of
    /// that path instead (a relay or cloud passing off an old answer as new).
    ReplayPrevious,
}

struct Rule {
    path_contains: String,
    fault: Fault,
    remaining: usize,
}

struct Shared {
    upstream: Mutex<String>,
    rules: Mutex<Vec<Rule>>,
    forwarded: Mutex<Vec<String>>,
    /// The last answer body per path, for `ReplayPrevious`.
    answers: Mutex<std::collections::HashMap<String, axum::body::Bytes>>,
    http: reqwest::Client,
}

#[derive(Clone)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl FaultProxy {
    pub async fn start(upstream: String) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            rules: Mutex::new(Vec::new()),
            forwarded: Mutex::new(Vec::new()),
            answers: Mutex::new(Default::default()),
            http: reqwest::Client::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FaultProxy { shared, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_upstream(&self, url: String) {
        *self.shared.upstream.lock().unwrap() = url;
    }

    /// Applies `fault` to the next `times` requests whose path contains `path_contains`.
    pub fn inject(&self, path_contains: &str, fault: Fault, times: usize) {
        self.shared.rules.lock().unwrap().push(Rule {
            path_contains: path_contains.to_owned(),
            fault,
            remaining: times,
        });
    }

    /// Lets every request through again.
    pub fn clear_faults(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// How many requests whose path contains `path_contains` reached the server.
    pub fn forwarded(&self, path_contains: &str) -> usize {
        self.shared
            .forwarded
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.contains(path_contains))
            .count()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let fault = {
        let mut rules = shared.rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| r.remaining > 0 && path.contains(&r.path_contains))
            .map(|r| {
                r.remaining -= 1;
                r.fault
            })
    };
    if fault == Some(Fault::Unreachable) {
        return broken();
    }
    let method = request.method().clone();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let upstream = shared.upstream.lock().unwrap().clone();
    let mut forward = shared
        .http
        .request(method, format!("{upstream}{path}"))
        .body(body);
    for (name, value) in headers.iter() {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    let answer = forward.send().await;
    let Ok(answer) = answer else {
        return broken();
    };
    shared.forwarded.lock().unwrap().push(path.clone());
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    if fault == Some(Fault::LoseAnswer) {
        return broken();
    }
    let previous = shared.answers.lock().unwrap().insert(path, bytes.clone());
    let bytes = match (fault, previous) {
        (Some(Fault::ReplayPrevious), Some(previous)) => previous,
        _ => bytes,
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in headers.iter() {
        if name != "content-length" && name != "transfer-encoding" {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// A response whose body fails: the connection breaks before the phone gets an answer.
fn broken() -> Response {
    Response::new(Body::from_stream(futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection lost"))
    })))
}
