//! Account management: device list and revocation scoped to the account, removing every
//! enrollment, and the operations an Active device signs (PIN reset and update, new number).

use pims_proto::pin::opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use pims_proto::pin::PinSuite;
use pims_proto::*;
use rand::rngs::OsRng;

use crate::common::*;

const PHONE2: &str = "+33698765432";

async fn devices(s: &TestServer, token: &str) -> Vec<DeviceInfo> {
    let r = s
        .request(reqwest::Method::GET, "/v1/devices", token)
        .send()
        .await
        .unwrap();
    decode::<DeviceList>(r).await.unwrap().devices
}

async fn revoke(s: &TestServer, token: &str, device_id: &str) -> Result<(), ApiError> {
    let path = format!("/v1/devices/{device_id}/revoke");
    decode_empty(
        s.request(reqwest::Method::POST, &path, token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn challenge(
    s: &TestServer,
    token: &str,
    device: &Device,
    req: &DeviceChallengeRequest,
) -> Result<DeviceChallenge, ApiError> {
    s.post(&format!("/v1/devices/{}/challenges", device.id), token, req)
        .await
}

fn proof(
    device: &mut Device,
    operation: &str,
    challenge: &DeviceChallenge,
    payload: &[u8],
) -> DeviceProof {
    device.counter += 1;
    let signature = device.sign(&transcript::device_operation(
        operation,
        &challenge.challenge_id,
        challenge.nonce.as_slice(),
        &device.id,
        device.counter,
        payload,
    ));
    DeviceProof {
        challenge_id: challenge.challenge_id.clone(),
        counter: device.counter,
        signature: signature.into(),
    }
}

/// A PIN reset of `device` to `pin` with `code`, signed by `signer` (normally the device).
async fn reset_pin(
    s: &TestServer,
    token: &str,
    device: &mut Device,
    signer: Option<&Device>,
    pin: &str,
    code: &str,
) -> Result<(), ApiError> {
    let start = ClientRegistration::<PinSuite>::start(&mut OsRng, pin.as_bytes()).unwrap();
    let req = DeviceChallengeRequest {
        login: None,
        register: Some(start.message.serialize().to_vec().into()),
    };
    let c = challenge(s, token, device, &req).await?;
    let response =
        RegistrationResponse::deserialize(c.register.as_ref().unwrap().as_slice()).unwrap();
    let ksf = ksf();
    let upload: Bytes = start
        .state
        .finish(
            &mut OsRng,
            pin.as_bytes(),
            response,
            ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&ksf)),
        )
        .unwrap()
        .message
        .serialize()
        .to_vec()
        .into();
    let mut proof = proof(device, transcript::PIN_RESET, &c, upload.as_slice());
    if let Some(other) = signer {
        proof.signature = other
            .sign(&transcript::device_operation(
                transcript::PIN_RESET,
                &c.challenge_id,
                c.nonce.as_slice(),
                &device.id,
                proof.counter,
                upload.as_slice(),
            ))
            .into();
    }
    let r = s
        .request(reqwest::Method::POST, "/v1/pin/reset", token)
        .json(&ResetPin {
            proof,
            sms_code: code.into(),
            registration: upload,
        })
        .send()
        .await
        .unwrap();
    decode_empty(r).await
}

async fn update_pin(
    s: &TestServer,
    token: &str,
    device: &mut Device,
    old: &str,
    new: &str,
) -> Result<(), ApiError> {
    let login = ClientLogin::<PinSuite>::start(&mut OsRng, old.as_bytes()).unwrap();
    let register = ClientRegistration::<PinSuite>::start(&mut OsRng, new.as_bytes()).unwrap();
    let req = DeviceChallengeRequest {
        login: Some(login.message.serialize().to_vec().into()),
        register: Some(register.message.serialize().to_vec().into()),
    };
    let c = challenge(s, token, device, &req).await?;
    let ksf = ksf();
    let response = CredentialResponse::deserialize(c.login.as_ref().unwrap().as_slice()).unwrap();
    let login = match login.state.finish(
        &mut OsRng,
        old.as_bytes(),
        response,
        ClientLoginFinishParameters::new(None, Identifiers::default(), Some(&ksf)),
    ) {
        Ok(done) => PinFinish::Login(done.message.serialize().to_vec().into()),
        Err(_) => PinFinish::LoginFailed,
    };
    let response =
        RegistrationResponse::deserialize(c.register.as_ref().unwrap().as_slice()).unwrap();
    let upload = register
        .state
        .finish(
            &mut OsRng,
            new.as_bytes(),
            response,
            ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&ksf)),
        )
        .unwrap();
    let mut req = UpdatePin {
        proof: DeviceProof {
            challenge_id: String::new(),
            counter: 0,
            signature: Bytes(Vec::new()),
        },
        login,
        registration: Some(upload.message.serialize().to_vec().into()),
    };
    req.proof = proof(device, transcript::PIN_UPDATE, &c, &req.signed_payload());
    let r = s
        .request(reqwest::Method::POST, "/v1/pin/update", token)
        .json(&req)
        .send()
        .await
        .unwrap();
    decode_empty(r).await
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
        .request(reqwest::Method::POST, "/v1/enrollments/remove", &token)
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
    let none = DeviceChallengeRequest {
        login: None,
        register: None,
    };
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE2))
        .await
        .unwrap();
    let code = s.last_code(PHONE2);
    let c = challenge(&s, &token, &device, &none).await.unwrap();
    let mut p = proof(
        &mut device,
        transcript::PHONE_NUMBER_MODIFY,
        &c,
        PHONE2.as_bytes(),
    );
    device.counter -= 1;
    p.counter = device.counter;
    p.signature = device
        .sign(&transcript::device_operation(
            transcript::PHONE_NUMBER_MODIFY,
            &c.challenge_id,
            c.nonce.as_slice(),
            &device.id,
            p.counter,
            PHONE2.as_bytes(),
        ))
        .into();
    let r = s
        .request(reqwest::Method::POST, "/v1/phone-number/modify", &token)
        .json(&ModifyPhoneNumber {
            proof: p,
            phone_number: PHONE2.into(),
            sms_code: code,
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
