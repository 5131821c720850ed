//! Lost answers, a server stopped mid-enrollment, and retries: the phone ends in a consistent
//! state, the server holds exactly one device, and nothing is lost.

mod support;

use serde_json::json;
use support::proxy::{Fault, FaultProxy};
use support::{failed, ok, Phone, TestServer, NUMBER, PIN};

async fn phone_ready_to_enroll(server: &TestServer, proxy: &FaultProxy) -> (Phone, String) {
    let phone = Phone::new(&proxy.url(), Some(server.token("u").await)).await;
    phone.add_phone_number(server, NUMBER).await;
    phone.request_enrollment_code().await;
    let code = server.last_code(NUMBER);
    (phone, code)
}

#[tokio::test]
async fn a_lost_enrollment_answer_is_retried_with_the_same_key_and_yields_one_device() {
    let server = TestServer::start().await;
    let proxy = FaultProxy::start(server.url()).await;
    let (phone, code) = phone_ready_to_enroll(&server, &proxy).await;

    proxy.inject("/finish", Fault::LoseAnswer, 1);
    ok(&phone.enroll(PIN, &code).await);

    assert_eq!(
        proxy.forwarded("/finish"),
        2,
        "the finish reached the server twice"
    );
    assert_eq!(server.devices("u"), 1);
    assert_eq!(
        server.query_i64("SELECT count(*) FROM idempotency WHERE account = ?1", "u"),
        1
    );
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": true})
    );
    ok(&phone.otp_with_pin(PIN).await);
}

#[tokio::test]
async fn server_stopped_after_committing_an_enrollment_then_restarted() {
    let mut server = TestServer::start().await;
    let proxy = FaultProxy::start(server.url()).await;
    let (phone, code) = phone_ready_to_enroll(&server, &proxy).await;

    // The server commits the device, the answer is lost, and every retry finds it gone.
    proxy.inject("/finish", Fault::LoseAnswer, 1);
    proxy.inject("/finish", Fault::Unreachable, 10);
    failed(
        &phone.enroll(PIN, &code).await,
        2314,
        "inwebo: No service is available",
    );
    assert_eq!(server.devices("u"), 1);
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": false})
    );

    server.restart().await;
    proxy.set_upstream(server.url());
    proxy.clear_faults();

    // The next call resends the stored finish; the server answers with the first outcome.
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": true})
    );
    assert_eq!(server.devices("u"), 1);
    let otp = ok(&phone.otp_with_pin(PIN).await)["otp"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(server.verify_otp(&otp).await.0, 200);
}

#[tokio::test]
async fn server_stopped_before_activation_then_restarted() {
    let mut server = TestServer::start().await;
    let proxy = FaultProxy::start(server.url()).await;
    let (phone, code) = phone_ready_to_enroll(&server, &proxy).await;

    proxy.inject("/activate", Fault::Unreachable, 1);
    failed(
        &phone.enroll(PIN, &code).await,
        2316,
        "inwebo: the operation succeeded but it required a post-synchronization which failed",
    );
    server.stop().await;
    // While the server is down the phone stays consistent: enrolled but not yet active.
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": false})
    );

    server.restart().await;
    proxy.set_upstream(server.url());
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": true})
    );
    assert_eq!(
        server.query_i64(
            "SELECT count(*) FROM devices WHERE account = ?1 AND state = 'active'",
            "u"
        ),
        1
    );
}

#[tokio::test]
async fn an_enrollment_that_never_reached_the_server_restarts_cleanly_after_it_expires() {
    let mut server = TestServer::start().await;
    let proxy = FaultProxy::start(server.url()).await;
    let (phone, code) = phone_ready_to_enroll(&server, &proxy).await;

    proxy.inject("/finish", Fault::Unreachable, 3);
    failed(
        &phone.enroll(PIN, &code).await,
        2314,
        "inwebo: No service is available",
    );
    assert_eq!(server.devices("u"), 0);

    // Down long enough for the enrollment session to expire.
    server.restart().await;
    proxy.set_upstream(server.url());
    server
        .clock
        .advance(server.config.limits.enrollment_session_ttl_seconds as i64 + 1);

    // The stale finish is refused and dropped; a fresh enrollment succeeds.
    phone.request_enrollment_code().await;
    let code = server.last_code(NUMBER);
    ok(&phone.enroll(PIN, &code).await);
    assert_eq!(server.devices("u"), 1);
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": true})
    );
}

#[tokio::test]
async fn a_phone_restarted_between_calls_keeps_its_enrollment() {
    let server = TestServer::start().await;
    let token = server.token("u").await;
    let dir = tempfile::tempdir().unwrap();
    {
        let phone = Phone::at(
            &server.url(),
            Some(token.clone()),
            dir.path().to_path_buf(),
            "ios",
        )
        .await;
        phone.enroll_first_device(&server).await;
    }
    let phone = Phone::at(&server.url(), Some(token), dir.path().to_path_buf(), "ios").await;
    assert_eq!(
        ok(&phone.is_device_activated().await),
        json!({"isDeviceActivated": true})
    );
    ok(&phone.otp_with_pin(PIN).await);
}
