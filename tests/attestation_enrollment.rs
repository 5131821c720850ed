//! An enrollment whose host key store attests its key, end to end through the facade: the SDK
//! generates the key with the session's challenge, sends the host's chain with the finish, and
//! the server records what it proves (the device list and the relying party show it) or
//! refuses it where its policy requires more.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use pims_attest::testing::TestCa;
use pims_attest::Assurance;
use pims_proto::{Bytes, DeviceAttestation};
use pims_server::Clock;
use pims_strongauth::host::{DeviceKeys, Host, HostError, StaticToken};
use serde_json::{json, Value};
use support::{failed, ok, Phone, TestServer, NUMBER, PIN};
use tempfile::TempDir;

/// A real Pixel 9 Pro chain, and when its key was made (the server's clock is set a minute
/// after, as if the phone enrolled then: its intermediates live days).
const GENUINE: &str = "caiman/sdk36/TEE_EC_RKP";
const GENUINE_CREATED: i64 = 1_758_900_680;

/// What the test key store attests its keys with.
enum Attests {
    /// A chain under a root this process trusts, for the key and the challenge it was made
    /// with, as a genuine phone's keystore would.
    TrustedChain(Box<TestCa>),
    /// A real phone's chain, whatever the key: a replay.
    Replayed,
}

/// A key and the attestation challenge it was generated with.
type AttestedKey = (SigningKey, Option<Vec<u8>>);

/// A host key store (P-256 keys in memory) that attests what it generates.
struct AttestingKeys {
    attests: Attests,
    /// Alias → key and the challenge it was generated with.
    keys: Mutex<HashMap<String, AttestedKey>>,
}

impl AttestingKeys {
    fn new(attests: Attests) -> Arc<AttestingKeys> {
        Arc::new(AttestingKeys {
            attests,
            keys: Mutex::new(HashMap::new()),
        })
    }

    fn point(key: &SigningKey) -> Vec<u8> {
        key.verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }
}

impl DeviceKeys for AttestingKeys {
    fn generate(&self, alias: &str) -> Result<Vec<u8>, HostError> {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let point = Self::point(&key);
        self.keys.lock().unwrap().insert(alias.into(), (key, None));
        Ok(point)
    }

    fn generate_attested(&self, alias: &str, key_challenge: &[u8]) -> Result<Vec<u8>, HostError> {
        let point = self.generate(alias)?;
        self.keys.lock().unwrap().get_mut(alias).unwrap().1 = Some(key_challenge.to_vec());
        Ok(point)
    }

    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, HostError> {
        let keys = self.keys.lock().unwrap();
        let (key, _) = keys.get(alias).ok_or(HostError("no such key".into()))?;
        let signature: DerSignature = key.sign(message);
        Ok(signature.as_bytes().to_vec())
    }

    fn delete(&self, alias: &str) {
        self.keys.lock().unwrap().remove(alias);
    }

    fn attestation(
        &self,
        alias: &str,
        _app_challenge: &[u8],
    ) -> Result<Option<DeviceAttestation>, HostError> {
        let keys = self.keys.lock().unwrap();
        let (key, challenge) = keys.get(alias).ok_or(HostError("no such key".into()))?;
        let chain = match &self.attests {
            Attests::TrustedChain(ca) => {
                let challenge = challenge.as_ref().expect("generated with a challenge");
                ca.chain(&Self::point(key), challenge)
            }
            Attests::Replayed => {
                let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("crates/pims-attest/tests/vectors/android-key-attestation")
                    .join(format!("{GENUINE}.pem"));
                pims_attest::pem_certificates(&std::fs::read_to_string(path).unwrap()).unwrap()
            }
        };
        Ok(Some(DeviceAttestation::Android {
            chain: chain.into_iter().map(Bytes).collect(),
        }))
    }
}

/// An Android phone whose keys `keys` holds, and the directory of its vault.
async fn android_phone(server: &TestServer, keys: Arc<AttestingKeys>) -> (Phone, TempDir) {
    let token = server.token("driver").await;
    let mut host = Host::new(Arc::new(StaticToken(Some(token))));
    host.device_keys = Some(keys);
    let dir = tempfile::tempdir().unwrap();
    let phone =
        Phone::with_host(&server.url(), host, dir.path().into(), "android", json!({})).await;
    (phone, dir)
}

async fn devices(phone: &Phone) -> Vec<Value> {
    let listed = ok(&phone.get("pims.authentication.devices", json!({})).await);
    listed["devices"].as_array().unwrap().clone()
}

/// The device's assurance and stored detail, as the server holds them.
fn stored(server: &TestServer) -> (String, Option<String>) {
    let db = rusqlite::Connection::open(&server.config.database_path).unwrap();
    db.query_row(
        "SELECT assurance, assurance_detail FROM devices WHERE account = 'driver'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[tokio::test]
async fn a_key_store_attesting_its_key_for_this_session_enrolls_a_tee_device() {
    let server = TestServer::start_with(|c| {
        c.attestation.required_to_enroll = Some(Assurance::Tee);
        c.relying_parties[0].required_assurance = Some(Assurance::Tee);
    })
    .await;
    let (phone, _dir) = android_phone(
        &server,
        AttestingKeys::new(Attests::TrustedChain(Box::new(TestCa::new()))),
    )
    .await;
    phone.enroll_first_device(&server).await;
    assert_eq!(stored(&server), ("tee".into(), None));
    let listed = devices(&phone).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["assurance"], "tee");
    // The relying party that requires a TEE gets the OTP, and is told the level.
    let otp = ok(&phone.otp_with_pin(PIN).await)["otp"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, verified) = server.verify_otp(&otp).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["assurance"], "tee");
}

#[tokio::test]
async fn a_replayed_chain_enrolls_unattested_or_is_refused_with_2317_where_a_tee_is_required() {
    let server = TestServer::start_with(|c| c.clock = Clock::manual(GENUINE_CREATED + 60)).await;
    let (phone, _dir) = android_phone(&server, AttestingKeys::new(Attests::Replayed)).await;
    phone.enroll_first_device(&server).await;
    let (assurance, detail) = stored(&server);
    assert_eq!(assurance, "unattested");
    assert!(
        detail.as_deref().unwrap().starts_with("challenge: "),
        "{detail:?}"
    );
    assert_eq!(devices(&phone).await[0]["assurance"], "unattested");

    let server = TestServer::start_with(|c| {
        c.clock = Clock::manual(GENUINE_CREATED + 60);
        c.attestation.required_to_enroll = Some(Assurance::Tee);
    })
    .await;
    let (phone, _dir) = android_phone(&server, AttestingKeys::new(Attests::Replayed)).await;
    phone.add_phone_number(&server, NUMBER).await;
    phone.request_enrollment_code().await;
    let code = server.last_code(NUMBER);
    let error = failed(
        &phone.enroll(PIN, &code).await,
        2317,
        "inwebo: forbidden operation (due to activated state/blocked state/upgradable state)",
    );
    assert_eq!(error["details"]["reason"], "attestationRequired");
    assert_eq!(error["details"]["required"], "tee");
    assert_eq!(error["details"]["got"], "unattested");
    assert_eq!(error["details"]["rule"], "challenge");
    assert_eq!(server.devices("driver"), 0);
}
