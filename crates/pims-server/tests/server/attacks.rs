//! The attacker suite of docs/THREAT-MODEL.md, for the PIN and the proofs: each test plays one
//! attacker over raw HTTP and raw OPAQUE (never through the SDK) and asserts the attack gets
//! nothing. Where the store matters the scenario runs on SQLite and on PostgreSQL.

use pims_proto::endpoint::{self as ep, Endpoint};
use pims_proto::pin::opaque_ke::{ClientLogin, ClientRegistration, CredentialRequest};
use pims_proto::pin::PinSuite;
use pims_proto::*;
use rand::rngs::OsRng;

use crate::common::*;
use crate::management::{
    challenge, finish_login, finish_pin_change, modify_phone_number, proof, reset_pin,
    start_pin_change, update_pin, PHONE2,
};

/// The victim's PIN; the attacker does not know it.
const PIN: &str = "4821";

/// Runs one scenario on SQLite and, when PostgreSQL is installed, on PostgreSQL.
macro_rules! on_both_stores {
    ($name:ident, $scenario:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn on_sqlite() {
                $scenario(TestServer::start().await).await;
            }

            #[tokio::test]
            async fn on_postgres() {
                if let Some(s) = TestServer::start_postgres(|_| {}).await {
                    $scenario(s).await;
                }
            }
        }
    };
}

/// The first 32 bytes of an OPAQUE registration or credential response: the OPRF evaluation
/// of the blinded element the request carried (ristretto255).
fn evaluation(message: &[u8]) -> &[u8] {
    &message[..32]
}

on_both_stores!(
    an_access_token_thief_gets_no_oprf_evaluation_to_guess_offline,
    no_oprf_oracle
);

/// Token thief (access token and a device id, no SMS code, no PIN). The offline attack needs
/// the OPRF evaluated under the key of the account's PIN record for many guesses: any endpoint
/// that answers a registration request under that key without a counted attempt is such an
/// oracle. The attacker cannot even start a login without the device's key; given the key too,
/// it tries every endpoint that returns OPAQUE messages with one guess each: none evaluates
/// it, and the only evaluation obtained is the one of a counted login.
async fn no_oprf_oracle(s: TestServer) {
    let (token, device) = enrolled_account(&s, "victim", PHONE, PIN).await;
    let guess = ClientRegistration::<PinSuite>::start(&mut OsRng, b"0000").unwrap();
    let blinded: Vec<u8> = guess.message.serialize().to_vec();

    // 0. Even a counted login is out of reach: starting one takes the device's signature.
    let login = ClientLogin::<PinSuite>::start(&mut OsRng, b"0000").unwrap();
    let request: Bytes = login.message.serialize().to_vec().into();
    let mut impostor = Device::new();
    impostor.id = device.id.clone();
    for proof in [None, Some(impostor.login_proof(&request))] {
        let started: Result<OtpChallenge, _> = s
            .call::<ep::OtpChallenges>(
                &[],
                &token,
                &OtpChallengeRequest {
                    device_id: device.id.clone(),
                    pin: Some(request.clone()),
                    audience: None,
                    proof: proof.clone(),
                },
            )
            .await;
        let expected = match proof {
            None => ApiError::UnsupportedProtocol {
                supported: vec![PROTOCOL_VERSION],
            },
            Some(_) => ApiError::BadSignature,
        };
        assert_eq!(started.err(), Some(expected));
    }
    assert_eq!(s.status(&token, None).await.pin_attempts_remaining, 5);

    // 1. A device challenge with a registration request (what main answered before).
    let r = s
        .at(ep::DeviceChallenges::ROUTE, &[&device.id], &token)
        .json(&serde_json::json!({ "login": null, "register": Bytes(blinded.clone()) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body.get("register"), None, "a registration response leaked");

    // 2. A PIN change authorized by a wrong SMS code: counted against the code, no answer.
    let mut thief = device;
    let c = challenge(&s, &token, &mut thief, None).await.unwrap();
    let refused = start_pin_change(
        &s,
        &token,
        &mut thief,
        None,
        &c,
        PinAuthorization::SmsCode("000000".into()),
        Some(blinded.clone().into()),
    )
    .await;
    assert!(matches!(refused, Err(ApiError::SmsCodeInvalid { .. })));

    // 3. A PIN change "authorized" by a PIN the device could not prove: a counted attempt.
    let login = ClientLogin::<PinSuite>::start(&mut OsRng, b"0000").unwrap();
    let c = challenge(
        &s,
        &token,
        &mut thief,
        Some(login.message.serialize().to_vec().into()),
    )
    .await
    .unwrap();
    let refused = start_pin_change(
        &s,
        &token,
        &mut thief,
        None,
        &c,
        PinAuthorization::Pin(PinFinish::LoginFailed),
        Some(blinded.clone().into()),
    )
    .await;
    assert_eq!(
        refused.err(),
        Some(ApiError::WrongPin {
            attempts_remaining: 4
        })
    );

    // 4. An enrollment start asking to register while the account has a PIN.
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let refused: Result<EnrollmentStarted, _> = s
        .call::<ep::EnrollmentStart>(
            &[],
            &token,
            &StartEnrollment {
                sms_code: s.last_code(PHONE),
                phone_number: None,
                region: None,
                pin: PinStart::Register(blinded.clone().into()),
            },
        )
        .await;
    assert_eq!(refused.err(), Some(ApiError::PinStateChanged));

    // The attacker's whole haul: evaluations of its guess under the PIN record's key obtained
    // without a counted attempt. None; the one counted attempt (3) is on the books.
    assert_eq!(s.status(&token, None).await.pin_attempts_remaining, 4);
}

on_both_stores!(
    a_sim_swapper_s_registration_says_nothing_about_the_current_pin,
    fresh_credential_identifier
);

/// SIM swapper (token and the victim's SMS) authorizes a PIN reset with the real code and gets
/// one registration response. It is computed under a fresh credential identifier: the same
/// blinded element evaluates differently there than in a login against the current record, so
/// it cannot be used to test guesses of the current PIN offline.
async fn fresh_credential_identifier(s: TestServer) {
    let (token, device) = enrolled_account(&s, "victim", PHONE, PIN).await;
    let mut thief = device;
    let registration = ClientRegistration::<PinSuite>::start(&mut OsRng, b"0000").unwrap();
    let blinded = registration.message.serialize().to_vec();

    s.send_code(&token, SmsPurpose::ResetPin, None)
        .await
        .unwrap();
    let code = s.last_code(PHONE);
    let c = challenge(&s, &token, &mut thief, None).await.unwrap();
    let started = start_pin_change(
        &s,
        &token,
        &mut thief,
        None,
        &c,
        PinAuthorization::SmsCode(code),
        Some(blinded.clone().into()),
    )
    .await
    .unwrap();
    let registered = started.next.unwrap().register.unwrap();

    // A login whose credential request carries the very same blinded element.
    let login = ClientLogin::<PinSuite>::start(&mut OsRng, b"0000").unwrap();
    let mut request = login.message.serialize().to_vec();
    request[..32].copy_from_slice(&blinded[..32]);
    CredentialRequest::<PinSuite>::deserialize(&request).unwrap();
    let c = challenge(&s, &token, &mut thief, Some(request.into()))
        .await
        .unwrap();
    let logged_in = c.login.unwrap();
    assert_ne!(
        evaluation(registered.as_slice()),
        evaluation(logged_in.as_slice()),
        "the registration was evaluated under the current record's OPRF key"
    );
}

/// Database reader (a copy of the database, not the key file) who also holds the phone
/// without its PIN. The server state of an open PIN login holds the MAC the server expects
/// (opaque-ke serialises it after the 64-byte session key); in clear it would finish the login.
/// Sealed under a key from the key file, it is useless: the attempt is a counted wrong PIN.
#[tokio::test]
async fn a_database_reader_cannot_finish_an_open_pin_login() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "victim", PHONE, PIN).await;
    let login = ClientLogin::<PinSuite>::start(&mut OsRng, b"0000").unwrap();
    let request: Bytes = login.message.serialize().to_vec().into();
    let proof = device.login_proof(&request);
    let challenge: OtpChallenge = s
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
    let stored: Vec<u8> = s
        .db()
        .query_row(
            "SELECT login_state FROM otp_challenges WHERE id = ?1",
            [&challenge.challenge_id],
            |r| r.get(0),
        )
        .unwrap();
    // What the database holds is sealed: the bytes where the expected MAC would sit are not it.
    let forged = PinFinish::Login(stored[64..128].to_vec().into());
    device.counter += 1;
    let signature = device.sign(&transcript::otp(
        &challenge.challenge_id,
        challenge.nonce.as_slice(),
        &device.id,
        device.counter,
        forged.proof(),
    ));
    let issued: Result<OtpIssued, _> = s
        .call::<ep::Otp>(
            &[],
            &token,
            &OtpRequest {
                challenge_id: challenge.challenge_id,
                counter: device.counter,
                pin: Some(forged),
                signature: signature.into(),
            },
        )
        .await;
    assert_eq!(
        issued.err(),
        Some(ApiError::WrongPin {
            attempts_remaining: 4
        })
    );
}

on_both_stores!(
    a_phone_thief_cannot_turn_a_number_change_into_a_new_pin,
    number_change_then_recovery
);

/// Phone thief without the PIN (the device key and the app's token, not the PIN). The thief
/// certifies a number of their own and moves the trusted number there: allowed, as the
/// reference flow asks no PIN, but the old number is told at once, and recovering the PIN by
/// SMS on the new number — a reset, or removing everything and enrolling again — is held.
/// When the app passes `pinCode`, a wrong one is a counted failure and nothing moves.
async fn number_change_then_recovery(s: TestServer) {
    let (token, device) = enrolled_account(&s, "victim", PHONE, PIN).await;
    let mut thief = device;

    // With the PIN asked, a guess is counted and the number stays.
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE2))
        .await
        .unwrap();
    let code = s.last_code(PHONE2);
    assert_eq!(
        modify_phone_number(&s, &token, &mut thief, PHONE2, &code, Some("0000")).await,
        Err(ApiError::WrongPin {
            attempts_remaining: 4
        })
    );
    assert_eq!(
        s.status(&token, None).await.phone_number.as_deref(),
        Some(PHONE)
    );

    // Without the PIN (the reference's own call), the change goes through and is announced.
    modify_phone_number(&s, &token, &mut thief, PHONE2, &code, None)
        .await
        .unwrap();
    let to_owner = pims_server::sms::read_outbox(&s.outbox())
        .unwrap()
        .into_iter()
        .rfind(|m| m.to == PHONE)
        .unwrap();
    assert!(
        pims_server::sms::restore_code_from_text(&to_owner.text).is_some(),
        "the owner is told, with the code that undoes it"
    );

    // No reset code is even sent to the thief's number while recovery is held…
    let hold = s.config.limits.recovery_hold_after_number_change_seconds;
    let to_thief = || {
        pims_server::sms::read_outbox(&s.outbox())
            .unwrap()
            .iter()
            .filter(|m| m.to == PHONE2)
            .count()
    };
    let sent_before = to_thief();
    assert_eq!(
        s.send_code(&token, SmsPurpose::ResetPin, None).await.err(),
        Some(ApiError::RecoveryHeld {
            retry_after_seconds: hold
        })
    );
    assert_eq!(to_thief(), sent_before);
    // …and starting over with a PIN of the thief's choosing is held too.
    let r = s
        .at(ep::EnrollmentsRemove::ROUTE, &[], &token)
        .send()
        .await
        .unwrap();
    decode_empty(r).await.unwrap();
    assert_eq!(
        s.enroll(&token, "1111").await.err(),
        Some(ApiError::RecoveryHeld {
            retry_after_seconds: hold
        })
    );
}

/// Helper used by the relying-party rows: a server with two relying parties.
async fn two_relying_parties() -> TestServer {
    TestServer::start_with(|c| {
        c.relying_parties.push(pims_server::config::RelyingParty {
            id: "other-rp".into(),
            secret: "other-rp-secret".into(),
            required_assurance: None,
        });
        c.otp_default_audience = Some("demo-rp".into());
    })
    .await
}

/// Malicious or compromised relying party: an OTP it received (or stole) for another service
/// is refused when it presents it, and is not used up by the attempt.
#[tokio::test]
async fn a_relying_party_cannot_use_an_otp_issued_for_another() {
    let s = two_relying_parties().await;
    let (token, mut device) = enrolled_account(&s, "victim", PHONE, PIN).await;
    let for_demo = s.otp(&token, &mut device, Some(PIN)).await.unwrap();
    assert_eq!(
        s.verify("other-rp", "other-rp-secret", &for_demo.otp).await,
        Err(ApiError::OtpInvalid)
    );
    assert!(s
        .verify("demo-rp", "demo-rp-secret", &for_demo.otp)
        .await
        .is_ok());
    let for_other = s
        .otp_for(&token, &mut device, Some(PIN), Some("other-rp"))
        .await
        .unwrap();
    assert_eq!(
        s.verify("demo-rp", "demo-rp-secret", &for_other.otp).await,
        Err(ApiError::OtpInvalid)
    );
    assert_eq!(
        s.verify("other-rp", "other-rp-secret", &for_other.otp)
            .await
            .map(|v| v.with_pin),
        Ok(true)
    );
    assert_eq!(
        s.otp_for(&token, &mut device, None, Some("nobody")).await,
        Err(ApiError::InvalidParameter {
            name: "audience".into()
        })
    );
}

on_both_stores!(open_otps_die_with_their_device, otps_die_with_the_device);

/// The user's other device (or the owner from a new phone) revokes a lost device, or removes
/// everything: OTPs the lost device had already obtained stop verifying at once.
async fn otps_die_with_the_device(s: TestServer) {
    let (token, mut lost) = enrolled_account(&s, "victim", PHONE, PIN).await;
    let mut other = s.enroll(&token, PIN).await.unwrap();
    let before_revoke = s.otp(&token, &mut lost, Some(PIN)).await.unwrap();
    let from_other = s.otp(&token, &mut other, None).await.unwrap();
    let r = s
        .at(ep::DeviceRevoke::ROUTE, &[&lost.id], &token)
        .send()
        .await
        .unwrap();
    decode_empty(r).await.unwrap();
    assert_eq!(
        s.verify("demo-rp", "demo-rp-secret", &before_revoke.otp)
            .await,
        Err(ApiError::OtpInvalid)
    );
    let before_remove = s.otp(&token, &mut other, Some(PIN)).await.unwrap();
    let r = s
        .at(ep::EnrollmentsRemove::ROUTE, &[], &token)
        .send()
        .await
        .unwrap();
    decode_empty(r).await.unwrap();
    for otp in [from_other.otp, before_remove.otp] {
        assert_eq!(
            s.verify("demo-rp", "demo-rp-secret", &otp).await,
            Err(ApiError::OtpInvalid)
        );
    }
}

on_both_stores!(
    a_sim_swapper_s_recovery_is_seen_by_the_owner_and_the_relying_party,
    recovery_is_visible
);

/// SIM swapper (token and the victim's SMS, no device, no PIN): removing every enrollment and
/// enrolling again with a PIN of their choice works — that is the reference's recovery — but
/// the trusted number is told of the removal and the enrollment, and the relying party sees
/// that the PIN was just set by SMS recovery, so it can ask for more before a remote command.
async fn recovery_is_visible(s: TestServer) {
    let (token, mut device) = enrolled_account(&s, "victim", PHONE, PIN).await;
    let genuine = s.otp(&token, &mut device, Some(PIN)).await.unwrap();
    let verified = s
        .verify("demo-rp", "demo-rp-secret", &genuine.otp)
        .await
        .unwrap();
    assert_eq!(verified.pin_set_by, Some(PinOrigin::Enrollment));

    s.clock.advance(60);
    let r = s
        .at(ep::EnrollmentsRemove::ROUTE, &[], &token)
        .send()
        .await
        .unwrap();
    decode_empty(r).await.unwrap();
    let mut swapped = s.enroll(&token, "1111").await.unwrap();
    let notices: Vec<String> = pims_server::sms::read_outbox(&s.outbox())
        .unwrap()
        .into_iter()
        .filter(|m| m.to == PHONE && pims_server::sms::code_from_text(&m.text).is_none())
        .map(|m| m.text)
        .collect();
    assert_eq!(
        notices,
        [
            pims_server::sms::Notice::DeviceEnrolled,
            pims_server::sms::Notice::EnrollmentsRemoved,
            pims_server::sms::Notice::DeviceEnrolled,
        ]
        .map(|n| n.text())
    );
    let otp = s.otp(&token, &mut swapped, Some("1111")).await.unwrap();
    let verified = s
        .verify("demo-rp", "demo-rp-secret", &otp.otp)
        .await
        .unwrap();
    assert_eq!(
        (
            verified.pin_set_by,
            verified.pin_set_at,
            verified.pin_recovered_at
        ),
        (
            Some(PinOrigin::SmsRecovery),
            Some(START + 60),
            Some(START + 60)
        )
    );
    // Changing the PIN at once with the one just set does not wash the recovery away.
    s.clock.advance(5);
    update_pin(&s, &token, &mut swapped, "1111", "2222")
        .await
        .unwrap();
    let otp = s.otp(&token, &mut swapped, Some("2222")).await.unwrap();
    let verified = s
        .verify("demo-rp", "demo-rp-secret", &otp.otp)
        .await
        .unwrap();
    assert_eq!(
        (
            verified.pin_set_by,
            verified.pin_set_at,
            verified.pin_recovered_at
        ),
        (Some(PinOrigin::Update), Some(START + 65), Some(START + 60))
    );
}

/// Database writer (rows, not the key file): copying the record of a PIN it knows (its own
/// account's) into the victim's row, with a device key of its own made Active there, gets no
/// proof with that PIN: the record is bound to its account by the credential identifier.
#[tokio::test]
async fn a_database_writer_cannot_give_a_victim_a_pin_it_knows() {
    let s = TestServer::start().await;
    let (victim, _) = enrolled_account(&s, "victim", PHONE, PIN).await;
    let (_, mut writer_device) = enrolled_account(&s, "writer", PHONE2, "1111").await;
    let db = s.db();
    db.execute(
        "UPDATE accounts SET (pin_record, pin_credential_id) =
             (SELECT pin_record, pin_credential_id FROM accounts WHERE subject = 'writer')
         WHERE subject = 'victim'",
        [],
    )
    .unwrap();
    db.execute(
        "UPDATE devices SET account = 'victim' WHERE id = ?1",
        [&writer_device.id],
    )
    .unwrap();
    assert_eq!(
        s.otp(&victim, &mut writer_device, Some("1111")).await.err(),
        Some(ApiError::WrongPin {
            attempts_remaining: 4
        })
    );
}

on_both_stores!(
    a_pin_change_authorized_before_a_reset_cannot_finish_after_it,
    stale_authorizations_die_with_the_pin
);

/// Someone who knew the old PIN and holds a device of the account (the user's other device in
/// the wrong hands) authorizes a PIN update and opens a PIN login, then the owner resets the
/// PIN by SMS. Neither can be finished against the new PIN.
async fn stale_authorizations_die_with_the_pin(s: TestServer) {
    let (token, mut owner) = enrolled_account(&s, "victim", PHONE, PIN).await;
    let mut other = s.enroll(&token, PIN).await.unwrap();
    let login = ClientLogin::<PinSuite>::start(&mut OsRng, PIN.as_bytes()).unwrap();
    let c = challenge(
        &s,
        &token,
        &mut other,
        Some(login.message.serialize().to_vec().into()),
    )
    .await
    .unwrap();
    let proven = finish_login(login.state, PIN, &c);
    let registration = ClientRegistration::<PinSuite>::start(&mut OsRng, b"9999").unwrap();
    let started = start_pin_change(
        &s,
        &token,
        &mut other,
        None,
        &c,
        PinAuthorization::Pin(proven),
        Some(registration.message.serialize().to_vec().into()),
    )
    .await
    .unwrap();
    let open_login = ClientLogin::<PinSuite>::start(&mut OsRng, PIN.as_bytes()).unwrap();
    let open = challenge(
        &s,
        &token,
        &mut other,
        Some(open_login.message.serialize().to_vec().into()),
    )
    .await
    .unwrap();

    s.send_code(&token, SmsPurpose::ResetPin, None)
        .await
        .unwrap();
    let code = s.last_code(PHONE);
    reset_pin(&s, &token, &mut owner, None, "5555", &code)
        .await
        .unwrap();

    assert_eq!(
        finish_pin_change(&s, &token, &mut other, started, registration.state, "9999").await,
        Err(ApiError::SessionExpired)
    );
    let stale = finish_login(open_login.state, PIN, &open);
    let mut req = ModifyPhoneNumber {
        proof: DeviceProof::default(),
        phone_number: PHONE2.into(),
        region: None,
        sms_code: "000000".into(),
        login: Some(stale),
    };
    req.proof = proof(
        &mut other,
        transcript::PHONE_NUMBER_MODIFY,
        &open,
        &req.signed_payload(),
    );
    let r = s
        .at(ep::PhoneNumberModify::ROUTE, &[], &token)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(decode_empty(r).await, Err(ApiError::SessionExpired));
    s.otp(&token, &mut owner, Some("5555")).await.unwrap();
}

on_both_stores!(
    an_idempotency_key_replays_only_its_own_session,
    idempotency_key_scope
);

/// Token thief replaying an idempotency key seen in traffic on a session of their own: the
/// first session's outcome (a device id and activation nonce) is never handed out again.
async fn idempotency_key_scope(s: TestServer) {
    let token = s.token("victim").await;
    s.certify_phone(&token, PHONE).await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let first = s
        .start_enrollment(&token, &s.last_code(PHONE), PIN, None)
        .await
        .unwrap();
    let device = Device::new();
    s.finish_enrollment(&token, &device, first, "shared-key")
        .await
        .unwrap();
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let second = s
        .start_enrollment(&token, &s.last_code(PHONE), PIN, None)
        .await
        .unwrap();
    assert_eq!(
        s.finish_enrollment(&token, &Device::new(), second, "shared-key")
            .await,
        Err(ApiError::InvalidParameter {
            name: "idempotencyKey".into()
        })
    );
}

/// Unauthenticated-after-the-token flood: challenges cannot be piled up without bound.
#[tokio::test]
async fn challenges_per_device_are_bounded() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "victim", PHONE, PIN).await;
    let limit = s.config.limits.max_open_challenges_per_device;
    for _ in 0..limit {
        challenge(&s, &token, &mut device, None).await.unwrap();
    }
    assert_eq!(
        challenge(&s, &token, &mut device, None).await.err(),
        Some(ApiError::RateLimited {
            retry_after_seconds: s.config.limits.challenge_ttl_seconds
        })
    );
}

/// The PIN proof a number change may carry is a real one: the right PIN moves the number.
#[tokio::test]
async fn a_number_change_with_the_right_pin_goes_through() {
    let s = TestServer::start().await;
    let (token, mut device) = enrolled_account(&s, "victim", PHONE, PIN).await;
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE2))
        .await
        .unwrap();
    let code = s.last_code(PHONE2);
    modify_phone_number(&s, &token, &mut device, PHONE2, &code, Some(PIN))
        .await
        .unwrap();
    assert_eq!(
        s.status(&token, None).await.phone_number.as_deref(),
        Some(PHONE2)
    );
}
