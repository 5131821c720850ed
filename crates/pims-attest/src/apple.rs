//! Apple App Attest: Apple's server-side validation of an attestation object and of the
//! assertions that follow ("Validating apps that connect to your server").

use std::time::SystemTime;

use ciborium::value::Value;
use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Tag, TagNumber, Tagged};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use sha2::{Digest, Sha256};

use crate::android::hex;
use crate::fault::{AttestationFault, Rule};
use crate::roots::apple_app_attest_root;
use crate::x509::{Cert, KeyAlgorithm, SignatureError};
use crate::Assurance;

/// OID of the credential certificate's nonce extension.
pub const APPLE_NONCE_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113635.100.8.2");

const AAGUID_DEVELOPMENT: &[u8; 16] = b"appattestdevelop";
const AAGUID_PRODUCTION: &[u8; 16] = b"appattest\0\0\0\0\0\0\0";
/// authenticatorData flag: attested credential data included.
const FLAG_AT: u8 = 0x40;

/// The App Attest environment an app was built for (its entitlement).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppAttestEnvironment {
    /// AAGUID `appattest` followed by seven zero bytes.
    Production,
    /// AAGUID `appattestdevelop`.
    Development,
}

impl AppAttestEnvironment {
    pub fn as_str(self) -> &'static str {
        match self {
            AppAttestEnvironment::Production => "production",
            AppAttestEnvironment::Development => "development",
        }
    }

    pub fn parse(text: &str) -> Option<AppAttestEnvironment> {
        match text {
            "production" => Some(AppAttestEnvironment::Production),
            "development" => Some(AppAttestEnvironment::Development),
            _ => None,
        }
    }
}

/// What the relying party requires of an App Attest attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppAttestExpectations {
    /// The Apple Developer team id, e.g. `6MURL8TA57`.
    pub team_id: String,
    /// The app's bundle id, e.g. `com.example.app`.
    pub bundle_id: String,
    pub environment: AppAttestEnvironment,
    /// The exact bytes the app passed as `clientDataHash` to `attestKey` (Apple's sample passes
    /// the raw challenge; most apps pass SHA-256 of it: the server must know which).
    pub client_data_hash: Vec<u8>,
    /// The key id the app reported (`generateKey`), when known.
    pub key_id: Option<Vec<u8>>,
}

impl AppAttestExpectations {
    /// `teamId.bundleId`, whose SHA-256 is the RP id hash.
    pub fn app_id(&self) -> String {
        format!("{}.{}", self.team_id, self.bundle_id)
    }
}

/// A verified App Attest attestation.
#[derive(Clone, Debug)]
pub struct AppAttestVerdict {
    /// Always [`Assurance::SecureEnclave`].
    pub assurance: Assurance,
    pub environment: AppAttestEnvironment,
    /// SHA-256 of the public key.
    pub key_id: Vec<u8>,
    /// The Secure Enclave key: an uncompressed P-256 point (65 bytes).
    pub public_key: Vec<u8>,
    /// The same key as a SubjectPublicKeyInfo (DER).
    pub public_key_spki: Vec<u8>,
    /// Apple's receipt (to store, and to exchange for fraud metrics).
    pub receipt: Vec<u8>,
    /// The sign counter (0 after an attestation): assertions must exceed it.
    pub counter: u32,
    /// The time the certificates were checked at.
    pub verified_at: SystemTime,
}

/// Verifies an App Attest attestation object (CBOR, format `apple-appattest`).
///
/// `at` is the time the credential and intermediate certificates must be valid at: the server
/// passes now; `None` uses the credential certificate's start (Apple issues it at attestation,
/// valid for a few days), to re-verify an old object.
pub fn verify_app_attest(
    attestation_object: &[u8],
    expected: &AppAttestExpectations,
    at: Option<SystemTime>,
) -> Result<AppAttestVerdict, AttestationFault> {
    let malformed = |d: &str| AttestationFault::new(Rule::MalformedObject, d.to_string());
    let value = cbor(attestation_object)?;
    let fmt = map_get(&value, "fmt")
        .and_then(Value::as_text)
        .ok_or_else(|| malformed("no fmt"))?;
    if fmt != "apple-appattest" {
        return Err(malformed(&format!("fmt is {fmt:?}, not apple-appattest")));
    }
    let att_stmt = map_get(&value, "attStmt").ok_or_else(|| malformed("no attStmt"))?;
    let auth_data = map_get(&value, "authData")
        .and_then(Value::as_bytes)
        .ok_or_else(|| malformed("no authData"))?;
    let x5c = map_get(att_stmt, "x5c")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no attStmt.x5c"))?;
    // Apple always sends the receipt (the server keeps it for the fraud metric).
    let receipt = map_get(att_stmt, "receipt")
        .and_then(Value::as_bytes)
        .cloned()
        .ok_or_else(|| malformed("no attStmt.receipt"))?;
    if x5c.len() < 2 {
        return Err(malformed("attStmt.x5c has fewer than 2 certificates"));
    }
    let mut certs = Vec::new();
    for (i, item) in x5c.iter().take(2).enumerate() {
        let der = item
            .as_bytes()
            .ok_or_else(|| malformed("attStmt.x5c holds a non-byte-string"))?;
        certs.push(
            Cert::from_der(der).map_err(|e| {
                AttestationFault::new(Rule::MalformedObject, format!("x5c[{i}]: {e}"))
            })?,
        );
    }
    let (cred_cert, intermediate) = (&certs[0], &certs[1]);
    let root = apple_app_attest_root();

    // 1. The chain to Apple's root (only the embedded root is trusted).
    let chain_fault = |d: String| AttestationFault::new(Rule::AppleChain, d);
    for (cert, issuer, what) in [
        (cred_cert, intermediate, "credential certificate"),
        (intermediate, root, "intermediate"),
    ] {
        if cert.issuer_der() != issuer.subject_der() {
            return Err(chain_fault(format!(
                "the {what}'s issuer is not {}",
                issuer.subject_string()
            )));
        }
        cert.verify_signed_by(issuer, false).map_err(|e| match e {
            SignatureError::Unsupported(d) | SignatureError::Invalid(d) => {
                chain_fault(format!("the {what}: {d}"))
            }
        })?;
    }
    let verified_at = at.unwrap_or_else(|| cred_cert.not_before());
    for (cert, what) in [
        (cred_cert, "credential certificate"),
        (intermediate, "intermediate"),
        (root, "root"),
    ] {
        if verified_at < cert.not_before() || verified_at > cert.not_after() {
            return Err(chain_fault(format!(
                "the {what} is valid from {} to {}, not at the verification time",
                cert.parsed.tbs_certificate().validity().not_before,
                cert.parsed.tbs_certificate().validity().not_after
            )));
        }
    }

    // 2–4. nonce = SHA-256(authData ‖ clientDataHash), in the credential certificate.
    let nonce = Sha256::new()
        .chain_update(auth_data)
        .chain_update(&expected.client_data_hash)
        .finalize();
    let extension = cred_cert.extension(&APPLE_NONCE_OID).ok_or_else(|| {
        AttestationFault::new(
            Rule::Nonce,
            "the credential certificate has no nonce extension",
        )
    })?;
    let certified_nonce =
        parse_nonce_extension(extension).map_err(|d| AttestationFault::new(Rule::Nonce, d))?;
    if certified_nonce != nonce.as_slice() {
        return Err(AttestationFault::new(
            Rule::Nonce,
            "the certified nonce is not SHA-256(authData ‖ clientDataHash): another challenge \
             or another authenticator data",
        ));
    }

    // 5. key id = SHA-256 of the certified public key.
    if cred_cert.key_algorithm() != KeyAlgorithm::EcP256 {
        return Err(AttestationFault::new(
            Rule::KeyId,
            format!("the certified key is {}", cred_cert.key_algorithm()),
        ));
    }
    let public_key = cred_cert.public_key_bytes().to_vec();
    let key_id = Sha256::digest(&public_key).to_vec();
    if let Some(expected_id) = &expected.key_id {
        if *expected_id != key_id {
            return Err(AttestationFault::new(
                Rule::KeyId,
                format!(
                    "the certified key's id is {}, not the expected {}",
                    hex(&key_id),
                    hex(expected_id)
                ),
            ));
        }
    }

    // 6–9. The authenticator data.
    let auth = AuthData::parse(auth_data, true)?;
    let rp_id_hash = Sha256::digest(expected.app_id().as_bytes());
    if auth.rp_id_hash != rp_id_hash.as_slice() {
        return Err(AttestationFault::new(
            Rule::RpIdHash,
            format!("the RP id hash is not SHA-256({:?})", expected.app_id()),
        ));
    }
    if auth.counter != 0 {
        return Err(AttestationFault::new(
            Rule::Counter,
            format!("the counter is {}, not 0", auth.counter),
        ));
    }
    let aaguid = auth.aaguid.unwrap_or_default();
    let environment = if &aaguid == AAGUID_DEVELOPMENT {
        AppAttestEnvironment::Development
    } else if &aaguid == AAGUID_PRODUCTION {
        AppAttestEnvironment::Production
    } else {
        return Err(AttestationFault::new(
            Rule::Environment,
            format!("AAGUID {} is not App Attest's", hex(&aaguid)),
        ));
    };
    if environment != expected.environment {
        return Err(AttestationFault::new(
            Rule::Environment,
            format!(
                "the attestation is for the {} environment, not {}",
                environment.as_str(),
                expected.environment.as_str()
            ),
        ));
    }
    if auth.credential_id != Some(key_id.as_slice()) {
        return Err(AttestationFault::new(
            Rule::KeyId,
            "the credential id is not the key id",
        ));
    }
    Ok(AppAttestVerdict {
        assurance: Assurance::SecureEnclave,
        environment,
        public_key_spki: cred_cert.spki_der(),
        public_key,
        key_id,
        receipt,
        counter: auth.counter,
        verified_at,
    })
}

/// What an assertion is checked against: the key and counter stored at attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppAttestAssertionExpectations {
    pub team_id: String,
    pub bundle_id: String,
    /// The attested key (uncompressed P-256 point, [`AppAttestVerdict::public_key`]).
    pub public_key: Vec<u8>,
    /// The counter stored after the last accepted assertion (0 after the attestation).
    pub previous_counter: u32,
}

/// A verified assertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppAttestAssertion {
    /// The new counter, to store.
    pub counter: u32,
}

/// Verifies an App Attest assertion (CBOR `{signature, authenticatorData}`) over `client_data`
/// (the request the app signed; the server hashes it).
pub fn verify_app_attest_assertion(
    assertion: &[u8],
    client_data: &[u8],
    expected: &AppAttestAssertionExpectations,
) -> Result<AppAttestAssertion, AttestationFault> {
    let malformed = |d: &str| AttestationFault::new(Rule::MalformedObject, d.to_string());
    let value = cbor(assertion)?;
    let signature = map_get(&value, "signature")
        .and_then(Value::as_bytes)
        .ok_or_else(|| malformed("no signature"))?;
    let auth_data = map_get(&value, "authenticatorData")
        .and_then(Value::as_bytes)
        .ok_or_else(|| malformed("no authenticatorData"))?;
    let client_data_hash = Sha256::digest(client_data);
    let nonce = Sha256::new()
        .chain_update(auth_data)
        .chain_update(client_data_hash)
        .finalize();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &expected.public_key)
        .verify(&nonce, signature)
        .map_err(|_| {
            AttestationFault::new(
                Rule::AssertionSignature,
                "the signature over SHA-256(authenticatorData ‖ SHA-256(clientData)) does not \
                 verify with the attested key",
            )
        })?;
    let auth = AuthData::parse(auth_data, false)?;
    let app_id = format!("{}.{}", expected.team_id, expected.bundle_id);
    if auth.rp_id_hash != Sha256::digest(app_id.as_bytes()).as_slice() {
        return Err(AttestationFault::new(
            Rule::RpIdHash,
            format!("the RP id hash is not SHA-256({app_id:?})"),
        ));
    }
    if auth.counter <= expected.previous_counter {
        return Err(AttestationFault::new(
            Rule::Counter,
            format!(
                "the counter {} did not grow past {}",
                auth.counter, expected.previous_counter
            ),
        ));
    }
    Ok(AppAttestAssertion {
        counter: auth.counter,
    })
}

struct AuthData<'a> {
    rp_id_hash: &'a [u8],
    counter: u32,
    aaguid: Option<[u8; 16]>,
    credential_id: Option<&'a [u8]>,
}

impl<'a> AuthData<'a> {
    /// Reads what App Attest uses. Whatever follows the credential id (the COSE key, and
    /// extensions even when the ED flag is not set, as in Apple's own sample) is not read.
    fn parse(bytes: &'a [u8], attested: bool) -> Result<AuthData<'a>, AttestationFault> {
        let short = || AttestationFault::new(Rule::MalformedObject, "authenticator data too short");
        if bytes.len() < 37 {
            return Err(short());
        }
        let flags = bytes[32];
        let counter = u32::from_be_bytes(bytes[33..37].try_into().expect("4 bytes"));
        let mut out = AuthData {
            rp_id_hash: &bytes[..32],
            counter,
            aaguid: None,
            credential_id: None,
        };
        if attested {
            if flags & FLAG_AT == 0 {
                return Err(AttestationFault::new(
                    Rule::MalformedObject,
                    "authenticator data without attested credential data (AT flag unset)",
                ));
            }
            if bytes.len() < 55 {
                return Err(short());
            }
            out.aaguid = Some(bytes[37..53].try_into().expect("16 bytes"));
            let len = usize::from(u16::from_be_bytes([bytes[53], bytes[54]]));
            out.credential_id = Some(bytes.get(55..55 + len).ok_or_else(short)?);
        }
        Ok(out)
    }
}

/// One CBOR item and nothing after it.
fn cbor(bytes: &[u8]) -> Result<Value, AttestationFault> {
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader(&mut rest)
        .map_err(|e| AttestationFault::new(Rule::MalformedObject, format!("not CBOR: {e}")))?;
    if !rest.is_empty() {
        return Err(AttestationFault::new(
            Rule::MalformedObject,
            format!("{} bytes after the CBOR object", rest.len()),
        ));
    }
    Ok(value)
}

fn map_get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

/// `SEQUENCE { [1] EXPLICIT OCTET STRING nonce }`.
fn parse_nonce_extension(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |e: &dyn std::fmt::Display| format!("malformed nonce extension: {e}");
    let seq = AnyRef::from_der(bytes).map_err(|e| bad(&e))?;
    if seq.tag() != Tag::Sequence {
        return Err(bad(&"not a SEQUENCE"));
    }
    let tagged = AnyRef::from_der(seq.value()).map_err(|e| bad(&e))?;
    if tagged.tag()
        != (Tag::ContextSpecific {
            constructed: true,
            number: TagNumber(1),
        })
    {
        return Err(bad(&"not [1]"));
    }
    let octets = AnyRef::from_der(tagged.value()).map_err(|e| bad(&e))?;
    if octets.tag() != Tag::OctetString {
        return Err(bad(&"not an OCTET STRING"));
    }
    Ok(octets.value().to_vec())
}
