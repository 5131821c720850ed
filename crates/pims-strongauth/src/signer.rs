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

pub fn generate(host: Option<&Arc<dyn DeviceKeys>>) -> Result<NewKey, HostError> {
    match host {
        Some(keys) => {
            let alias = format!("pims-device-{}", uuid::Uuid::new_v4());
            let public_key = keys.generate(&alias)?;
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

pub fn sign(
    key: &DeviceKey,
    host: Option<&Arc<dyn DeviceKeys>>,
    message: &[u8],
) -> Result<Vec<u8>, HostError> {
    match key {
        DeviceKey::Software { secret } => {
            let secret = SigningKey::from_slice(secret.as_slice())
                .map_err(|_| HostError("stored device key is malformed".into()))?;
            let signature: DerSignature = secret.sign(message);
            Ok(signature.as_bytes().to_vec())
        }
        DeviceKey::Host { alias } => host
            .ok_or_else(|| {
                HostError(
                    "the device key is in a platform keystore this app did not provide".into(),
                )
            })?
            .sign(alias, message),
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
        let new = generate(None).unwrap();
        let signature = sign(&new.key, None, b"challenge").unwrap();
        let verifying = VerifyingKey::from_sec1_bytes(&new.public_key).unwrap();
        let signature = DerSignature::try_from(signature.as_slice()).unwrap();
        assert!(verifying.verify(b"challenge", &signature).is_ok());
        assert!(verifying.verify(b"other", &signature).is_err());
    }
}
