//! Operations: readiness follows the database, metrics count domain events, and shutdown lets
//! requests in flight finish.

use std::time::Duration;

use pims_proto::endpoint::{self as ep, Endpoint};
use pims_proto::*;
use pims_server::config::SmsGatewayConfig;

use crate::common::*;
use crate::sms_gateways::Gateway;

async fn get(s: &TestServer, path: &str) -> (u16, String) {
    let r = s.http.get(format!("{}{path}", s.url)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn readiness_follows_the_database() {
    let Some(s) = TestServer::start_postgres(|_| {}).await else {
        return;
    };
    assert_eq!(get(&s, "/readyz").await.0, 200);
    let url = s.config.database_url.clone().unwrap().0;
    let (db, admin_url) = url
        .rsplit_once('/')
        .map(|(base, db)| (db.to_string(), format!("{base}/postgres")))
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .await
        .unwrap();
    assert_eq!(get(&s, "/readyz").await.0, 503);
    // Liveness is about the process, not its dependencies.
    assert_eq!(get(&s, "/healthz").await.0, 200);
}

#[tokio::test]
async fn metrics_count_requests_and_domain_events() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    s.otp(&token, &mut device, Some("0000")).await.unwrap_err();
    s.otp(&token, &mut device, None).await.unwrap();
    let (status, text) = get(&s, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "pims_enrollments_total 1",
        "pims_pin_failures_total 1",
        "pims_pin_blocks_total 0",
        "pims_sms_sent_total 2",
        "pims_security_notices_sent_total{notice=\"device_enrolled\"} 1",
        "pims_otps_issued_total{with_pin=\"false\"} 1",
        "pims_http_requests_total{route=\"/v1/otp\",status=\"403\"} 1",
        "pims_http_requests_total{route=\"/v1/devices/{device_id}/activate\",status=\"204\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(text.contains("pims_http_request_duration_seconds_bucket{route=\"/v1/otp\""));
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    // The SMS gateway takes 3 s to answer; the server is asked to stop meanwhile.
    let g = Gateway::start(vec![None]).await;
    let url = format!("{}/sms", g.base);
    let mut s = TestServer::start_with(move |c| {
        c.sms_gateway = Some(SmsGatewayConfig::Webhook {
            url,
            bearer_token: None,
            timeout_seconds: 10,
            max_attempts: 1,
        })
    })
    .await;
    let token = s.token("alice").await;
    let request = s
        .at(ep::SmsCodes::ROUTE, &[], &token)
        .json(&SendSmsCode {
            purpose: SmsPurpose::PhoneCertification,
            phone_number: Some(PHONE.into()),
            region: None,
        })
        .send();
    let in_flight =
        tokio::spawn(async move { decode::<SmsCodeSent>(request.await.unwrap()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(g.requests().len(), 1, "the request reached the gateway");
    s.server.take().unwrap().shutdown().await;
    assert!(in_flight.await.unwrap().is_ok());
    // And nothing is accepted any more.
    assert!(s
        .http
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn the_openapi_document_is_served_whole() {
    // Router and document are both built from the endpoint table, so they cannot drift.
    let s = TestServer::start().await;
    let (status, text) = get(&s, "/openapi.json").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for route in pims_proto::endpoint::ROUTES {
        let method = route.method.as_str().to_lowercase();
        assert!(
            doc["paths"][route.path][&method].is_object(),
            "{method} {}",
            route.path
        );
    }
    // Every schema reference resolves to a component.
    let schemas = &doc["components"]["schemas"];
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(schemas[name].is_object(), "{r} resolves");
    }
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => out.push(r.to_string()),
                    _ => collect_refs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
