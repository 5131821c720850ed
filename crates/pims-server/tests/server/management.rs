//! Account management: device list and revocation scoped to the account, removing every
//! enrollment, and the operations an Active device signs (PIN reset and update, new number).

use pims_device::{PinExchange, Stretching};
use pims_proto::endpoint::{self as ep, Endpoint};
use pims_proto::pin::opaque_ke::{ClientLogin, ClientRegistration};
use pims_proto::pin::PinSuite;
use pims_proto::*;
use rand::rngs::OsRng;

use crate::common::*;

pub const PHONE2: &str = "+33698765432";

async fn devices(s: &TestServer, token: &str) -> Vec<DeviceInfo> {
    let r = s.at(ep::Devices::ROUTE, &[], token).send().await.unwrap();
    decode::<DeviceList>(r).await.unwrap().devices
}

async fn revoke(s: &TestServer, token: &str, device_id: &str) -> Result<(), ApiError> {
    decode_empty(
        s.at(ep::DeviceRevoke::ROUTE, &[device_id], token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A device challenge, the PIN login in it (when given) started with the device's signature.
pub async fn challenge(
    s: &TestServer,
    token: &str,
    device: &mut Device,
    login: Option<Bytes>,
) -> Result<DeviceChallenge, ApiError> {
    let proof = login.as_ref().map(|request| device.login_proof(request));
    let req = DeviceChallengeRequest { login, proof };
    s.call::<ep::DeviceChallenges>(&[&device.id], token, &req)
        .await
}

pub fn proof(
    device: &mut Device,
    operation: &str,
    challenge: &DeviceChallenge,
    payload: &[u8],
) -> DeviceProof {
    device.counter += 1;
    pims_device::operation_proof(operation, challenge, &device.id, device.counter, payload)
        .sign_with(|t| device.sign(t))
}

/// `POST /v1/pin/change` signed by the device (or by `signer` instead).
pub async fn start_pin_change(
    s: &TestServer,
    token: &str,
    device: &mut Device,
    signer: Option<&Device>,
    c: &DeviceChallenge,
    authorization: PinAuthorization,
    registration: Option<Bytes>,
) -> Result<PinChangeStarted, ApiError> {
    let mut req = StartPinChange {
        proof: DeviceProof::default(),
        authorization,
        registration,
    };
    req.proof = proof(device, req.operation(), c, &req.signed_payload());
    if let Some(other) = signer {
        let payload = req.signed_payload();
        let forged = pims_device::operation_proof(
            req.operation(),
            c,
            &device.id,
            req.proof.counter,
            &payload,
        );
        req.proof = forged.sign_with(|t| other.sign(t));
    }
    s.call::<ep::PinChange>(&[], token, &req).await
}

/// Finishes an authorized PIN change: registers `pin` against the start's response.
pub async fn finish_pin_change(
    s: &TestServer,
    token: &str,
    device: &mut Device,
    started: PinChangeStarted,
    registration: ClientRegistration<PinSuite>,
    pin: &str,
) -> Result<(), ApiError> {
    let next = started.next.expect("the start answered a registration");
    let upload = match pims_device::pin::finish(
        PinExchange::Register(registration),
        pin.as_bytes(),
        next.register.as_ref().unwrap().as_slice(),
        Stretching::Cheap,
    ) {
        Ok(PinFinish::Register(upload)) => upload,
        other => panic!("not a registration: {other:?}"),
    };
    let req = FinishPinChange {
        proof: proof(
            device,
            transcript::PIN_CHANGE_FINISH,
            &next,
            upload.as_slice(),
        ),
        registration: upload,
    };
    let r = s
        .at(ep::PinChangeFinish::ROUTE, &[], token)
        .json(&req)
        .send()
        .await
        .unwrap();
    decode_empty(r).await
}

/// A PIN reset of `device` to `pin` with `code`, signed by `signer` (normally the device).
pub async fn reset_pin(
    s: &TestServer,
    token: &str,
    device: &mut Device,
    signer: Option<&Device>,
    pin: &str,
    code: &str,
) -> Result<(), ApiError> {
    let c = challenge(s, token, device, None).await?;
    let start = ClientRegistration::<PinSuite>::start(&mut OsRng, pin.as_bytes()).unwrap();
    let started = start_pin_change(
        s,
        token,
        device,
        signer,
        &c,
        PinAuthorization::SmsCode(code.into()),
        Some(start.message.serialize().to_vec().into()),
    )
    .await?;
    finish_pin_change(s, token, device, started, start.state, pin).await
}

/// The device's login finalization for `pin` against a challenge's credential response.
pub fn finish_login(login: ClientLogin<PinSuite>, pin: &str, c: &DeviceChallenge) -> PinFinish {
    pims_device::pin::finish(
        PinExchange::Login(Box::new(login)),
        pin.as_bytes(),
        c.login.as_ref().unwrap().as_slice(),
        Stretching::Cheap,
    )
    .unwrap()
}

pub async fn update_pin(
    s: &TestServer,
    token: &str,
    device: &mut Device,
    old: &str,
    new: &str,
) -> Result<(), ApiError> {
    let login = ClientLogin::<PinSuite>::start(&mut OsRng, old.as_bytes()).unwrap();
    let request = Some(login.message.serialize().to_vec().into());
    let c = challenge(s, token, device, request).await?;
    let login = finish_login(login.state, old, &c);
    let register = ClientRegistration::<PinSuite>::start(&mut OsRng, new.as_bytes()).unwrap();
    let started = start_pin_change(
        s,
        token,
        device,
        None,
        &c,
        PinAuthorization::Pin(login),
        Some(register.message.serialize().to_vec().into()),
    )
    .await?;
    finish_pin_change(s, token, device, started, register.state, new).await
}

/// `POST /v1/phone-number/modify` to `number` with its certification `code`, proving `pin`
/// too when given.
pub async fn modify_phone_number(
    s: &TestServer,
    token: &str,
    device: &mut Device,
    number: &str,
    code: &str,
    pin: Option<&str>,
) -> Result<(), ApiError> {
    let req = modify_phone_number_request(s, token, device, number, code, pin).await?;
    let r = s
        .at(ep::PhoneNumberModify::ROUTE, &[], token)
        .json(&req)
        .send()
        .await
        .unwrap();
    decode_empty(r).await
}

/// Certifies `number` (its code read from the outbox) and moves the trusted number there with
/// `device`, with or without the PIN: what a phone thief does with a number of its own.
pub async fn move_number(
    s: &TestServer,
    token: &str,
    device: &mut Device,
    number: &str,
    pin: Option<&str>,
) -> Result<(), ApiError> {
    s.send_code(token, SmsPurpose::PhoneCertification, Some(number))
        .await?;
    let code = s.last_code(number);
    modify_phone_number(s, token, device, number, &code, pin).await
}

/// The signed request of a number change, over a fresh challenge, not sent.
pub async fn modify_phone_number_request(
    s: &TestServer,
    token: &str,
    device: &mut Device,
    number: &str,
    code: &str,
    pin: Option<&str>,
) -> Result<ModifyPhoneNumber, ApiError> {
    let login = pin.map(|p| {
        (
            p,
            ClientLogin::<PinSuite>::start(&mut OsRng, p.as_bytes()).unwrap(),
        )
    });
    let request = login
        .as_ref()
        .map(|(_, l)| l.message.serialize().to_vec().into());
    let c = challenge(s, token, device, request).await?;
    let mut req = ModifyPhoneNumber {
        proof: DeviceProof::default(),
        phone_number: number.into(),
        region: None,
        sms_code: code.into(),
        login: login.map(|(p, l)| finish_login(l.state, p, &c)),
    };
    req.proof = proof(
        device,
        transcript::PHONE_NUMBER_MODIFY,
        &c,
        &req.signed_payload(),
    );
    Ok(req)
}

#[tokio::test]
async fn devices_are_listed_and_revoked_only_within_their_account() {
    let s = TestServer::start().await;
    let (alice, mut a1) = enrolled_account(&s, "alice", PHONE, "1234").await;
    let a2 = s.enroll(&alice, "1234").await.unwrap();
    let (bob, _) = enrolled_account(&s, "bob", PHONE2, "5678").await;

    let listed = devices(&s, &alice).await;
    assert_eq!(
        listed
            .iter()
            .map(|d| d.device_id.as_str())
            .collect::<Vec<_>>(),
        vec![a1.id.as_str(), a2.id.as_str()]
    );
    assert!(listed.iter().all(|d| d.state == DeviceState::Active
        && d.platform == Platform::Android
        && d.created_at == START));
    assert_eq!(devices(&s, &bob).await.len(), 1);

    assert_eq!(revoke(&s, &bob, &a1.id).await, Err(ApiError::DeviceUnknown));
    s.otp(&alice, &mut a1, Some("1234")).await.unwrap();

    revoke(&s, &alice, &a2.id).await.unwrap();
    assert_eq!(
        s.status(&alice, Some(&a2.id)).await.device,
        Some(DeviceState::Disabled)
    );
    assert_eq!(devices(&s, &alice).await.len(), 1);
    assert_eq!(
        revoke(&s, &alice, &a2.id).await,
        Err(ApiError::DeviceUnknown)
    );
}

#[tokio::test]
async fn remove_enrollments_clears_devices_and_pin_even_when_blocked() {
    let s = TestServer::start_with(|c| c.limits.pin_attempts = 1).await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    assert_eq!(
        s.otp(&token, &mut device, Some("9999")).await.unwrap_err(),
        ApiError::PinBlocked
    );
    let r = s
        .at(ep::EnrollmentsRemove::ROUTE, &[], &token)
        .send()
        .await
        .unwrap();
    decode_empty(r).await.unwrap();

    let status = s.status(&token, Some(&device.id)).await;
    assert_eq!(status.pin, PinState::NotSet);
    assert_eq!(status.pin_attempts_remaining, 1);
    assert_eq!(status.device, Some(DeviceState::Disabled));
    assert_eq!(status.phone_number.as_deref(), Some(PHONE));
    assert!(devices(&s, &token).await.is_empty());
    // A new first device registers a new PIN.
    let mut fresh = s.enroll(&token, "4321").await.unwrap();
    s.otp(&token, &mut fresh, Some("4321")).await.unwrap();
}

#[tokio::test]
async fn pin_reset_needs_the_reset_code_and_a_signature_of_the_device() {
    let s = TestServer::start_with(|c| c.limits.pin_attempts = 1).await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    s.otp(&token, &mut device, Some("9999")).await.unwrap_err();
    s.send_code(&token, SmsPurpose::ResetPin, None)
        .await
        .unwrap();
    let code = s.last_code(PHONE);

    // Another key cannot sign for the device.
    let intruder = Device::new();
    assert_eq!(
        reset_pin(&s, &token, &mut device, Some(&intruder), "4321", &code).await,
        Err(ApiError::BadSignature)
    );
    // An enrollment code is not a reset code.
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let enrollment_code = s.last_code(PHONE);
    if enrollment_code != code {
        assert!(matches!(
            reset_pin(&s, &token, &mut device, None, "4321", &enrollment_code).await,
            Err(ApiError::SmsCodeInvalid { .. })
        ));
    }
    reset_pin(&s, &token, &mut device, None, "4321", &code)
        .await
        .unwrap();
    assert_eq!(s.status(&token, None).await.pin, PinState::Set);
    s.otp(&token, &mut device, Some("4321")).await.unwrap();
    // The code is used up.
    assert!(matches!(
        reset_pin(&s, &token, &mut device, None, "1111", &code).await,
        Err(ApiError::SmsCodeInvalid { .. })
    ));
}

#[tokio::test]
async fn pin_update_proves_the_old_pin_and_counts_a_wrong_one() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    assert_eq!(
        update_pin(&s, &token, &mut device, "0000", "4321").await,
        Err(ApiError::WrongPin {
            attempts_remaining: 4
        })
    );
    update_pin(&s, &token, &mut device, "1234", "4321")
        .await
        .unwrap();
    assert_eq!(s.status(&token, None).await.pin_attempts_remaining, 5);
    s.otp(&token, &mut device, Some("4321")).await.unwrap();
    assert!(s.otp(&token, &mut device, Some("1234")).await.is_err());
}

#[tokio::test]
async fn a_replayed_counter_on_an_operation_disables_the_device() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "alice", PHONE, "1234").await;
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE2))
        .await
        .unwrap();
    let code = s.last_code(PHONE2);
    let c = challenge(&s, &token, &mut device, None).await.unwrap();
    let mut p = proof(
        &mut device,
        transcript::PHONE_NUMBER_MODIFY,
        &c,
        PHONE2.as_bytes(),
    );
    device.counter -= 1;
    p.counter = device.counter;
    let replayed = pims_device::operation_proof(
        transcript::PHONE_NUMBER_MODIFY,
        &c,
        &device.id,
        p.counter,
        PHONE2.as_bytes(),
    );
    p = replayed.sign_with(|t| device.sign(t));
    let r = s
        .at(ep::PhoneNumberModify::ROUTE, &[], &token)
        .json(&ModifyPhoneNumber {
            proof: p,
            phone_number: PHONE2.into(),
            region: None,
            sms_code: code,
            login: None,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(decode_empty(r).await, Err(ApiError::DeviceUnknown));
    assert_eq!(
        s.status(&token, Some(&device.id)).await.device,
        Some(DeviceState::Disabled)
    );
    assert_eq!(
        s.status(&token, None).await.phone_number.as_deref(),
        Some(PHONE)
    );
}
