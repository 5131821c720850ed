//! The real SMS senders against a local HTTP gateway that records every request and answers
//! with a scripted sequence of statuses (then 2xx).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::{engine::general_purpose::STANDARD, Engine};
use pims_proto::*;
use pims_server::config::SmsGatewayConfig;

use crate::common::*;

#[derive(Debug, Clone)]
pub struct Recorded {
    path: String,
    headers: HeaderMap,
    body: String,
}

/// A gateway: the scripted answers are used first; a `None` answer stalls past the timeout.
pub struct Gateway {
    requests: Arc<Mutex<Vec<Recorded>>>,
    pub base: String,
}

impl Gateway {
    pub async fn start(script: Vec<Option<u16>>) -> Gateway {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (r, sc) = (requests.clone(), script.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
                let (r, sc) = (r.clone(), sc.clone());
                async move {
                    r.lock().unwrap().push(Recorded {
                        path: uri.path().to_string(),
                        headers,
                        body,
                    });
                    let next = sc.lock().unwrap().pop_front();
                    match next {
                        Some(Some(code)) => (StatusCode::from_u16(code).unwrap(), "{}"),
                        Some(None) => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            (StatusCode::CREATED, "{}")
                        }
                        None => (StatusCode::CREATED, r#"{"sid":"SM1"}"#),
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Gateway { requests, base }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn twilio(base: &str) -> SmsGatewayConfig {
    SmsGatewayConfig::Twilio {
        base_url: base.into(),
        account_sid: "AC123".into(),
        auth_token: "twilio-token".into(),
        from: "PIMS".into(),
        timeout_seconds: 1,
        max_attempts: 3,
    }
}

fn webhook(url: String) -> SmsGatewayConfig {
    SmsGatewayConfig::Webhook {
        url,
        bearer_token: Some("hook-token".into()),
        timeout_seconds: 1,
        max_attempts: 3,
    }
}

/// Decodes `application/x-www-form-urlencoded`.
fn form(body: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    body.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (decode(k), decode(v))
        })
        .collect()
}

async fn send(s: &TestServer) -> Result<SmsCodeSent, ApiError> {
    let token = s.token("alice").await;
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
}

#[tokio::test]
async fn twilio_gets_a_form_post_with_basic_auth_and_autofill_lines() {
    let g = Gateway::start(vec![]).await;
    let base = g.base.clone();
    let s = TestServer::start_with(move |c| c.sms_gateway = Some(twilio(&base))).await;
    send(&s).await.unwrap();
    let reqs = g.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/2010-04-01/Accounts/AC123/Messages.json");
    assert_eq!(
        r.headers["authorization"],
        format!("Basic {}", STANDARD.encode("AC123:twilio-token"))
    );
    assert_eq!(
        r.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let fields = form(&r.body);
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(get("To"), PHONE);
    assert_eq!(get("From"), "PIMS");
    let text = get("Body");
    let code = pims_server::sms::code_from_text(&text).unwrap();
    assert!(text.contains(&format!("@pims.example #{code}")));
    assert!(text.ends_with("\nPIMSAPPHASH"));
}

#[tokio::test]
async fn twilio_retries_a_refusal_but_never_a_request_it_may_have_delivered() {
    // 429 is a refusal: retried, then delivered.
    let g = Gateway::start(vec![Some(429)]).await;
    let base = g.base.clone();
    let s = TestServer::start_with(move |c| c.sms_gateway = Some(twilio(&base))).await;
    send(&s).await.unwrap();
    assert_eq!(g.requests().len(), 2);

    // A 500 or a timeout may hide a delivery: one request, and the call fails.
    for script in [vec![Some(500)], vec![None]] {
        let g = Gateway::start(script).await;
        let base = g.base.clone();
        let s = TestServer::start_with(move |c| c.sms_gateway = Some(twilio(&base))).await;
        assert_eq!(send(&s).await.err(), Some(ApiError::Internal));
        assert_eq!(g.requests().len(), 1);
    }
}

#[tokio::test]
async fn twilio_retries_a_refused_connection_a_bounded_number_of_times() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let s = TestServer::start_with(move |c| c.sms_gateway = Some(twilio(&base))).await;
    let started = std::time::Instant::now();
    assert_eq!(send(&s).await.err(), Some(ApiError::Internal));
    // Three attempts with 400 ms and 800 ms between them.
    assert!(started.elapsed() >= Duration::from_millis(1200));
}

#[tokio::test]
async fn the_webhook_retries_with_one_idempotency_key() {
    let g = Gateway::start(vec![Some(503), None]).await;
    let url = format!("{}/sms", g.base);
    let s = TestServer::start_with(move |c| c.sms_gateway = Some(webhook(url))).await;
    send(&s).await.unwrap();
    let reqs = g.requests();
    assert_eq!(reqs.len(), 3, "503, timeout, then delivered");
    let key = &reqs[0].headers["idempotency-key"];
    assert!(reqs.iter().all(|r| r.headers["idempotency-key"] == key));
    assert_eq!(reqs[0].headers["authorization"], "Bearer hook-token");
    let body: serde_json::Value = serde_json::from_str(&reqs[2].body).unwrap();
    assert_eq!(body["to"], PHONE);
    let code = pims_server::sms::code_from_text(body["text"].as_str().unwrap()).unwrap();
    assert_eq!(code.len(), 6);

    // Another message gets another key.
    send(&s).await.unwrap();
    let reqs = g.requests();
    assert_ne!(&reqs[3].headers["idempotency-key"], key);
}

#[tokio::test]
async fn the_webhook_gives_up_after_max_attempts() {
    let g = Gateway::start(vec![Some(500), Some(502), Some(503), Some(504)]).await;
    let url = format!("{}/sms", g.base);
    let s = TestServer::start_with(move |c| c.sms_gateway = Some(webhook(url))).await;
    assert_eq!(send(&s).await.err(), Some(ApiError::Internal));
    assert_eq!(g.requests().len(), 3);
}
