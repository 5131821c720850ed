use pims_proto::endpoint as ep;
use pims_proto::*;

use crate::common::*;

#[tokio::test]
async fn first_device_registers_the_pin_and_a_second_proves_it() {
    let s = TestServer::start().await;
    let (token, first) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let status = s.status(&token, Some(&first.id)).await;
    assert_eq!(
        status,
        AccountStatus {
            phone_number: Some(PHONE.into()),
            pin: PinState::Set,
            pin_attempts_remaining: 5,
            device: Some(DeviceState::Active),
            recovery_held_until: None,
        }
    );
    let second = s.enroll(&token, "1234").await.unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(
        s.status(&token, Some(&second.id)).await.device,
        Some(DeviceState::Active)
    );
}

#[tokio::test]
async fn enroll_with_phone_number_makes_the_number_trusted() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .unwrap();
    let session = s
        .start_enrollment(&token, &s.last_code(PHONE), "1234", Some(PHONE))
        .await
        .unwrap();
    let mut device = Device::new();
    let done = s
        .finish_enrollment(&token, &device, session, "k")
        .await
        .unwrap();
    device.id = done.device_id;
    device.activation_nonce = done.activation_nonce.0;
    s.activate(&token, &mut device).await.unwrap();
    let status = s.status(&token, Some(&device.id)).await;
    assert_eq!(status.phone_number.as_deref(), Some(PHONE));
    assert_eq!(status.pin, PinState::Set);
    // A second enrollWithPhoneNumber is refused: the account has a number now.
    s.send_code(&token, SmsPurpose::PhoneCertification, Some("+33612345679"))
        .await
        .unwrap();
    assert_eq!(
        s.start_enrollment(
            &token,
            &s.last_code("+33612345679"),
            "1234",
            Some("+33612345679")
        )
        .await
        .err(),
        Some(ApiError::PhoneNumberAlreadyRegistered)
    );
}

#[tokio::test]
async fn enrollment_without_trusted_number_is_refused() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    assert_eq!(
        s.start_enrollment(&token, "123456", "1234", None)
            .await
            .err(),
        Some(ApiError::NoPhoneNumber)
    );
}

#[tokio::test]
async fn enrollment_start_with_wrong_code_counts_a_check() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.certify_phone(&token, PHONE).await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let code = s.last_code(PHONE);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    assert_eq!(
        s.start_enrollment(&token, wrong, "1234", None).await.err(),
        Some(ApiError::SmsCodeInvalid {
            expired: false,
            attempts_remaining: 4
        })
    );
}

#[tokio::test]
async fn register_when_a_pin_exists_is_a_pin_state_conflict() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.certify_phone(&token, PHONE).await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let code = s.last_code(PHONE);
    // Two registrations race; the second to finish finds the PIN already set.
    let a = s
        .start_enrollment(&token, &code, "1234", None)
        .await
        .unwrap();
    let b = s
        .start_enrollment(&token, &code, "9999", None)
        .await
        .unwrap();
    s.finish_enrollment(&token, &Device::new(), a, "a")
        .await
        .unwrap();
    assert_eq!(
        s.finish_enrollment(&token, &Device::new(), b, "b").await,
        Err(ApiError::PinStateChanged)
    );
}

#[tokio::test]
async fn finish_replayed_with_the_same_key_yields_one_device_even_after_restart() {
    let mut s = TestServer::start().await;
    let token = s.token("alice").await;
    s.certify_phone(&token, PHONE).await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let session = s
        .start_enrollment(&token, &s.last_code(PHONE), "1234", None)
        .await
        .unwrap();
    let enrollment_id = session.started.enrollment_id.clone();
    let device = Device::new();
    let request = session.finish_request(&device, "same-key");
    let at: &[&str] = &[&enrollment_id];
    let first = s
        .call::<ep::EnrollmentFinish>(at, &token, &request)
        .await
        .unwrap();
    let second = s
        .call::<ep::EnrollmentFinish>(at, &token, &request)
        .await
        .unwrap();
    assert_eq!(first, second);
    s.restart().await;
    let third = s
        .call::<ep::EnrollmentFinish>(at, &token, &request)
        .await
        .unwrap();
    assert_eq!(first, third);
    // A different key finds the session finished.
    let mut other = request.clone();
    other.idempotency_key = "other-key".into();
    assert_eq!(
        s.call::<ep::EnrollmentFinish>(at, &token, &other).await,
        Err(ApiError::SessionExpired)
    );
    let devices: i64 = s
        .db()
        .query_row("SELECT COUNT(*) FROM devices", [], |r| r.get(0))
        .unwrap();
    assert_eq!(devices, 1);
}

#[tokio::test]
async fn a_failed_finish_is_replayed_as_the_same_failure() {
    let s = TestServer::start().await;
    let (token, _) = enrolled_account(&s, "alice", PHONE, "1234").await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let session = s
        .start_enrollment(&token, &s.last_code(PHONE), "0000", None)
        .await
        .unwrap();
    let id = session.started.enrollment_id.clone();
    let request = session.finish_request(&Device::new(), "k");
    let wrong = Err(ApiError::WrongPin {
        attempts_remaining: 4,
    });
    assert_eq!(
        s.call::<ep::EnrollmentFinish>(&[&id], &token, &request)
            .await,
        wrong
    );
    assert_eq!(
        s.call::<ep::EnrollmentFinish>(&[&id], &token, &request)
            .await,
        wrong
    );
    assert_eq!(s.status(&token, None).await.pin_attempts_remaining, 4);
}

#[tokio::test]
async fn a_bad_enrollment_signature_is_refused() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.certify_phone(&token, PHONE).await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let session = s
        .start_enrollment(&token, &s.last_code(PHONE), "1234", None)
        .await
        .unwrap();
    let id = session.started.enrollment_id.clone();
    let mut request = session.finish_request(&Device::new(), "k");
    // Signed by another key than the one registered.
    request.signature = Device::new().sign(b"anything").into();
    assert_eq!(
        s.call::<ep::EnrollmentFinish>(&[&id], &token, &request)
            .await,
        Err(ApiError::BadSignature)
    );
    assert_eq!(s.status(&token, None).await.pin, PinState::NotSet);
}

#[tokio::test]
async fn enrollment_session_expires() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.certify_phone(&token, PHONE).await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let session = s
        .start_enrollment(&token, &s.last_code(PHONE), "1234", None)
        .await
        .unwrap();
    s.clock.advance(600);
    assert_eq!(
        s.finish_enrollment(&token, &Device::new(), session, "k")
            .await,
        Err(ApiError::SessionExpired)
    );
}

#[tokio::test]
async fn device_limit_is_enforced() {
    let s = TestServer::start_with(|c| c.limits.max_devices_per_account = 1).await;
    let (token, _) = enrolled_account(&s, "alice", PHONE, "1234").await;
    assert_eq!(
        s.enroll(&token, "1234").await.err(),
        Some(ApiError::DeviceLimitReached)
    );
}

#[tokio::test]
async fn pending_device_is_activated_once_and_reactivation_succeeds() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.certify_phone(&token, PHONE).await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let session = s
        .start_enrollment(&token, &s.last_code(PHONE), "1234", None)
        .await
        .unwrap();
    let mut device = Device::new();
    let done = s
        .finish_enrollment(&token, &device, session, "k")
        .await
        .unwrap();
    device.id = done.device_id;
    device.activation_nonce = done.activation_nonce.0;
    assert_eq!(
        s.status(&token, Some(&device.id)).await.device,
        Some(DeviceState::Pending)
    );
    s.activate(&token, &mut device).await.unwrap();
    s.activate(&token, &mut device).await.unwrap();
    assert_eq!(
        s.status(&token, Some(&device.id)).await.device,
        Some(DeviceState::Active)
    );
}

#[tokio::test]
async fn pending_device_expires() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.certify_phone(&token, PHONE).await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let session = s
        .start_enrollment(&token, &s.last_code(PHONE), "1234", None)
        .await
        .unwrap();
    let mut device = Device::new();
    let done = s
        .finish_enrollment(&token, &device, session, "k")
        .await
        .unwrap();
    device.id = done.device_id;
    device.activation_nonce = done.activation_nonce.0;
    s.clock.advance(86_400);
    let token = s.token("alice").await;
    assert_eq!(
        s.activate(&token, &mut device).await,
        Err(ApiError::DeviceUnknown)
    );
    assert_eq!(s.status(&token, Some(&device.id)).await.device, None);
}

#[tokio::test]
async fn replayed_activation_counter_disables_the_device() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    device.counter -= 1; // replay counter 1
    assert_eq!(
        s.activate(&token, &mut device).await,
        Err(ApiError::DeviceUnknown)
    );
    assert_eq!(
        s.status(&token, Some(&device.id)).await.device,
        Some(DeviceState::Disabled)
    );
    let audited: i64 = s
        .db()
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE event = 'device_disabled' AND device_id = ?1",
            [&device.id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn restart_mid_enrollment_keeps_account_pin_and_session() {
    let mut s = TestServer::start().await;
    let (token, _) = enrolled_account(&s, "alice", PHONE, "1234").await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let session = s
        .start_enrollment(&token, &s.last_code(PHONE), "1234", None)
        .await
        .unwrap();
    s.restart().await;
    // The session survives and the PIN record proves the same PIN.
    let mut device = Device::new();
    let done = s
        .finish_enrollment(&token, &device, session, "k")
        .await
        .unwrap();
    device.id = done.device_id;
    device.activation_nonce = done.activation_nonce.0;
    s.activate(&token, &mut device).await.unwrap();
    let status = s.status(&token, Some(&device.id)).await;
    assert_eq!(status.pin, PinState::Set);
    assert_eq!(status.phone_number.as_deref(), Some(PHONE));
    assert_eq!(status.device, Some(DeviceState::Active));
    // A wrong PIN is still wrong after the restart.
    assert_eq!(
        s.enroll(&token, "9999").await.err(),
        Some(ApiError::WrongPin {
            attempts_remaining: 4
        })
    );
}
