//! Server key material. Lives in a key file (mode 0600) or the `PIMS_SERVER_KEYS` environment
//! variable, never in the database: a database dump alone allows no offline PIN guessing and
//! reveals no SMS code or OTP.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::{engine::general_purpose::STANDARD, Engine};
use hkdf::Hkdf;
use pims_proto::pin::opaque_ke::ServerSetup;
use pims_proto::pin::PinSuite;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::audit::AuditKey;

pub const KEYS_ENV: &str = "PIMS_SERVER_KEYS";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyFile {
    /// Serialized OPAQUE `ServerSetup<PinSuite>` (OPRF seed and server key pair), base64.
    opaque_server_setup: String,
    /// 32 random bytes, base64; every MAC and signing key is derived from it.
    secret: String,
}

pub struct Keys {
    pub opaque: ServerSetup<PinSuite>,
    /// HMAC key of SMS codes.
    pub sms_code: [u8; 32],
    /// HMAC key under which OTPs are stored.
    pub otp: [u8; 32],
    /// HS256 key of development access tokens.
    pub dev_token: [u8; 32],
    /// XChaCha20-Poly1305 key sealing server-side OPAQUE login state at rest.
    pub login_state: [u8; 32],
    /// HMAC key of the audit chain.
    pub audit: AuditKey,
    /// XChaCha20-Poly1305 key sealing the console's sign-in and session cookies.
    pub console_cookie: [u8; 32],
    /// The PIN co-signing key of remote commands (P-256): signs a command's envelope only
    /// after a counted PIN check bound to it. Cars and relying parties pin its public half.
    pub command_cosign: pims_command::Signer,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { .. }")
    }
}

impl Keys {
    /// Reads the keys from `PIMS_SERVER_KEYS` if set, else from `path`, creating the file
    /// (mode 0600) with fresh keys when it does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Keys> {
        if let Ok(json) = std::env::var(KEYS_ENV) {
            return Keys::from_json(&json).with_context(|| format!("reading keys from {KEYS_ENV}"));
        }
        match std::fs::read_to_string(path) {
            Ok(json) => Keys::from_json(&json)
                .with_context(|| format!("reading key file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let json = Keys::generate_json();
                write_private_file(path, json.as_bytes())
                    .with_context(|| format!("creating key file {}", path.display()))?;
                tracing::info!(path = %path.display(), "created a new server key file");
                Keys::from_json(&json)
            }
            Err(e) => Err(e).with_context(|| format!("reading key file {}", path.display())),
        }
    }

    /// Reads the keys from `PIMS_SERVER_KEYS` if set, else from `path`, which must exist
    /// (tools that check existing data must not invent new keys).
    pub fn load(path: &Path) -> anyhow::Result<Keys> {
        if let Ok(json) = std::env::var(KEYS_ENV) {
            return Keys::from_json(&json).with_context(|| format!("reading keys from {KEYS_ENV}"));
        }
        let json = std::fs::read_to_string(path)
            .with_context(|| format!("reading key file {}", path.display()))?;
        Keys::from_json(&json).with_context(|| format!("reading key file {}", path.display()))
    }

    /// Fresh key material as key-file JSON.
    pub fn generate_json() -> String {
        let setup = ServerSetup::<PinSuite>::new(&mut OsRng);
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let file = KeyFile {
            opaque_server_setup: STANDARD.encode(setup.serialize()),
            secret: STANDARD.encode(secret),
        };
        serde_json::to_string_pretty(&file).expect("key file serializes")
    }

    pub fn from_json(json: &str) -> anyhow::Result<Keys> {
        let file: KeyFile = serde_json::from_str(json).context("malformed key JSON")?;
        let setup_bytes = STANDARD
            .decode(file.opaque_server_setup.trim())
            .context("opaqueServerSetup is not base64")?;
        let opaque = ServerSetup::<PinSuite>::deserialize(&setup_bytes)
            .map_err(|e| anyhow::anyhow!("opaqueServerSetup is invalid: {e:?}"))?;
        let secret = STANDARD
            .decode(file.secret.trim())
            .context("secret is not base64")?;
        anyhow::ensure!(secret.len() == 32, "secret must be 32 bytes");
        let hk = Hkdf::<Sha256>::new(Some(b"pims-server/v1"), &secret);
        let derive = |info: &[u8]| {
            let mut k = [0u8; 32];
            hk.expand(info, &mut k)
                .expect("32 bytes is a valid HKDF length");
            k
        };
        Ok(Keys {
            opaque,
            sms_code: derive(b"sms-code-mac"),
            otp: derive(b"otp-mac"),
            dev_token: derive(b"dev-token-hs256"),
            login_state: derive(b"login-state-seal"),
            audit: AuditKey::new(derive(b"audit-chain")),
            console_cookie: derive(b"console-cookie-seal"),
            command_cosign: pims_command::Signer::from_scalar(&derive(b"command-pin-cosign"))
                // A derived scalar is ≥ n or zero with probability about 2^-128.
                .context("the command co-signing key derived from secret is not a scalar")?,
        })
    }
}

/// Writes through a private temporary file then renames, so a crash never leaves a half key file.
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reloads_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let a = Keys::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = Keys::load_or_create(&path).unwrap();
        assert_eq!(a.sms_code, b.sms_code);
        assert_eq!(a.opaque.serialize(), b.opaque.serialize());
        assert_ne!(a.sms_code, a.otp);
        assert_ne!(a.otp, a.dev_token);
        assert_ne!(a.dev_token, a.login_state);
        // The audit key reloads the same and is none of the others.
        let link = crate::audit::Link {
            id: 1,
            prev_id: None,
            at: 0,
            account: "a",
            event: "e",
            device_id: None,
            detail: None,
        };
        let mac = |k: &AuditKey| crate::audit::link_mac(k, None, &link);
        assert_eq!(mac(&a.audit), mac(&b.audit));
        for other in [a.sms_code, a.otp, a.dev_token] {
            assert_ne!(mac(&a.audit), mac(&AuditKey::new(other)));
        }
    }

    #[test]
    fn the_command_cosigning_key_is_the_one_derived_before_and_signs_low_s() {
        // The public half a key file's secret gives: unchanged since the key was first
        // derived (cars and relying parties pinned it), whatever library holds the key.
        let json = serde_json::json!({
            "opaqueServerSetup": STANDARD.encode(ServerSetup::<PinSuite>::new(&mut OsRng).serialize()),
            "secret": STANDARD.encode([7u8; 32]),
        })
        .to_string();
        let keys = Keys::from_json(&json).unwrap();
        let public: String = keys
            .command_cosign
            .public_key()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            public,
            "041ce02280a38ec30d10b3e9c81d0d3db934f66a2161f53cc5ed391e8816af77b0\
             d52c647812925344e55a29a405eeb7ebd8e545cc0ba5e5b81fb85570d35cc469"
        );
        // Every signature low-S and valid under the rule the car applies (about half of
        // ring's come out high-S before the normalization: 64 tries miss none).
        for i in 0..64u8 {
            let message = pims_command::pin_message(&[i; 40]);
            let signature = keys.command_cosign.sign(&message).unwrap();
            assert!(pims_command::signature_ok(
                keys.command_cosign.public_key(),
                &message,
                &signature
            ));
        }
        let message = pims_command::pin_message(b"envelope");
        let signature = keys.command_cosign.sign(&message).unwrap();
        assert!(!pims_command::signature_ok(
            keys.command_cosign.public_key(),
            &pims_command::pin_message(b"another envelope"),
            &signature
        ));
        // Zero and a value above the group order are no keys.
        assert!(pims_command::Signer::from_scalar(&[0; 32]).is_err());
        assert!(pims_command::Signer::from_scalar(&[0xff; 32]).is_err());
    }
}
