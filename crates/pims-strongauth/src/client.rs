//! HTTP client for the PIMS server `/v1` API.

use std::time::Duration;

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

pub struct ServerClient {
    http: reqwest::Client,
    base_url: String,
}

impl ServerClient {
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("pims-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("TLS backend initialises");
        ServerClient {
            http,
            base_url: base_url.to_owned(),
        }
    }

    pub async fn get<Resp: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        transaction_id: &str,
    ) -> Result<Resp, CallError> {
        self.send::<(), Resp>(Method::GET, path, token, transaction_id, None)
            .await
    }

    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        transaction_id: &str,
        body: &Req,
    ) -> Result<Resp, CallError> {
        self.send(Method::POST, path, token, transaction_id, Some(body))
            .await
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
        let response = request.send().await.map_err(transport)?;
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
