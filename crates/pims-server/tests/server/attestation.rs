//! Device key attestation at enrollment, over the raw protocol: what the server records of an
//! attestation (its assurance, and the rule that refused it), what its policy refuses, and
//! where the level is shown (device list, admin API, relying party's verification).

use pims_attest::testing::TEST_INTERMEDIATE_SERIAL;
use pims_attest::Assurance;
use pims_proto::endpoint::{self as ep, admin, Endpoint, Method};
use pims_proto::*;
use pims_server::admin::DeviceList as AdminDeviceList;
use pims_server::config::{AdminToken, RelyingParty};
use pims_server::{Clock, ServerConfig};

use crate::common::*;

const ADMIN: &str = "admin-token-admin-token-admin-token";
/// A real Pixel 9 Pro chain (TEE, locked, verified boot; remotely provisioned, so its
/// intermediates live days): the server checks it at its own time, set here to a minute after
/// the key was made, as if the phone enrolled then.
const GENUINE: &str = "caiman/sdk36/TEE_EC_RKP";
const GENUINE_CREATED: i64 = 1_758_900_680;

fn vector_chain(case: &str) -> Vec<Bytes> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pims-attest/tests/vectors/android-key-attestation")
        .join(format!("{case}.pem"));
    let text = std::fs::read_to_string(&path).unwrap();
    pims_attest::pem_certificates(&text)
        .unwrap()
        .into_iter()
        .map(Bytes)
        .collect()
}

/// A server whose clock stands when the genuine chain was made, with the admin API and a
/// second relying party `strict-rp` that requires a TEE.
async fn server(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
    TestServer::start_with(|c| {
        c.clock = Clock::manual(GENUINE_CREATED + 60);
        c.admin_token = Some(AdminToken(ADMIN.into()));
        c.relying_parties.push(RelyingParty {
            id: "strict-rp".into(),
            secret: "strict-rp-secret".into(),
            required_assurance: Some(Assurance::Tee),
        });
        c.otp_default_audience = Some("demo-rp".into());
        adjust(c);
    })
    .await
}

/// An enrollment of a new device that sends what `attest` makes of the server's session; the
/// device ends Active.
async fn enroll_attested(
    s: &TestServer,
    token: &str,
    attest: impl FnOnce(&EnrollmentStarted, &Device) -> Option<DeviceAttestation>,
) -> Result<Device, ApiError> {
    s.send_code(token, SmsPurpose::Enrollment, None).await?;
    let code = s.last_code(PHONE);
    let mut device = Device::new();
    let session = s.start_enrollment(token, &code, "1234", None).await?;
    let attestation = attest(&session.started, &device);
    let enrollment_id = session.started.enrollment_id.clone();
    let mut request = session.finish_request(&device, &uuid::Uuid::new_v4().to_string());
    request.attestation = attestation;
    let finished = s
        .call::<ep::EnrollmentFinish>(&[&enrollment_id], token, &request)
        .await?;
    device.id = finished.device_id;
    device.activation_nonce = finished.activation_nonce.0;
    s.activate(token, &mut device).await?;
    Ok(device)
}

async fn new_account(s: &TestServer, subject: &str) -> String {
    let token = s.token(subject).await;
    s.certify_phone(&token, PHONE).await;
    token
}

async fn admin_devices(s: &TestServer, account: &str) -> AdminDeviceList {
    let method = match admin::DEVICES.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
    };
    let r = s
        .http
        .request(
            method,
            format!("{}{}", s.url, admin::DEVICES.path(&[account])),
        )
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    decode(r).await.unwrap()
}

/// Each device's assurance and the rule that refused its attestation, as the admin API lists
/// them (oldest first).
async fn recorded(s: &TestServer, account: &str) -> Vec<(String, Option<String>)> {
    admin_devices(s, account)
        .await
        .devices
        .into_iter()
        .map(|d| {
            let rule = d
                .assurance_detail
                .map(|detail| detail.split(':').next().unwrap().to_string());
            (d.assurance, rule)
        })
        .collect()
}

async fn listed(s: &TestServer, token: &str) -> Vec<DeviceInfo> {
    let r = s.at(ep::Devices::ROUTE, &[], token).send().await.unwrap();
    decode::<DeviceList>(r).await.unwrap().devices
}

#[tokio::test]
async fn a_genuine_chain_replayed_at_enrollment_is_recorded_unattested_with_the_rule_it_failed() {
    let s = server(|_| {}).await;
    let token = new_account(&s, "alice").await;
    // A phone's genuine chain, replayed: its challenge is another session's (and it certifies
    // the phone's key, not the one enrolled).
    let mut device = enroll_attested(&s, &token, |_, _| {
        Some(DeviceAttestation::Android {
            chain: vector_chain(GENUINE),
        })
    })
    .await
    .unwrap();

    let devices = listed(&s, &token).await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].assurance, "unattested");
    let admin = admin_devices(&s, "alice").await.devices;
    assert_eq!(admin[0].assurance, "unattested");
    let detail = admin[0].assurance_detail.as_deref().unwrap();
    assert!(detail.starts_with("challenge: "), "{detail}");

    // The relying party is told the level of the device that made the OTP.
    let issued = s.otp(&token, &mut device, Some("1234")).await.unwrap();
    let verified = s
        .verify("demo-rp", "demo-rp-secret", &issued.otp)
        .await
        .unwrap();
    assert_eq!(verified.assurance, "unattested");
}

#[tokio::test]
async fn a_policy_requiring_a_tee_refuses_a_replayed_chain_and_an_enrollment_without_attestation() {
    let s = server(|c| c.attestation.required_to_enroll = Some(Assurance::Tee)).await;
    let token = new_account(&s, "alice").await;
    let replayed = enroll_attested(&s, &token, |_, _| {
        Some(DeviceAttestation::Android {
            chain: vector_chain(GENUINE),
        })
    })
    .await;
    assert_eq!(
        replayed.err(),
        Some(ApiError::AttestationRequired {
            required: "tee".into(),
            got: "unattested".into(),
            reason: Some("challenge".into()),
        })
    );
    let none = enroll_attested(&s, &token, |_, _| None).await;
    assert_eq!(
        none.err(),
        Some(ApiError::AttestationRequired {
            required: "tee".into(),
            got: "unattested".into(),
            reason: None,
        })
    );
    assert!(listed(&s, &token).await.is_empty());
    assert!(admin_devices(&s, "alice").await.devices.is_empty());
    // Requiring only what was proven refuses nothing.
    let s = server(|c| c.attestation.required_to_enroll = Some(Assurance::Unattested)).await;
    let token = new_account(&s, "bob").await;
    enroll_attested(&s, &token, |_, _| None).await.unwrap();
}

#[tokio::test]
async fn a_chain_damaged_or_for_another_app_kind_is_recorded_with_its_rule() {
    let s = server(|_| {}).await;
    let token = new_account(&s, "alice").await;
    // The leaf alone: not a chain.
    let mut leaf_only = vector_chain(GENUINE);
    leaf_only.truncate(1);
    enroll_attested(&s, &token, |_, _| {
        Some(DeviceAttestation::Android { chain: leaf_only })
    })
    .await
    .unwrap();
    // An App Attest object on a server with no iOS app configured.
    enroll_attested(&s, &token, |_, _| {
        Some(DeviceAttestation::AppAttest {
            object: Bytes(b"not cbor".to_vec()),
            key_id: Bytes(vec![0; 32]),
        })
    })
    .await
    .unwrap();
    assert_eq!(
        recorded(&s, "alice").await,
        [
            (
                "unattested".to_string(),
                Some("malformed-chain".to_string())
            ),
            ("unattested".to_string(), Some("not-configured".to_string())),
        ]
    );
}

#[tokio::test]
async fn an_enrollment_without_attestation_is_unattested_and_gets_no_otp_for_a_relying_party_requiring_a_tee(
) {
    let s = server(|_| {}).await;
    let token = new_account(&s, "alice").await;
    let mut device = enroll_attested(&s, &token, |_, _| None).await.unwrap();
    assert_eq!(listed(&s, &token).await[0].assurance, "unattested");
    let admin = admin_devices(&s, "alice").await.devices;
    assert_eq!(
        (
            admin[0].assurance.as_str(),
            admin[0].assurance_detail.as_deref()
        ),
        ("unattested", None)
    );

    let refused = s
        .otp_for(&token, &mut device, Some("1234"), Some("strict-rp"))
        .await;
    assert_eq!(
        refused.err(),
        Some(ApiError::AssuranceInsufficient {
            required: "tee".into(),
            got: "unattested".into(),
        })
    );
    // Refused before the PIN login: no attempt was spent.
    assert_eq!(s.status(&token, None).await.pin_attempts_remaining, 5);
    // A relying party that requires nothing gets its OTP, which says the level.
    let issued = s
        .otp_for(&token, &mut device, None, Some("demo-rp"))
        .await
        .unwrap();
    let verified = s
        .verify("demo-rp", "demo-rp-secret", &issued.otp)
        .await
        .unwrap();
    assert_eq!(verified.assurance, "unattested");
}

// ---- attestations that pass: chains under a root this test process trusts ---------------

/// A certificate authority this process trusts as an Android attestation root
/// (`pims_attest::testing`, test builds only): its leaves carry a genuine phone's attestation
/// (TEE, locked, verified boot, a signing key generated in hardware) with the challenge and the
/// key each test chooses; its intermediate's serial is `TEST_INTERMEDIATE_SERIAL`.
struct TestCa(pims_attest::testing::TestCa);

impl TestCa {
    fn new() -> TestCa {
        TestCa(pims_attest::testing::TestCa::new())
    }

    /// The chain a device generating `device`'s key with `started`'s challenge would send.
    fn attest(&self, started: &EnrollmentStarted, device: &Device) -> Option<DeviceAttestation> {
        let challenge =
            transcript::key_attestation_challenge(&started.enrollment_id, started.nonce.as_slice());
        let chain = self.0.chain(&device.public_key(), &challenge);
        Some(DeviceAttestation::Android {
            chain: chain.into_iter().map(Bytes).collect(),
        })
    }
}

#[tokio::test]
async fn a_chain_for_this_session_and_key_under_a_trusted_root_is_recorded_tee_end_to_end() {
    let ca = TestCa::new();
    let s = server(|c| c.attestation.required_to_enroll = Some(Assurance::Tee)).await;
    let token = new_account(&s, "alice").await;
    let mut device = enroll_attested(&s, &token, |started, device| ca.attest(started, device))
        .await
        .unwrap();
    assert_eq!(listed(&s, &token).await[0].assurance, "tee");
    let admin = admin_devices(&s, "alice").await.devices;
    assert_eq!(
        (
            admin[0].assurance.as_str(),
            admin[0].assurance_detail.as_deref()
        ),
        ("tee", None)
    );
    // The relying party that requires a TEE gets its OTP, and is told the level.
    let issued = s
        .otp_for(&token, &mut device, Some("1234"), Some("strict-rp"))
        .await
        .unwrap();
    let verified = s
        .verify("strict-rp", "strict-rp-secret", &issued.otp)
        .await
        .unwrap();
    assert_eq!(
        (verified.assurance.as_str(), verified.with_pin),
        ("tee", true)
    );
}

#[tokio::test]
async fn a_trusted_chain_for_another_key_or_another_session_is_refused() {
    let ca = TestCa::new();
    let s = server(|_| {}).await;
    let token = new_account(&s, "alice").await;
    // This session's challenge, but the key of another device (the attacker enrolls its own
    // key with a phone's attestation).
    enroll_attested(&s, &token, |started, _| ca.attest(started, &Device::new()))
        .await
        .unwrap();
    // The enrolled key, attested for another session (replayed).
    let mut earlier = None;
    enroll_attested(&s, &token, |started, device| {
        earlier = Some(started.clone());
        ca.attest(started, device)
    })
    .await
    .unwrap();
    let earlier = earlier.unwrap();
    enroll_attested(&s, &token, |_, device| ca.attest(&earlier, device))
        .await
        .unwrap();
    assert_eq!(
        recorded(&s, "alice").await,
        [
            ("unattested".to_string(), Some("public-key".to_string())),
            ("tee".to_string(), None),
            ("unattested".to_string(), Some("challenge".to_string())),
        ]
    );
}

#[tokio::test]
async fn the_revocation_list_is_read_at_start_and_refreshed_keeping_the_last_good_one() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("status.json");
    // A configured list that cannot be read stops the server from starting (fail closed).
    let mut missing = ServerConfig::development(dir.path());
    missing.attestation.revocation_list = Some(list.clone());
    let error = pims_server::start(missing).await.err().unwrap();
    assert!(
        format!("{error:#}").contains("revocation_list"),
        "{error:#}"
    );

    std::fs::write(&list, r#"{"entries": {}}"#).unwrap();
    let s = server(|c| {
        c.attestation.revocation_list = Some(list.clone());
        c.attestation.revocation_refresh_seconds = 1;
    })
    .await;
    let token = new_account(&s, "alice").await;
    let attest = |started: &EnrollmentStarted, device: &Device| ca.attest(started, device);
    enroll_attested(&s, &token, attest).await.unwrap();
    // The intermediate is revoked: the next re-read refuses its chains.
    std::fs::write(
        &list,
        format!(r#"{{"entries": {{"{TEST_INTERMEDIATE_SERIAL}": {{"status": "REVOKED", "reason": "KEY_COMPROMISE"}}}}}}"#),
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    enroll_attested(&s, &token, attest).await.unwrap();
    // A list that can no longer be read keeps the last good one in use.
    std::fs::write(&list, "not json").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    enroll_attested(&s, &token, attest).await.unwrap();
    assert_eq!(
        recorded(&s, "alice").await,
        [
            ("tee".to_string(), None),
            ("unattested".to_string(), Some("revoked".to_string())),
            ("unattested".to_string(), Some("revoked".to_string())),
        ]
    );
}
