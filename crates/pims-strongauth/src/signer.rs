//! Device signatures: ECDSA P-256 / SHA-256, DER-encoded, with the key in the platform
//! keystore ([`crate::host::DeviceKeys`]) or in software inside the vault.

use std::sync::Arc;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use pims_proto::Bytes;

use crate::host::{DeviceKeys, HostError};
use crate::vault::DeviceKey;

/// A freshly created device key and its public half.
pub struct NewKey {
    pub key: DeviceKey,
    pub public_key: Vec<u8>,
}

/// A new key, made by the host with the enrollment's key attestation challenge when given.
pub fn generate_attested(
    host: Option<&Arc<dyn DeviceKeys>>,
    key_challenge: Option<&[u8]>,
) -> Result<NewKey, HostError> {
    match host {
        Some(keys) => {
            let alias = format!("pims-device-{}", uuid::Uuid::new_v4());
            let public_key = match key_challenge {
                Some(challenge) => keys.generate_attested(&alias, challenge)?,
                None => keys.generate(&alias)?,
            };
            Ok(NewKey {
                key: DeviceKey::Host { alias },
                public_key,
            })
        }
        None => {
            let secret = SigningKey::random(&mut rand::rngs::OsRng);
            let public_key = secret
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec();
            Ok(NewKey {
                key: DeviceKey::Software {
                    secret: Bytes(secret.to_bytes().to_vec()),
                },
                public_key,
            })
        }
    }
}

/// Every device signature leaves the SDK through here, in low-S form.
pub fn sign(
    key: &DeviceKey,
    host: Option<&Arc<dyn DeviceKeys>>,
    message: &[u8],
) -> Result<Vec<u8>, HostError> {
    let der = match key {
        DeviceKey::Software { secret } => {
            let secret = SigningKey::from_slice(secret.as_slice())
                .map_err(|_| HostError("stored device key is malformed".into()))?;
            let signature: DerSignature = secret.sign(message);
            signature.as_bytes().to_vec()
        }
        DeviceKey::Host { alias } => host
            .ok_or_else(|| {
                HostError(
                    "the device key is in a platform keystore this app did not provide".into(),
                )
            })?
            .sign(alias, message)?,
    };
    Ok(low_s(der))
}

/// The server refuses high-S signatures (the other of the two valid encodings of each, which
/// would let anyone rewrite a proof without the key). Neither `p256` nor platform keystores
/// (Secure Enclave, Android Keystore) promise low S, so it is normalised here: `(r, n − s)`
/// verifies exactly as `(r, s)` does. Bytes that are not a DER signature pass unchanged, for
/// the server to refuse.
pub fn low_s(der: Vec<u8>) -> Vec<u8> {
    match p256::ecdsa::Signature::from_der(&der) {
        Ok(signature) => match signature.normalize_s() {
            Some(low) => low.to_der().as_bytes().to_vec(),
            None => der,
        },
        Err(_) => der,
    }
}

/// The host's attestation of `key` over `app_challenge`; none for software keys, and none
/// (logged) when the host fails: the server records the device `unattested`, or refuses it
/// where its policy requires more.
pub fn attestation(
    key: &DeviceKey,
    host: Option<&Arc<dyn DeviceKeys>>,
    app_challenge: &[u8],
) -> Option<pims_proto::DeviceAttestation> {
    let (DeviceKey::Host { alias }, Some(keys)) = (key, host) else {
        return None;
    };
    match keys.attestation(alias, app_challenge) {
        Ok(attestation) => attestation,
        Err(error) => {
            tracing::warn!(%error, "the host could not attest the device key: enrolling without");
            None
        }
    }
}

/// Forgets a key that will never be used (enrollment refused or removed).
pub fn discard(key: &DeviceKey, host: Option<&Arc<dyn DeviceKeys>>) {
    if let (DeviceKey::Host { alias }, Some(keys)) = (key, host) {
        keys.delete(alias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;

    #[test]
    fn software_signatures_verify_against_the_published_key() {
        let new = generate_attested(None, None).unwrap();
        let signature = sign(&new.key, None, b"challenge").unwrap();
        let verifying = VerifyingKey::from_sec1_bytes(&new.public_key).unwrap();
        let signature = DerSignature::try_from(signature.as_slice()).unwrap();
        assert!(verifying.verify(b"challenge", &signature).is_ok());
        assert!(verifying.verify(b"other", &signature).is_err());
    }

    /// A keystore that answers high-S signatures, as hardware may.
    struct HighS(SigningKey);

    impl DeviceKeys for HighS {
        fn generate(&self, _alias: &str) -> Result<Vec<u8>, HostError> {
            Ok(self
                .0
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec())
        }
        fn sign(&self, _alias: &str, message: &[u8]) -> Result<Vec<u8>, HostError> {
            let sig: p256::ecdsa::Signature = self.0.sign(message);
            let high = match sig.normalize_s() {
                Some(_) => sig,
                None => {
                    let (r, s) = sig.split_scalars();
                    p256::ecdsa::Signature::from_scalars(r, -*s).unwrap()
                }
            };
            Ok(high.to_der().as_bytes().to_vec())
        }
        fn delete(&self, _alias: &str) {}
    }

    fn is_low_s(der: &[u8]) -> bool {
        let sig = p256::ecdsa::Signature::from_der(der).unwrap();
        sig.normalize_s().is_none()
    }

    #[test]
    fn every_signature_leaves_in_low_s_form() {
        let host: Arc<dyn DeviceKeys> = Arc::new(HighS(SigningKey::random(&mut rand::rngs::OsRng)));
        let new = generate_attested(Some(&host), None).unwrap();
        let verifying = VerifyingKey::from_sec1_bytes(&new.public_key).unwrap();
        // The host always answers high S; what leaves `sign` is low S and still verifies.
        assert!(!is_low_s(&host.sign("a", b"m").unwrap()));
        for i in 0..8u8 {
            let der = sign(&new.key, Some(&host), &[i]).unwrap();
            assert!(is_low_s(&der));
            let sig = DerSignature::try_from(der.as_slice()).unwrap();
            assert!(verifying.verify(&[i], &sig).is_ok());
        }
        // Software keys: over 32 messages a high S would appear with probability 1 − 2⁻³².
        let soft = generate_attested(None, None).unwrap();
        for i in 0..32u8 {
            assert!(is_low_s(&sign(&soft.key, None, &[i]).unwrap()));
        }
    }
}
