//! Capabilities the host app provides. Each has a software default for desktop and tests;
//! phone apps plug in their platform services (Keychain/Keystore, Secure Enclave/StrongBox).

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A failure inside a host capability. The message must not contain secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostError {}

/// Gives the SDK the signed-in user's OAuth2/OIDC access token. `None` means nobody is signed
/// in: every StrongAuthentication API then fails with 2301.
pub trait AccessTokenProvider: Send + Sync {
    fn access_token(&self) -> Option<String>;
}

/// A fixed token, for scripts and tests.
pub struct StaticToken(pub Option<String>);

impl AccessTokenProvider for StaticToken {
    fn access_token(&self) -> Option<String> {
        self.0.clone()
    }
}

/// Hardware-backed P-256 keys (Android Keystore / StrongBox, iOS Secure Enclave).
pub trait DeviceKeys: Send + Sync {
    /// Creates a key under `alias` and returns its SEC1 uncompressed public key (65 bytes).
    fn generate(&self, alias: &str) -> Result<Vec<u8>, HostError>;
    /// ECDSA with SHA-256 over `message`, DER-encoded.
    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, HostError>;
    /// Deletes the key; missing keys are not an error.
    fn delete(&self, alias: &str);

    /// Creates the enrollment's key under `alias`, as [`DeviceKeys::generate`], where the
    /// platform attests keys as it makes them: Android generates it with
    /// `KeyGenParameterSpec.Builder.setAttestationChallenge(key_challenge)`
    /// ([`pims_proto::transcript::key_attestation_challenge`]: the enrollment session and its
    /// nonce). Default: [`DeviceKeys::generate`], so hosts without attestation need nothing.
    fn generate_attested(&self, alias: &str, key_challenge: &[u8]) -> Result<Vec<u8>, HostError> {
        let _ = key_challenge;
        self.generate(alias)
    }

    /// The platform's attestation of the key `alias`, sent with the enrollment for the server
    /// to verify and record (its assurance: `strongbox`, `tee`, `secure-enclave`…): on Android
    /// the key's certificate chain (`KeyStore.getCertificateChain(alias)`, leaf first), on iOS
    /// an App Attest object (`DCAppAttestService.attestKey`) over `app_challenge`
    /// ([`pims_proto::transcript::attestation_challenge`]: the session, its nonce and the
    /// device public key) with its key id. Default: none (software keys); a failure here is
    /// logged and the enrollment goes on without an attestation.
    fn attestation(
        &self,
        alias: &str,
        app_challenge: &[u8],
    ) -> Result<Option<pims_proto::DeviceAttestation>, HostError> {
        let _ = (alias, app_challenge);
        Ok(None)
    }
}

/// Secure storage for the 32-byte key that encrypts the local vault (Keychain, Keystore-wrapped
/// preferences…). Must return the same key on every call for the same device.
pub trait VaultKeyStore: Send + Sync {
    fn load_or_create(&self) -> Result<[u8; 32], HostError>;
}

/// Reads the enrollment SMS for the app (Android SMS Retriever / User Consent API), so
/// `enroll` on Android may omit `smsCode`. Called on a blocking thread; may block up to
/// `timeout` and returns the code's digits, or `None` when no SMS arrived.
pub trait SmsCodeProvider: Send + Sync {
    fn sms_code(&self, timeout: std::time::Duration) -> Option<String>;
}

/// Desktop default: the vault key in a file beside the vault, readable by the owner only.
pub struct FileVaultKey {
    path: PathBuf,
}

impl FileVaultKey {
    pub fn new(data_directory: &Path) -> Self {
        FileVaultKey {
            path: data_directory.join("strongauth.key"),
        }
    }
}

impl VaultKeyStore for FileVaultKey {
    fn load_or_create(&self) -> Result<[u8; 32], HostError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => bytes
                .try_into()
                .map_err(|_| HostError("vault key file has the wrong length".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                crate::vault::write_atomically(&self.path, &key, true)
                    .map_err(|e| HostError(format!("cannot write vault key: {e}")))?;
                Ok(key)
            }
            Err(e) => Err(HostError(format!("cannot read vault key: {e}"))),
        }
    }
}

/// What the host app gives the component. Only the token provider is mandatory.
#[derive(Clone)]
pub struct Host {
    pub tokens: Arc<dyn AccessTokenProvider>,
    /// Platform keystore; `None` keeps a software key inside the encrypted vault.
    pub device_keys: Option<Arc<dyn DeviceKeys>>,
    /// Where the vault key lives; `None` uses [`FileVaultKey`] in the data directory.
    pub vault_key: Option<Arc<dyn VaultKeyStore>>,
    /// Android SMS reader; used only when `platform` is `android` and `smsCode` is omitted.
    pub sms_codes: Option<Arc<dyn SmsCodeProvider>>,
}

impl Host {
    pub fn new(tokens: Arc<dyn AccessTokenProvider>) -> Self {
        Host {
            tokens,
            device_keys: None,
            vault_key: None,
            sms_codes: None,
        }
    }
}
