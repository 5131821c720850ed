use std::sync::Arc;

use pims_proto::endpoint as ep;
use pims_proto::*;

use crate::common::*;

/// One wrong-PIN enrollment attempt: start (a counted PIN attempt) then finish.
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
async fn twenty_concurrent_wrong_pins_are_counted_exactly() {
    let s = Arc::new(TestServer::start().await);
    let (token, _) = enrolled_account(&s, "alice", PHONE, "1234").await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let code = s.last_code(PHONE);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        tasks.spawn(wrong_pin_attempt(s.clone(), token.clone(), code.clone()));
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
    assert_eq!(blocked_now, 1);
    assert_eq!(already_blocked, 15);

    let failures: u32 = s
        .db()
        .query_row(
            "SELECT pin_failures FROM accounts WHERE subject = 'alice'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failures, 5);
    let status = s.status(&token, None).await;
    assert_eq!(status.pin, PinState::Blocked);
    assert_eq!(status.pin_attempts_remaining, 0);
    // Even the right PIN is refused now.
    assert_eq!(
        s.enroll(&token, "1234").await.err(),
        Some(ApiError::AccountBlocked)
    );
}

#[tokio::test]
async fn a_right_pin_resets_the_failure_count() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    assert_eq!(
        s.otp(&token, &mut device, Some("0000")).await.err(),
        Some(ApiError::WrongPin {
            attempts_remaining: 4
        })
    );
    assert_eq!(
        s.otp(&token, &mut device, Some("0001")).await.err(),
        Some(ApiError::WrongPin {
            attempts_remaining: 3
        })
    );
    s.otp(&token, &mut device, Some("1234")).await.unwrap();
    assert_eq!(s.status(&token, None).await.pin_attempts_remaining, 5);
}

#[tokio::test]
async fn an_unanswered_login_counts_as_a_failure() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let login = pims_proto::pin::opaque_ke::ClientLogin::<pims_proto::pin::PinSuite>::start(
        &mut rand::rngs::OsRng,
        b"1234",
    )
    .unwrap();
    let request: Bytes = login.message.serialize().to_vec().into();
    let proof = device.login_proof(&request);
    let _: OtpChallenge = s
        .call::<ep::OtpChallenges>(
            &[],
            &token,
            &OtpChallengeRequest {
                device_id: device.id.clone(),
                pin: Some(request),
                audience: None,
                proof: Some(proof),
            },
        )
        .await
        .unwrap();
    s.clock.advance(120);
    assert_eq!(s.status(&token, None).await.pin_attempts_remaining, 4);
}

#[tokio::test]
async fn the_limit_th_failure_blocks_and_later_attempts_are_refused_upfront() {
    let s = TestServer::start_with(|c| c.limits.pin_attempts = 2).await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    assert_eq!(
        s.otp(&token, &mut device, Some("0000")).await.err(),
        Some(ApiError::WrongPin {
            attempts_remaining: 1
        })
    );
    assert_eq!(
        s.otp(&token, &mut device, Some("0000")).await.err(),
        Some(ApiError::PinBlocked)
    );
    assert_eq!(
        s.otp(&token, &mut device, Some("1234")).await.err(),
        Some(ApiError::AccountBlocked)
    );
    let blocks: i64 = s
        .db()
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE event = 'pin_blocked'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(blocks, 1);
}
