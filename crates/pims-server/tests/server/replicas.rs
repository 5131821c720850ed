//! Two server replicas on one PostgreSQL database: limits hold across them exactly, because
//! they live in the database and every step updates them atomically.

use std::sync::Arc;

use pims_proto::*;

use crate::common::*;

/// One wrong-PIN enrollment attempt (a counted PIN attempt, then its failed proof).
async fn wrong_pin_attempt(s: Arc<TestServer>, token: String, code: String) -> ApiError {
    let session = match s.start_enrollment(&token, &code, "0000", None).await {
        Ok(session) => session,
        Err(e) => return e,
    };
    s.finish_enrollment(
        &token,
        &Device::new(),
        session,
        &uuid::Uuid::new_v4().to_string(),
    )
    .await
    .expect_err("a wrong PIN cannot enroll")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_pins_split_across_two_replicas_are_counted_exactly() {
    let Some(a) = TestServer::start_postgres(|_| {}).await else {
        return;
    };
    let a = Arc::new(a);
    let b = Arc::new(a.replica().await);
    let (token, _) = enrolled_account(&a, "alice", PHONE, "1234").await;
    b.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let code = a.last_code(PHONE);

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let replica = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(wrong_pin_attempt(replica, token.clone(), code.clone()));
    }
    let mut wrong = Vec::new();
    let (mut blocked_now, mut already_blocked) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            ApiError::WrongPin { attempts_remaining } => wrong.push(attempts_remaining),
            ApiError::PinBlocked => blocked_now += 1,
            ApiError::AccountBlocked => already_blocked += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    wrong.sort_unstable();
    assert_eq!(wrong, vec![1, 2, 3, 4]);
    assert_eq!((blocked_now, already_blocked), (1, 15));
    for replica in [&a, &b] {
        let status = replica.status(&token, None).await;
        assert_eq!(status.pin, PinState::Blocked);
        assert_eq!(status.pin_attempts_remaining, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sms_sends_split_across_two_replicas_stop_exactly_at_the_limits() {
    let Some(a) = TestServer::start_postgres(|c| {
        c.limits.sms_sends_per_hour_per_account = 4;
        c.limits.sms_sends_per_hour_per_number = 6;
    })
    .await
    else {
        return;
    };
    let a = Arc::new(a);
    let b = Arc::new(a.replica().await);

    // Per account: the certification used one send, so 3 of 16 concurrent sends go out.
    let token = a.token("alice").await;
    a.certify_phone(&token, PHONE).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (replica, token) = (
            if i % 2 == 0 { a.clone() } else { b.clone() },
            token.clone(),
        );
        tasks.spawn(async move {
            replica
                .send_code(&token, SmsPurpose::Enrollment, None)
                .await
        });
    }
    let (mut sent, mut limited) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Ok(_) => sent += 1,
            Err(ApiError::RateLimited {
                retry_after_seconds,
            }) => {
                assert_eq!(retry_after_seconds, 3600);
                limited += 1
            }
            Err(other) => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((sent, limited), (3, 13));

    // Per number, across accounts: 6 of 12 sends to one number from 6 accounts (2 each).
    const OTHER: &str = "+33698765432";
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let replica = if i % 2 == 0 { a.clone() } else { b.clone() };
        let token = replica.token(&format!("user-{}", i % 6)).await;
        tasks.spawn(async move {
            replica
                .send_code(&token, SmsPurpose::PhoneCertification, Some(OTHER))
                .await
        });
    }
    let (mut sent, mut limited) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Ok(_) => sent += 1,
            Err(ApiError::RateLimited { .. }) => limited += 1,
            Err(other) => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((sent, limited), (6, 6));
}
