//! Host capabilities the app implements in Kotlin, Swift or Python, adapted to the traits of
//! `pims_strongauth::host`. Whatever a host implementation throws becomes a `HostError`, which
//! the component reports as a FAILED message: a failing host never crashes the SDK.

use std::sync::Arc;

use pims_strongauth::host as core;

/// The error a host capability reports. Anything else it throws is wrapped the same way.
#[derive(Debug, uniffi::Error)]
pub enum HostFailure {
    /// `reason` must not contain secrets: it may be logged.
    Failed { reason: String },
}

impl std::fmt::Display for HostFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostFailure::Failed { reason } => f.write_str(reason),
        }
    }
}

impl std::error::Error for HostFailure {}

// An exception the foreign code did not declare (a RuntimeException in Kotlin, any Python
// exception) arrives here instead of panicking.
impl From<uniffi::UnexpectedUniFFICallbackError> for HostFailure {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        HostFailure::Failed {
            reason: error.reason,
        }
    }
}

impl From<HostFailure> for core::HostError {
    fn from(failure: HostFailure) -> Self {
        core::HostError(failure.to_string())
    }
}

/// Gives the SDK the signed-in user's access token; `None` (null / nil) when nobody is signed in.
#[uniffi::export(with_foreign)]
pub trait AccessTokenProvider: Send + Sync {
    fn access_token(&self) -> Result<Option<String>, HostFailure>;
}

/// What the platform says of a device key, sent with the enrollment for the server to verify.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum KeyAttestation {
    /// Android Key Attestation: `KeyStore.getCertificateChain(alias)`, each certificate's DER,
    /// leaf first.
    Android { chain: Vec<Vec<u8>> },
    /// Apple App Attest: the object `DCAppAttestService.attestKey(keyId, clientDataHash:)`
    /// returned, with its key id.
    AppAttest { object: Vec<u8>, key_id: Vec<u8> },
}

/// A hardware-backed P-256 key store (Android Keystore / StrongBox, iOS Secure Enclave).
#[uniffi::export(with_foreign)]
pub trait DeviceKeys: Send + Sync {
    /// Creates a key under `alias`; returns its SEC1 uncompressed public key (65 bytes).
    fn generate(&self, alias: String) -> Result<Vec<u8>, HostFailure>;
    /// Creates the enrollment's key under `alias`, attested with `key_challenge` where the
    /// platform attests at creation (Android: `KeyGenParameterSpec.Builder
    /// .setAttestationChallenge(keyChallenge)`); elsewhere the same as `generate`.
    fn generate_attested(
        &self,
        alias: String,
        key_challenge: Vec<u8>,
    ) -> Result<Vec<u8>, HostFailure>;
    /// The platform's attestation of the key `alias` (Android: its certificate chain; iOS: an
    /// App Attest object over `app_challenge` as `clientDataHash`), or null when the platform
    /// has none. A failure is logged and the enrollment goes on without one.
    fn attestation(
        &self,
        alias: String,
        app_challenge: Vec<u8>,
    ) -> Result<Option<KeyAttestation>, HostFailure>;
    /// ECDSA P-256 with SHA-256 over `message`, DER-encoded.
    fn sign(&self, alias: String, message: Vec<u8>) -> Result<Vec<u8>, HostFailure>;
    /// Deletes the key; a missing key is not an error.
    fn delete(&self, alias: String) -> Result<(), HostFailure>;
}

/// Secure storage of the 32-byte key that encrypts the SDK's local vault (Keychain, Keystore).
/// Must return the same key every time on one device.
#[uniffi::export(with_foreign)]
pub trait VaultKeyStore: Send + Sync {
    fn load_or_create(&self) -> Result<Vec<u8>, HostFailure>;
}

/// Reads the enrollment SMS on Android (SMS Retriever or User Consent API): `enroll` without
/// `smsCode` calls it on an SDK thread, and it may block up to `timeout_millis`. Returns the
/// code's digits, or null when none arrived.
#[uniffi::export(with_foreign)]
pub trait SmsCodeProvider: Send + Sync {
    fn sms_code(&self, timeout_millis: u64) -> Result<Option<String>, HostFailure>;
}

pub(crate) struct Tokens(pub Arc<dyn AccessTokenProvider>);

impl core::AccessTokenProvider for Tokens {
    fn access_token(&self) -> Option<String> {
        // The core's contract has no error here: a provider that fails means "no token", which
        // the component reports as 2301 Need Basic Authentication.
        match self.0.access_token() {
            Ok(token) => token,
            Err(failure) => {
                tracing::warn!(reason = %failure, "access-token provider failed");
                None
            }
        }
    }
}

pub(crate) struct Keys(pub Arc<dyn DeviceKeys>);

impl core::DeviceKeys for Keys {
    fn generate(&self, alias: &str) -> Result<Vec<u8>, core::HostError> {
        Ok(self.0.generate(alias.to_owned())?)
    }

    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, core::HostError> {
        Ok(self.0.sign(alias.to_owned(), message.to_vec())?)
    }

    fn generate_attested(
        &self,
        alias: &str,
        key_challenge: &[u8],
    ) -> Result<Vec<u8>, core::HostError> {
        Ok(self
            .0
            .generate_attested(alias.to_owned(), key_challenge.to_vec())?)
    }

    fn attestation(
        &self,
        alias: &str,
        app_challenge: &[u8],
    ) -> Result<Option<pims_proto::DeviceAttestation>, core::HostError> {
        use pims_proto::{Bytes, DeviceAttestation};
        Ok(
            match self
                .0
                .attestation(alias.to_owned(), app_challenge.to_vec())?
            {
                None => None,
                Some(KeyAttestation::Android { chain }) => Some(DeviceAttestation::Android {
                    chain: chain.into_iter().map(Bytes).collect(),
                }),
                Some(KeyAttestation::AppAttest { object, key_id }) => {
                    Some(DeviceAttestation::AppAttest {
                        object: Bytes(object),
                        key_id: Bytes(key_id),
                    })
                }
            },
        )
    }

    fn delete(&self, alias: &str) {
        if let Err(failure) = self.0.delete(alias.to_owned()) {
            tracing::warn!(reason = %failure, "host could not delete a device key");
        }
    }
}

pub(crate) struct VaultKey(pub Arc<dyn VaultKeyStore>);

impl core::VaultKeyStore for VaultKey {
    fn load_or_create(&self) -> Result<[u8; 32], core::HostError> {
        self.0
            .load_or_create()?
            .try_into()
            .map_err(|_| core::HostError("host vault key is not 32 bytes".into()))
    }
}

pub(crate) struct SmsCodes(pub Arc<dyn SmsCodeProvider>);

impl core::SmsCodeProvider for SmsCodes {
    fn sms_code(&self, timeout: std::time::Duration) -> Option<String> {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        match self.0.sms_code(millis) {
            Ok(code) => code,
            Err(failure) => {
                // The SDK then answers 2101 Missing smsCode parameter, as with no reader.
                tracing::warn!(reason = %failure, "SMS code provider failed");
                None
            }
        }
    }
}

/// The `Host` of the component from what the app supplied; absent capabilities keep the
/// software defaults (key in the vault, vault key in a file in the data directory).
pub(crate) fn host(
    tokens: Arc<dyn AccessTokenProvider>,
    device_keys: Option<Arc<dyn DeviceKeys>>,
    vault_key: Option<Arc<dyn VaultKeyStore>>,
    sms_codes: Option<Arc<dyn SmsCodeProvider>>,
) -> core::Host {
    let mut host = core::Host::new(Arc::new(Tokens(tokens)));
    host.device_keys = device_keys.map(|k| Arc::new(Keys(k)) as Arc<dyn core::DeviceKeys>);
    host.vault_key = vault_key.map(|k| Arc::new(VaultKey(k)) as Arc<dyn core::VaultKeyStore>);
    host.sms_codes = sms_codes.map(|p| Arc::new(SmsCodes(p)) as Arc<dyn core::SmsCodeProvider>);
    host
}

#[cfg(test)]
mod tests {
    use super::*;
    use pims_strongauth::host::{
        AccessTokenProvider as _, DeviceKeys as _, HostError, VaultKeyStore as _,
    };

    struct Failing;

    impl AccessTokenProvider for Failing {
        fn access_token(&self) -> Result<Option<String>, HostFailure> {
            Err(HostFailure::Failed {
                reason: "keychain locked".into(),
            })
        }
    }

    impl DeviceKeys for Failing {
        fn generate(&self, _alias: String) -> Result<Vec<u8>, HostFailure> {
            Err(uniffi::UnexpectedUniFFICallbackError {
                reason: "RuntimeException".into(),
            }
            .into())
        }
        fn sign(&self, _alias: String, _message: Vec<u8>) -> Result<Vec<u8>, HostFailure> {
            Err(HostFailure::Failed {
                reason: "user cancelled".into(),
            })
        }
        fn delete(&self, _alias: String) -> Result<(), HostFailure> {
            Err(HostFailure::Failed {
                reason: "gone".into(),
            })
        }
        fn generate_attested(
            &self,
            alias: String,
            _key_challenge: Vec<u8>,
        ) -> Result<Vec<u8>, HostFailure> {
            self.generate(alias)
        }
        fn attestation(
            &self,
            _alias: String,
            _app_challenge: Vec<u8>,
        ) -> Result<Option<KeyAttestation>, HostFailure> {
            Ok(Some(KeyAttestation::Android {
                chain: vec![vec![0x30, 0x00]],
            }))
        }
    }

    impl VaultKeyStore for Failing {
        fn load_or_create(&self) -> Result<Vec<u8>, HostFailure> {
            Ok(vec![7; 31])
        }
    }

    #[test]
    fn a_host_attestation_reaches_the_sdk_as_the_wire_type() {
        let keys = Keys(Arc::new(Failing));
        assert_eq!(
            keys.attestation("k", &[1; 32]).unwrap(),
            Some(pims_proto::DeviceAttestation::Android {
                chain: vec![pims_proto::Bytes(vec![0x30, 0x00])],
            })
        );
    }

    #[test]
    fn a_failing_token_provider_means_signed_out() {
        assert_eq!(Tokens(Arc::new(Failing)).access_token(), None);
    }

    #[test]
    fn host_failures_declared_or_not_become_host_errors() {
        let keys = Keys(Arc::new(Failing));
        assert_eq!(
            keys.generate("a"),
            Err(HostError("RuntimeException".into()))
        );
        assert_eq!(
            keys.sign("a", b"m"),
            Err(HostError("user cancelled".into()))
        );
        keys.delete("a");
    }

    #[test]
    fn a_vault_key_of_the_wrong_length_is_refused() {
        assert_eq!(
            VaultKey(Arc::new(Failing)).load_or_create(),
            Err(HostError("host vault key is not 32 bytes".into()))
        );
    }
}
