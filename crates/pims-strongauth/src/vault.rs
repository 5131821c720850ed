//! The encrypted local state of this device: its enrollment, its software key if it has no
//! hardware key, and an enrollment whose answer was lost.
//!
//! File format: `PIMSVLT1` ‖ 24-byte nonce ‖ XChaCha20-Poly1305(JSON), the magic as associated
//! data. Writes go to a temporary file that is synced and renamed over the old one, so a crash
//! leaves either the old or the new state, never a torn one. On unix the file is the owner's
//! only (0600), and so is any directory the SDK creates for it (0700).

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use pims_proto::{Bytes, FinishEnrollment};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"PIMSVLT1";
const NONCE_LEN: usize = 24;
pub const VAULT_FILE: &str = "strongauth.vault";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultState {
    /// The device enrollment the server confirmed (Pending until activated).
    pub enrollment: Option<Enrollment>,
    /// An enrollment finish sent without a definite answer; resent with the same idempotency
    /// key on the next call.
    pub unconfirmed: Option<UnconfirmedEnrollment>,
    /// The cars this device paired with: VIN → the car's public key, which signs its receipts.
    #[serde(default)]
    pub vehicles: std::collections::BTreeMap<String, Bytes>,
    /// VIN → the counter of the last receipt from that car: a receipt must be newer.
    #[serde(default)]
    pub vehicle_receipts: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    pub device_id: String,
    pub activated: bool,
    pub activation_nonce: Bytes,
    /// Last counter value used in a signature; the next signature uses a higher one.
    pub counter: u64,
    pub key: DeviceKey,
    /// The device key's public half (SEC1): a car knows the key by its digest. Empty in
    /// vaults written before remote commands (see `vehicle::public_key`).
    #[serde(default)]
    pub public_key: Bytes,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnconfirmedEnrollment {
    pub enrollment_id: String,
    pub request: FinishEnrollment,
    pub key: DeviceKey,
}

impl std::fmt::Debug for UnconfirmedEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnconfirmedEnrollment")
            .field("enrollment_id", &self.enrollment_id)
            .finish_non_exhaustive()
    }
}

/// Where the device's private key is.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum DeviceKey {
    /// P-256 scalar kept in this (encrypted) vault.
    Software { secret: Bytes },
    /// Key held by the platform keystore under this alias.
    Host { alias: String },
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceKey::Software { .. } => f.write_str("Software(..)"),
            DeviceKey::Host { alias } => write!(f, "Host({alias})"),
        }
    }
}

/// Why the vault could not be read or written. Each maps to 2311.
#[derive(Debug)]
pub enum VaultError {
    Io(std::io::Error),
    /// Wrong format, wrong key or tampered content.
    Unreadable,
    Key(String),
}

impl std::fmt::Display for VaultError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultError::Io(e) => write!(f, "vault I/O: {e}"),
            VaultError::Unreadable => f.write_str("vault cannot be decrypted or parsed"),
            VaultError::Key(e) => write!(f, "vault key: {e}"),
        }
    }
}

pub struct Vault {
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
}

impl Vault {
    pub fn new(data_directory: &Path, key: [u8; 32]) -> Self {
        Vault {
            path: data_directory.join(VAULT_FILE),
            key: Zeroizing::new(key),
        }
    }

    /// Reads the state; a missing file is the empty state of a device never enrolled.
    pub fn read(&self) -> Result<VaultState, VaultError> {
        let data = match std::fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(VaultState::default()),
            Err(e) => return Err(VaultError::Io(e)),
        };
        if data.len() < MAGIC.len() + NONCE_LEN || &data[..MAGIC.len()] != MAGIC {
            return Err(VaultError::Unreadable);
        }
        let (nonce, ciphertext) = data[MAGIC.len()..].split_at(NONCE_LEN);
        let plaintext = Zeroizing::new(
            self.cipher()
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: MAGIC,
                    },
                )
                .map_err(|_| VaultError::Unreadable)?,
        );
        serde_json::from_slice(&plaintext).map_err(|_| VaultError::Unreadable)
    }

    pub fn write(&self, state: &VaultState) -> Result<(), VaultError> {
        let plaintext = Zeroizing::new(serde_json::to_vec(state).expect("vault state serializes"));
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ciphertext = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: MAGIC,
                },
            )
            .expect("encryption of an in-memory buffer cannot fail");
        let mut data = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ciphertext.len());
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&ciphertext);
        // Owner only although encrypted: it holds the device's key, and the vault key may be
        // the file beside it.
        write_atomically(&self.path, &data, true).map_err(VaultError::Io)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.key).into())
    }
}

/// Replaces `path` with `data` so that a crash at any point leaves the old or the new content.
/// With `owner_only`, the file is created 0600 (unix). Missing directories are created 0700
/// whatever `owner_only`: they hold the SDK's secrets. An existing directory is left as it is.
pub fn write_atomically(path: &Path, data: &[u8], owner_only: bool) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    // A name of its own, created exclusively: a leftover of an earlier crash (maybe with wider
    // permissions), a symbolic link or a concurrent writer's file is never reused.
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".{:016x}.tmp", rand::random::<u64>()));
    let tmp = path.with_file_name(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // The mode is set at creation, so the content is never readable by others, even briefly.
    #[cfg(unix)]
    if owner_only {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = owner_only;
    let mut file = options.open(&tmp)?;
    let replaced = (|| {
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = replaced {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The fixed-name temporary file of earlier versions, left by a crash: 0644 for the vault.
    let mut legacy = path.file_name().unwrap_or_default().to_owned();
    legacy.push(".tmp");
    let _ = std::fs::remove_file(path.with_file_name(legacy));
    // Make the rename itself durable.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VaultState {
        VaultState {
            enrollment: Some(Enrollment {
                device_id: "d1".into(),
                activated: true,
                activation_nonce: Bytes(vec![1, 2]),
                counter: 7,
                key: DeviceKey::Software {
                    secret: Bytes(vec![9; 32]),
                },
                public_key: Bytes(vec![4; 65]),
            }),
            unconfirmed: None,
            vehicles: Default::default(),
            vehicle_receipts: Default::default(),
        }
    }

    #[test]
    fn round_trips_and_is_encrypted_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::new(dir.path(), [3; 32]);
        vault.write(&sample()).unwrap();
        let read = vault.read().unwrap().enrollment.unwrap();
        assert_eq!((read.device_id.as_str(), read.counter), ("d1", 7));
        let raw = std::fs::read(dir.path().join(VAULT_FILE)).unwrap();
        assert!(!raw.windows(2).any(|w| w == b"d1"));
    }

    #[test]
    fn missing_file_is_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let state = Vault::new(dir.path(), [3; 32]).read().unwrap();
        assert!(state.enrollment.is_none() && state.unconfirmed.is_none());
    }

    #[test]
    fn wrong_key_truncation_and_garbage_are_unreadable_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        Vault::new(dir.path(), [3; 32]).write(&sample()).unwrap();
        assert!(matches!(
            Vault::new(dir.path(), [4; 32]).read(),
            Err(VaultError::Unreadable)
        ));

        let path = dir.path().join(VAULT_FILE);
        let raw = std::fs::read(&path).unwrap();
        std::fs::write(&path, &raw[..raw.len() - 5]).unwrap();
        assert!(matches!(
            Vault::new(dir.path(), [3; 32]).read(),
            Err(VaultError::Unreadable)
        ));

        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            Vault::new(dir.path(), [3; 32]).read(),
            Err(VaultError::Unreadable)
        ));
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn the_vault_and_the_directories_created_for_it_are_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let created = root.path().join("app");
        let data = created.join("pims");
        let vault = Vault::new(&data, [3; 32]);
        vault.write(&sample()).unwrap();
        assert_eq!(mode(&data.join(VAULT_FILE)), 0o600);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&created), 0o700);

        // Replaced: still the owner's only, and no temporary file left.
        vault.write(&VaultState::default()).unwrap();
        assert_eq!(mode(&data.join(VAULT_FILE)), 0o600);
        let names: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [VAULT_FILE]);
    }

    #[cfg(unix)]
    #[test]
    fn the_vault_key_and_its_created_directory_are_owner_only() {
        use crate::host::{FileVaultKey, VaultKeyStore};
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("pims");
        FileVaultKey::new(&data).load_or_create().unwrap();
        assert_eq!(mode(&data.join("strongauth.key")), 0o600);
        assert_eq!(mode(&data), 0o700);
    }

    #[cfg(unix)]
    #[test]
    fn a_vault_readable_by_others_is_owner_only_once_rewritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(VAULT_FILE);
        let vault = Vault::new(dir.path(), [3; 32]);
        vault.write(&sample()).unwrap();
        // As an earlier version left it, with a leftover temporary file of that version.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let leftover = dir.path().join("strongauth.vault.tmp");
        std::fs::write(&leftover, b"half-written").unwrap();
        std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).unwrap();
        vault.write(&sample()).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(vault.read().unwrap().enrollment.unwrap().counter, 7);
        assert!(!leftover.exists());
    }

    #[test]
    fn an_interrupted_write_leaves_the_previous_state() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::new(dir.path(), [3; 32]);
        vault.write(&sample()).unwrap();
        // A crash after the temporary file was written but before the rename.
        std::fs::write(dir.path().join("strongauth.vault.tmp"), b"half-written").unwrap();
        assert_eq!(vault.read().unwrap().enrollment.unwrap().counter, 7);
        // And the next write succeeds over the leftover.
        vault.write(&VaultState::default()).unwrap();
        assert!(vault.read().unwrap().enrollment.is_none());
    }
}
