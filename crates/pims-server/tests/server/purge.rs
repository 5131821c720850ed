//! The server purges expired rows in the background, every `purge_interval_seconds`.

use std::time::Duration;

use pims_proto::*;

use crate::common::*;

fn counts(s: &TestServer) -> (i64, i64, i64) {
    let db = s.db();
    let count = |table: &str| {
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    (count("sms_codes"), count("sms_sends"), count("audit"))
}

#[tokio::test]
async fn the_server_purges_expired_rows_on_its_interval() {
    let s = TestServer::start_with(|c| c.purge_interval_seconds = 1).await;
    let token = s.token("alice").await;
    s.certify_phone(&token, PHONE).await;
    let (_, _, audited) = counts(&s);
    assert!(audited >= 1);
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    // Live rows survive a purge round.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(counts(&s), (2, 2, audited));

    // Past the code's lifetime plus the hour of grace, and past the send window.
    s.clock.advance(600 + 3600);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counts(&s) != (0, 0, audited) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not purged: {:?}",
            counts(&s)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
