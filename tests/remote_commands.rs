//! The reference's remote-command component through the facade, against a real server and a
//! simulated car that verifies every command itself: the reference's flow (subscribe to the
//! signal, select the VIN, send the command, on 2302 get an OTP with the PIN and send it
//! again) runs the command once; the one-call flow with `pinCode`; the parameter errors.

mod support;

use std::sync::{Arc, Mutex};

use pims_core::Message;
use serde_json::{json, Value};
use support::{failed, ok, Garage, Phone, PIN, VIN};

const NEED_STRONG: &str = "Need Strong Authentication";

async fn paired_phone(g: &Garage) -> Phone {
    let token = g.server.token("alice").await;
    let phone = Phone::new(&g.server.url(), Some(token)).await;
    phone.enroll_first_device(&g.server).await;
    ok(&phone
        .set(
            "pims.vehicle.vin",
            json!({"actionType": "remote", "vin": VIN}),
        )
        .await);
    let code = g.car.new_pairing_code().unwrap();
    ok(&phone
        .set("pims.vehicle.pairing", json!({"pairingCode": code}))
        .await);
    phone
}

/// The signal's events (after the subscription's own SUCCEEDED, which is checked).
async fn signals(phone: &Phone) -> Arc<Mutex<Vec<Value>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    phone
        .pims
        .subscribe("pims.vehicle.signal", json!({}), move |m: Message| {
            sink.lock().unwrap().push(m.to_json());
        });
    let subscribed = first(&seen, 1).await.remove(0);
    assert_eq!(subscribed["status"], "SUCCEEDED", "{subscribed}");
    seen.lock().unwrap().remove(0);
    seen
}

async fn doors(phone: &Phone, state: &str, pin: Option<&str>) -> Message {
    let mut params = json!({"action": "doors", "doorState": state});
    if let Some(pin) = pin {
        params["pinCode"] = json!(pin);
    }
    phone.set("pims.vehicle.command", params).await
}

/// The first `n` events, waiting (at most 5 s) for them to be delivered.
async fn first(events: &Arc<Mutex<Vec<Value>>>, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        if events.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let seen = events.lock().unwrap().clone();
    assert!(seen.len() >= n, "{n} events expected: {seen:?}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_flow_unlocks_once_after_2302_and_an_otp_with_the_pin() {
    let g = Garage::open().await;
    let phone = paired_phone(&g).await;
    let events = signals(&phone).await;
    failed(&doors(&phone, "unlock", None).await, 2302, NEED_STRONG);
    assert!(g.car.state().unwrap().locked);
    let otp = ok(&phone.otp_with_pin(PIN).await);
    assert!(otp["otp"].as_str().is_some_and(|o| !o.is_empty()));
    ok(&doors(&phone, "unlock", None).await);
    assert!(!g.car.state().unwrap().locked);
    let seen = first(&events, 1).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["status"], "RESULT");
    assert_eq!(seen[0]["result"]["code"], 200);
    assert_eq!(seen[0]["result"]["receiptVerified"], true);
    assert_eq!(
        seen[0]["result"]["vehicle"]["ressources"]["status"]["doorStateInformation"]["state"],
        json!(["Unlocked"])
    );
    // Executed once: the kept OTP is spent, so the same command needs the PIN again.
    failed(&doors(&phone, "unlock", None).await, 2302, NEED_STRONG);
    // Locking needs no PIN; locking again finds the doors locked (2361), also signalled.
    ok(&doors(&phone, "lock", None).await);
    failed(
        &doors(&phone, "lock", None).await,
        2361,
        "All vehicle's doors are locked",
    );
    let seen = first(&events, 3).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2]["error"]["code"], 2361);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otp_kept_after_2302_serves_that_command_on_that_car_only() {
    let g = Garage::open().await;
    let phone = paired_phone(&g).await;
    failed(&doors(&phone, "unlock", None).await, 2302, NEED_STRONG);
    ok(&phone.otp_with_pin(PIN).await);
    // The app answers the 2302 with pinCode instead: the kept OTP is dropped with it…
    ok(&doors(&phone, "unlock", Some(PIN)).await);
    ok(&doors(&phone, "lock", None).await);
    // …so whoever picks the phone up next cannot unlock without the PIN.
    failed(&doors(&phone, "unlock", None).await, 2302, NEED_STRONG);
    // Kept for the unlock, an OTP does not serve the horn, nor survives choosing a car again.
    ok(&phone.otp_with_pin(PIN).await);
    ok(&phone
        .set("pims.vehicle.command", json!({"action": "horn"}))
        .await);
    ok(&phone
        .set(
            "pims.vehicle.vin",
            json!({"actionType": "remote", "vin": VIN}),
        )
        .await);
    failed(&doors(&phone, "unlock", None).await, 2302, NEED_STRONG);
    assert!(g.car.state().unwrap().locked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_receipt_passed_off_as_new_is_refused_by_the_phone() {
    use support::proxy::{Fault, FaultProxy};
    let g = Garage::open().await;
    let proxy = FaultProxy::start(g.server.url()).await;
    let token = g.server.token("dave").await;
    let phone = Phone::new(&proxy.url(), Some(token)).await;
    phone.enroll_first_device(&g.server).await;
    ok(&phone
        .set(
            "pims.vehicle.vin",
            json!({"actionType": "remote", "vin": VIN}),
        )
        .await);
    let code = g.car.new_pairing_code().unwrap();
    ok(&phone
        .set("pims.vehicle.pairing", json!({"pairingCode": code}))
        .await);
    let events = signals(&phone).await;
    ok(&phone
        .set("pims.vehicle.command", json!({"action": "horn"}))
        .await);
    // The next horn reaches the car, but the phone is handed the first horn's answer: a genuine
    // receipt, for another proof.
    proxy.inject("/v1/commands", Fault::ReplayPrevious, 1);
    failed(
        &phone
            .set("pims.vehicle.command", json!({"action": "horn"}))
            .await,
        2355,
        "Invalid Signature",
    );
    assert_eq!(g.car.state().unwrap().horn_count, 2);
    let seen = first(&events, 2).await;
    assert_eq!(seen[1]["error"]["code"], 2355, "{seen:?}");
    // The honest answer again: accepted.
    ok(&phone
        .set("pims.vehicle.command", json!({"action": "horn"}))
        .await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_with_pin_code_unlocks_and_a_wrong_pin_is_counted() {
    let g = Garage::open().await;
    let phone = paired_phone(&g).await;
    let e = failed(
        &doors(&phone, "unlock", Some("11111111")).await,
        2308,
        "inwebo: access refused",
    );
    assert_eq!(e["details"]["attemptsRemaining"], 4);
    assert!(g.car.state().unwrap().locked);
    ok(&doors(&phone, "unlock", Some(PIN)).await);
    assert!(!g.car.state().unwrap().locked);
    ok(&phone
        .set("pims.vehicle.command", json!({"action": "horn"}))
        .await);
    ok(&phone
        .set(
            "pims.vehicle.command",
            json!({"action": "chargeDeferredTime", "startNow": false,
                   "deferredTime": "PT23H30M", "checkStartCharge": true}),
        )
        .await);
    ok(&phone
        .set(
            "pims.vehicle.command",
            json!({"action": "preconditioning", "startNow": true, "programs": [
                {"hour": 7, "minute": 30, "isEnabled": true, "occurrence": ["mon", "fri"], "slot": 1}
            ]}),
        )
        .await);
    let car = g.car.state().unwrap();
    assert_eq!(
        (car.horn_count, car.deferred_charge.as_str()),
        (1, "PT23H30M")
    );
    assert!(car.preconditioning);
    assert_eq!(car.programs[0].occurrence, vec!["mon", "fri"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_named_when_missing_or_invalid_and_the_vin_must_be_selected_first() {
    let g = Garage::open().await;
    let token = g.server.token("bob").await;
    let phone = Phone::new(&g.server.url(), Some(token)).await;
    phone.enroll_first_device(&g.server).await;
    failed(&doors(&phone, "lock", None).await, 2010, "vin not set");
    failed(
        &phone
            .set(
                "pims.vehicle.vin",
                json!({"actionType": "remote", "vin": "VR3-SHORT"}),
            )
            .await,
        2102,
        "Invalid vin parameter",
    );
    failed(
        &phone
            .set("pims.vehicle.vin", json!({"actionType": "remote"}))
            .await,
        2101,
        "Missing vin parameter",
    );
    ok(&phone
        .set(
            "pims.vehicle.vin",
            json!({"actionType": "remote", "vin": VIN}),
        )
        .await);
    failed(
        &phone
            .set("pims.vehicle.command", json!({"action": "fly"}))
            .await,
        2102,
        "Invalid action parameter",
    );
    failed(
        &phone
            .set("pims.vehicle.command", json!({"action": "doors"}))
            .await,
        2101,
        "Missing doorState parameter",
    );
    failed(
        &phone
            .set(
                "pims.vehicle.command",
                json!({"action": "charge", "startNow": "yes"}),
            )
            .await,
        2102,
        "Invalid startNow parameter",
    );
    failed(
        &phone
            .set(
                "pims.vehicle.command",
                json!({"action": "chargeDeferredTime", "startNow": true,
                       "deferredTime": "PT25H00M", "checkStartCharge": false}),
            )
            .await,
        2102,
        "Invalid deferredTime parameter",
    );
    // Not paired yet: the car does not know this key (its own refusal, signed).
    failed(
        &phone
            .set("pims.vehicle.command", json!({"action": "horn"}))
            .await,
        2342,
        "Smartphone not paired with the vehicle",
    );
    g.car.new_pairing_code().unwrap();
    failed(
        &phone
            .set(
                "pims.vehicle.pairing",
                json!({"pairingCode": "AAAA-BBBB-CCCC"}),
            )
            .await,
        2102,
        "Invalid pairingCode parameter",
    );
}

/// The README's remote-command block, each call as written (only the car's pairing code, which
/// the car makes up, is substituted), against a phone enrolled with the block's PIN: the
/// reference's flow, then the one call, which finds the doors it unlocked unlocked (2360).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_remote_command_block_runs_as_written() {
    const MARKER: &str =
        "<!-- tests/remote_commands.rs runs this block's calls as written (the car's code substituted) -->";
    let readme = include_str!("../README.md");
    let block = readme[readme.find(MARKER).expect("README marker")..]
        .split("```")
        .nth(1)
        .expect("the block after the marker");
    let g = Garage::open().await;
    let token = g.server.token("carol").await;
    let phone = Phone::new(&g.server.url(), Some(token)).await;
    phone.add_phone_number(&g.server, support::NUMBER).await;
    phone.request_enrollment_code().await;
    ok(&phone
        .enroll("1234", &g.server.last_code(support::NUMBER))
        .await);
    let code = g.car.new_pairing_code().unwrap();
    let block = block.replace("5DEW-F6DE-5N10", &code);
    let mut outcomes = Vec::new();
    // The calls, in order: where `pims.<verb>(` starts.
    let mut starts: Vec<(usize, &str)> = ["subscribe", "set_async", "get_async"]
        .iter()
        .flat_map(|verb| {
            let pattern = format!("pims.{verb}(");
            block
                .match_indices(&pattern)
                .map(|(at, _)| (at, *verb))
                .collect::<Vec<_>>()
        })
        .collect();
    starts.sort();
    for (at, verb) in starts {
        let call = &block[at..];
        let api = call.split('"').nth(1).unwrap();
        let json_at = call.find("json!(").unwrap() + "json!(".len();
        let (mut depth, mut end) = (0, json_at);
        for (i, c) in call[json_at..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 && c == '}' {
                end = json_at + i + 1;
                break;
            }
        }
        let params: Value = serde_json::from_str(&call[json_at..end]).unwrap();
        let code = match verb {
            "subscribe" => {
                signals(&phone).await;
                0
            }
            "get_async" => phone.get(api, params).await.code().unwrap_or(0),
            "set_async" => phone.set(api, params).await.code().unwrap_or(0),
            other => panic!("the README calls pims.{other}"),
        };
        outcomes.push((api.to_string(), code));
    }
    let expected = [
        ("pims.vehicle.signal", 0),
        ("pims.vehicle.vin", 0),
        ("pims.vehicle.pairing", 0),
        ("pims.vehicle.command", 2302),
        ("pims.authentication.otp", 0),
        ("pims.vehicle.command", 0),
        ("pims.vehicle.command", 2360),
    ];
    let expected: Vec<(String, u32)> = expected.iter().map(|(a, c)| (a.to_string(), *c)).collect();
    assert_eq!(outcomes, expected);
    assert!(!g.car.state().unwrap().locked);
}
