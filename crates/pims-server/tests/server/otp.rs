use std::sync::Arc;

use pims_proto::endpoint as ep;
use pims_proto::*;

use crate::common::*;

#[tokio::test]
async fn otp_with_pin_is_verified_once_and_says_so() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let issued = s.otp(&token, &mut device, Some("1234")).await.unwrap();
    assert_eq!(issued.expires_in_seconds, 120);
    assert!(issued.otp.len() >= 20);
    let verified = s
        .verify("demo-rp", "demo-rp-secret", &issued.otp)
        .await
        .unwrap();
    assert_eq!(
        verified,
        OtpVerified {
            subject: "alice".into(),
            device_id: device.id.clone(),
            with_pin: true,
            issued_at: START,
            pin_set_at: Some(START),
            pin_set_by: Some(PinOrigin::Enrollment),
            pin_recovered_at: None,
            assurance: "unattested".into(),
        }
    );
    assert_eq!(
        s.verify("demo-rp", "demo-rp-secret", &issued.otp).await,
        Err(ApiError::OtpInvalid)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_verifications_succeed_exactly_once() {
    let s = Arc::new(TestServer::start().await);
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let otp = s.otp(&token, &mut device, None).await.unwrap().otp;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (s, otp) = (s.clone(), otp.clone());
        tasks.spawn(async move { s.verify("demo-rp", "demo-rp-secret", &otp).await });
    }
    let (mut ok, mut invalid) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(v) => {
                assert!(!v.with_pin);
                ok += 1
            }
            Err(ApiError::OtpInvalid) => invalid += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, invalid), (1, 9));
}

#[tokio::test]
async fn relying_party_credentials_are_required() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let otp = s.otp(&token, &mut device, None).await.unwrap().otp;
    assert_eq!(
        s.verify("demo-rp", "wrong-secret", &otp).await,
        Err(ApiError::RelyingPartyUnauthorized)
    );
    assert_eq!(
        s.verify("other-rp", "demo-rp-secret", &otp).await,
        Err(ApiError::RelyingPartyUnauthorized)
    );
    // The refused attempts did not use the OTP up.
    assert!(s.verify("demo-rp", "demo-rp-secret", &otp).await.is_ok());
}

#[tokio::test]
async fn otp_expires() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let otp = s.otp(&token, &mut device, None).await.unwrap().otp;
    s.clock.advance(120);
    assert_eq!(
        s.verify("demo-rp", "demo-rp-secret", &otp).await,
        Err(ApiError::OtpInvalid)
    );
    assert_eq!(
        s.verify("demo-rp", "demo-rp-secret", "not-an-otp").await,
        Err(ApiError::OtpInvalid)
    );
}

#[tokio::test]
async fn repeated_counter_disables_the_device() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    s.otp(&token, &mut device, None).await.unwrap();
    device.counter -= 1; // a clone replays the last counter
    assert_eq!(
        s.otp(&token, &mut device, None).await.err(),
        Some(ApiError::DeviceUnknown)
    );
    assert_eq!(
        s.status(&token, Some(&device.id)).await.device,
        Some(DeviceState::Disabled)
    );
    // The disabled device gets no further challenge, whatever its counter.
    assert_eq!(
        s.otp(&token, &mut device, None).await.err(),
        Some(ApiError::DeviceUnknown)
    );
}

#[tokio::test]
async fn challenge_is_single_use_and_expires() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let challenge: OtpChallenge = s
        .call::<ep::OtpChallenges>(
            &[],
            &token,
            &OtpChallengeRequest {
                device_id: device.id.clone(),
                pin: None,
                audience: None,
                proof: None,
            },
        )
        .await
        .unwrap();
    let answer = |counter: u64| OtpRequest {
        challenge_id: challenge.challenge_id.clone(),
        counter,
        pin: None,
        signature: device
            .sign(&transcript::otp(
                &challenge.challenge_id,
                challenge.nonce.as_slice(),
                &device.id,
                counter,
                &[],
            ))
            .into(),
    };
    let c = device.counter;
    s.call::<ep::Otp>(&[], &token, &answer(c + 1))
        .await
        .unwrap();
    assert_eq!(
        s.call::<ep::Otp>(&[], &token, &answer(c + 2)).await.err(),
        Some(ApiError::SessionExpired)
    );
    device.counter = c + 1;

    let late: OtpChallenge = s
        .call::<ep::OtpChallenges>(
            &[],
            &token,
            &OtpChallengeRequest {
                device_id: device.id.clone(),
                pin: None,
                audience: None,
                proof: None,
            },
        )
        .await
        .unwrap();
    s.clock.advance(120);
    let token = s.token("alice").await;
    let request = OtpRequest {
        challenge_id: late.challenge_id.clone(),
        counter: device.counter + 1,
        pin: None,
        signature: device
            .sign(&transcript::otp(
                &late.challenge_id,
                late.nonce.as_slice(),
                &device.id,
                device.counter + 1,
                &[],
            ))
            .into(),
    };
    assert_eq!(
        s.call::<ep::Otp>(&[], &token, &request).await.err(),
        Some(ApiError::SessionExpired)
    );
}

#[tokio::test]
async fn bad_otp_signature_is_refused() {
    let s = TestServer::start().await;
    let (token, device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let mut impostor = Device::new();
    impostor.id = device.id.clone();
    impostor.counter = 100;
    assert_eq!(
        s.otp(&token, &mut impostor, None).await.err(),
        Some(ApiError::BadSignature)
    );
    assert_eq!(
        s.status(&token, Some(&device.id)).await.device,
        Some(DeviceState::Active)
    );
}
