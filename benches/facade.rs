//! Facade latency, from the call until its callback runs, over `examples/facade.rs`'s set-up:
//! a call rejected by parameter checks, and a local `isDeviceActivated` while the server is
//! unreachable (a loopback port nobody listens on). `cargo bench --bench facade`; figures and
//! load in docs/PERFORMANCE.md.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pims_core::{ErrorCode, Message, Pims};
use pims_strongauth::host::{Host, StaticToken};
use pims_strongauth::StrongAuthFactory;
use serde_json::{json, Value};

/// An initialised facade whose server is a loopback port with no listener.
fn facade(data_directory: &std::path::Path) -> Pims {
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port");
    let host = Host::new(Arc::new(StaticToken(Some("bench-token".into()))));
    let pims = Pims::builder()
        .component(StrongAuthFactory::new(host))
        .build();
    let (done, wait) = mpsc::channel();
    pims.initialize(
        json!({
            "environnement": "development",
            "components": { "strongAuthentication": {
                "serverUrl": format!("http://{unreachable}"),
                "dataDirectory": data_directory,
                "platform": "desktop"
            }}
        }),
        move |m| done.send(m).unwrap(),
    );
    let message = wait.recv().unwrap();
    assert!(message.error.is_none(), "{message}");
    pims
}

/// Time from each `get` until its callback starts, `iters` times; checks every answer.
fn until_callback(
    pims: &Pims,
    api: &str,
    params: &Value,
    iters: u64,
    check: fn(&Message),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (done, wait) = mpsc::channel();
        let started = Instant::now();
        pims.get(api, params.clone(), move |m| {
            done.send((Instant::now(), m)).unwrap()
        });
        let (called, message) = wait.recv().unwrap();
        check(&message);
        total += called - started;
    }
    total
}

fn facade_calls(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let pims = facade(dir.path());
    let api = "pims.authentication.account";

    let missing_type = json!({ "actionType": "strong" });
    c.bench_function("rejected by parameter checks", |b| {
        b.iter_custom(|iters| {
            until_callback(&pims, api, &missing_type, iters, |m| {
                assert_eq!(
                    m.error.as_ref().map(|e| e.code),
                    Some(ErrorCode::MissingParameter),
                    "{m}"
                )
            })
        })
    });

    let activated = json!({ "actionType": "strong", "type": "isDeviceActivated" });
    c.bench_function("isDeviceActivated, server unreachable", |b| {
        b.iter_custom(|iters| {
            until_callback(&pims, api, &activated, iters, |m| {
                assert_eq!(
                    m.result.as_ref().map(|r| &r["isDeviceActivated"]),
                    Some(&json!(false)),
                    "{m}"
                )
            })
        })
    });
}

criterion_group!(benches, facade_calls);
criterion_main!(benches);
