//! The admin API over HTTP: its own bearer credential, and every action lands in the audit.

use pims_proto::endpoint::{admin, Method, Route};
use pims_proto::*;
use pims_server::admin::{ActionAnswer, AuditPage, DeviceList};
use pims_server::config::AdminToken;

use crate::common::*;

const ADMIN: &str = "admin-token-admin-token-admin-token";

async fn admin_server() -> TestServer {
    TestServer::start_with(|c| c.admin_token = Some(AdminToken(ADMIN.into()))).await
}

fn admin(s: &TestServer, route: Route, values: &[&str], token: &str) -> reqwest::RequestBuilder {
    let method = match route.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
    };
    s.http
        .request(method, format!("{}{}", s.url, route.path(values)))
        .bearer_auth(token)
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_token() {
    let s = admin_server().await;
    let user = s.token("alice").await;
    for token in ["wrong", user.as_str()] {
        let r = admin(&s, admin::DEVICES, &["alice"], token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            decode::<DeviceList>(r).await.err(),
            Some(ApiError::Unauthenticated)
        );
    }
    // Without an admin token configured there is no admin API at all.
    let plain = TestServer::start().await;
    let r = admin(&plain, admin::AUDIT, &[], ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_admin_lists_disables_unblocks_and_reads_the_audit() {
    let s = admin_server().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    for _ in 0..5 {
        s.otp(&token, &mut device, Some("0000")).await.unwrap_err();
    }
    assert_eq!(s.status(&token, None).await.pin, PinState::Blocked);

    let unblock = || admin(&s, admin::UNBLOCK, &["alice"], ADMIN).send();
    let answer: ActionAnswer = decode(unblock().await.unwrap()).await.unwrap();
    assert!(answer.changed);
    assert_eq!(s.status(&token, None).await.pin, PinState::Set);
    // Again: nothing to do, said so, and not audited (counted below).
    let answer: ActionAnswer = decode(unblock().await.unwrap()).await.unwrap();
    assert!(!answer.changed);
    s.otp(&token, &mut device, Some("1234")).await.unwrap();

    let r = admin(&s, admin::DEVICES, &["alice"], ADMIN)
        .send()
        .await
        .unwrap();
    let list: DeviceList = decode(r).await.unwrap();
    assert_eq!(list.devices.len(), 1);
    assert_eq!(list.devices[0].id, device.id);
    assert_eq!(list.devices[0].state, DeviceState::Active);

    let id = device.id.clone();
    let disable = || {
        admin(&s, admin::DEVICE_DISABLE, &["alice", &id], ADMIN)
            .json(&serde_json::json!({ "reason": "reported stolen" }))
            .send()
    };
    let answer: ActionAnswer = decode(disable().await.unwrap()).await.unwrap();
    assert!(answer.changed);
    let answer: ActionAnswer = decode(disable().await.unwrap()).await.unwrap();
    assert!(!answer.changed);
    let enable = || admin(&s, admin::DEVICE_ENABLE, &["alice", &id], ADMIN).send();
    let answer: ActionAnswer = decode(enable().await.unwrap()).await.unwrap();
    assert!(answer.changed);
    s.otp(&token, &mut device, None).await.unwrap();
    let answer: ActionAnswer = decode(disable().await.unwrap()).await.unwrap();
    assert!(answer.changed);
    assert_eq!(
        s.otp(&token, &mut device, None).await.err(),
        Some(ApiError::DeviceUnknown)
    );
    let r = admin(&s, admin::DEVICE_DISABLE, &["alice", "nope"], ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(decode_empty(r).await.err(), Some(ApiError::DeviceUnknown));

    let r = admin(&s, admin::AUDIT, &[], ADMIN)
        .query(&[("account", "alice"), ("limit", "1000")])
        .send()
        .await
        .unwrap();
    let page: AuditPage = decode(r).await.unwrap();
    let events: Vec<&str> = page.events.iter().map(|e| e.event.as_str()).collect();
    for expected in [
        "phone_number_added",
        "pin_registered",
        "device_enrolled",
        "device_activated",
        "pin_failure",
        "pin_blocked",
        "account_unblocked",
        "otp_issued",
        "device_disabled",
    ] {
        assert!(events.contains(&expected), "{expected} in {events:?}");
    }
    assert_eq!(events.iter().filter(|e| **e == "pin_failure").count(), 5);
    let count = |event: &str| events.iter().filter(|e| **e == event).count();
    assert_eq!(
        (
            count("account_unblocked"),
            count("device_disabled"),
            count("device_enabled")
        ),
        (1, 2, 1)
    );
    let reasons: Vec<_> = page
        .events
        .iter()
        .filter(|e| e.event == "device_disabled")
        .map(|e| e.detail.as_deref())
        .collect();
    assert_eq!(
        reasons,
        [
            Some("admin: reported stolen"),
            Some("admin: reported stolen")
        ]
    );
}
