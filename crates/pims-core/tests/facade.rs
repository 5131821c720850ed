//! Facade behaviour of SDK-API.md §1, with a minimal component that echoes its parameters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pims_core::{Call, Component, ComponentFactory, EventSink, Message, Pims, PimsError, Verb};
use serde_json::{json, Value};

struct Echo;

#[async_trait]
impl Component for Echo {
    async fn call(&self, call: Call) -> Result<Value, PimsError> {
        match (call.verb, call.api.as_str()) {
            (Verb::Get, "pims.echo.value") => {
                let value = call.params.required_digits("pinCode", 4..=8)?;
                Ok(json!({ "length": value.expose().len() }))
            }
            (Verb::Get, "pims.echo.panic") => panic!("component bug"),
            _ => Err(pims_core::ErrorCode::ApiNotSupported.into()),
        }
    }

    async fn subscribe(&self, _call: Call, sink: EventSink) -> Result<(), PimsError> {
        tokio::spawn(async move {
            let mut n = 0;
            while sink.send(Ok(json!({ "tick": n }))) {
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Ok(())
    }
}

struct EchoFactory;

impl ComponentFactory for EchoFactory {
    fn name(&self) -> &'static str {
        "Echo"
    }
    fn config_key(&self) -> &'static str {
        "echo"
    }
    fn owns(&self, api: &str) -> bool {
        api.starts_with("pims.echo.")
    }
    fn build(&self, config: &Value) -> Result<Arc<dyn Component>, PimsError> {
        match config.get("mode") {
            None | Some(Value::String(_)) => Ok(Arc::new(Echo)),
            Some(_) => Err(PimsError::invalid("components.echo.mode")),
        }
    }
}

fn facade() -> Pims {
    Pims::builder().component(EchoFactory).build()
}

fn configured() -> Value {
    json!({ "components": { "echo": {} } })
}

async fn initialized() -> Pims {
    let pims = facade();
    let m = pims.initialize_async(configured()).await;
    assert_eq!(m.status.as_str(), "SUCCEEDED", "{m}");
    pims
}

fn error_of(m: &Message) -> (u32, String) {
    let e = m
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("expected FAILED, got {m}"));
    (e.code.code(), e.label.clone())
}

#[tokio::test]
async fn calls_before_initialize_fail_with_2001() {
    let pims = facade();
    let m = pims
        .get_async("pims.echo.value", json!({"pinCode": "1234"}))
        .await;
    assert_eq!(error_of(&m), (2001, "Facade not initialized".into()));
    assert_eq!(
        m.to_json(),
        json!({"transactionId": m.transaction_id, "status": "FAILED",
               "error": {"code": 2001, "label": "Facade not initialized",
                            "details": {"retryable": false}}})
    );
    assert_eq!(error_of(&pims.release_async().await).0, 2001);
}

#[tokio::test]
async fn second_initialize_fails_with_2007() {
    let pims = initialized().await;
    let m = pims.initialize_async(configured()).await;
    assert_eq!(error_of(&m), (2007, "Facade already initialized".into()));
}

#[tokio::test]
async fn bad_configuration_names_the_key_and_leaves_the_facade_uninitialized() {
    let pims = facade();
    let m = pims
        .initialize_async(json!({"components": {"echo": {"mode": 7}}}))
        .await;
    assert_eq!(
        error_of(&m),
        (2102, "Invalid components.echo.mode parameter".into())
    );
    let m = pims.get_async("pims.echo.value", json!({})).await;
    assert_eq!(error_of(&m).0, 2001);
}

#[tokio::test]
async fn unknown_api_fails_with_2002() {
    let pims = initialized().await;
    let m = pims.get_async("pims.nothing.here", json!({})).await;
    assert_eq!(error_of(&m), (2002, "API not supported".into()));
}

#[tokio::test]
async fn component_missing_from_build_fails_with_2003() {
    let pims = initialized().await;
    let m = pims
        .get_async("pims.authentication.account", json!({}))
        .await;
    assert_eq!(
        error_of(&m),
        (2003, "StrongAuthentication not loaded".into())
    );
}

#[tokio::test]
async fn component_without_configuration_fails_with_2344() {
    let pims = facade();
    assert!(pims.initialize_async(json!({})).await.error.is_none());
    let m = pims
        .get_async("pims.echo.value", json!({"pinCode": "1234"}))
        .await;
    assert_eq!(error_of(&m), (2344, "Echo not configured".into()));
}

#[tokio::test]
async fn configuration_set_adds_a_component_later() {
    let pims = facade();
    assert!(pims.initialize_async(json!({})).await.error.is_none());
    let m = pims
        .set_async(
            "pims.sdk.configuration",
            json!({"components": {"echo": {}}}),
        )
        .await;
    assert_eq!(m.to_json()["status"], "SUCCEEDED");
    let m = pims
        .get_async("pims.echo.value", json!({"pinCode": "1234"}))
        .await;
    assert_eq!(m.result, Some(json!({"length": 4})));
}

#[tokio::test]
async fn version_is_reported() {
    let pims = initialized().await;
    let m = pims.get_async("pims.sdk.version", json!({})).await;
    assert_eq!(m.result, Some(json!({"version": pims_core::SDK_VERSION})));
}

#[tokio::test]
async fn parameter_errors_name_the_parameter() {
    let pims = initialized().await;
    let m = pims.get_async("pims.echo.value", json!({})).await;
    assert_eq!(error_of(&m), (2101, "Missing pinCode parameter".into()));
    let m = pims
        .get_async("pims.echo.value", json!({"pinCode": "12x4"}))
        .await;
    assert_eq!(error_of(&m), (2102, "Invalid pinCode parameter".into()));
    let m = pims
        .get_async("pims.echo.value", json!(["not", "a", "map"]))
        .await;
    assert_eq!(error_of(&m), (2102, "Invalid parameters parameter".into()));
}

#[tokio::test]
async fn a_panicking_component_yields_a_failed_message() {
    let pims = initialized().await;
    let m = pims.get_async("pims.echo.panic", json!({})).await;
    assert_eq!(error_of(&m).0, 2311);
}

#[test]
fn callbacks_run_on_sdk_threads_exactly_once_per_call_from_many_threads() {
    let pims = Arc::new(facade());
    let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
    let init_tx = tx.clone();
    pims.initialize(configured(), move |m| {
        assert!(m.error.is_none());
        init_tx.send(("init".into(), String::new())).unwrap();
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, "init");

    let threads: Vec<_> = (0..8)
        .map(|_| {
            let pims = pims.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for _ in 0..250 {
                    let tx = tx.clone();
                    pims.get("pims.echo.value", json!({"pinCode": "1234"}), move |m| {
                        let thread = std::thread::current().name().unwrap_or("").to_owned();
                        tx.send((m.transaction_id.clone(), thread)).unwrap();
                    });
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    drop(tx);

    let mut seen: HashMap<String, usize> = HashMap::new();
    while let Ok((id, thread)) = rx.recv_timeout(Duration::from_secs(5)) {
        assert_eq!(thread, "pims-sdk");
        *seen.entry(id).or_default() += 1;
    }
    assert_eq!(seen.len(), 2000);
    assert!(seen.values().all(|&n| n == 1));
}

#[test]
fn a_panicking_callback_does_not_stop_later_callbacks() {
    let pims = facade();
    let (tx, rx) = std::sync::mpsc::channel();
    let init_tx = tx.clone();
    pims.initialize(configured(), move |m| {
        init_tx.send(m).unwrap();
        panic!("app bug");
    });
    assert!(rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .error
        .is_none());
    pims.get("pims.echo.value", json!({"pinCode": "1234"}), move |m| {
        tx.send(m).unwrap();
    });
    let m = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(m.result, Some(json!({"length": 4})));
}

#[test]
fn subscription_acknowledges_then_streams_until_unsubscribe_and_rejects_duplicates() {
    let pims = facade();
    let (tx, rx) = std::sync::mpsc::channel::<Message>();
    let t = tx.clone();
    pims.initialize(configured(), move |m| t.send(m).unwrap());
    rx.recv_timeout(Duration::from_secs(5)).unwrap();

    let messages = Arc::new(Mutex::new(Vec::<Message>::new()));
    let sink = messages.clone();
    pims.subscribe("pims.echo.ticks", json!({}), move |m| {
        sink.lock().unwrap().push(m)
    });
    std::thread::sleep(Duration::from_millis(100));

    let t = tx.clone();
    pims.subscribe("pims.echo.ticks", json!({}), move |m| t.send(m).unwrap());
    let duplicate = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(error_of(&duplicate), (2005, "Duplicate command".into()));

    let t = tx.clone();
    pims.unsubscribe("pims.echo.ticks", move |m| t.send(m).unwrap());
    assert!(rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .error
        .is_none());
    let count_at_unsubscribe = messages.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(100));

    let messages = messages.lock().unwrap();
    assert!(
        messages.len() <= count_at_unsubscribe + 1,
        "events continued after unsubscribe"
    );
    assert_eq!(messages[0].status.as_str(), "SUCCEEDED");
    assert!(messages.len() > 3);
    let id = &messages[0].transaction_id;
    for (n, m) in messages.iter().enumerate().skip(1) {
        assert_eq!(m.status.as_str(), "RESULT");
        assert_eq!(&m.transaction_id, id);
        assert_eq!(m.result, Some(json!({"tick": n - 1})));
    }
}
