//! Signed remote commands for relying parties and tests: `pims-command`'s one verifier and its
//! strict parser, as functions of bytes. The same rules the command service and the car run
//! (default policy: unlocking the doors and the keychain's commands need the PIN; 30 s expiry
//! cap; 10 s of clock skew), with the caller's keychain, clock and counter windows. No I/O: a
//! relying party pins the command service's PIN co-signing key (`GET /v1/commands/keys`) and
//! saves the returned window before it acts.

use pims_command::{
    encode_proof, key_id, Fault, KeyEntry, PinCheck, Policy, Proof, Role, Verifier, Window,
};
use sha2::{Digest, Sha256};

/// How far a device's clock may run ahead of the verifier's: as the car and the service.
const CLOCK_SKEW_SECONDS: u64 = 10;

/// A key on the relying party's keychain.
#[derive(Debug, Clone, uniffi::Record)]
pub struct CommandKey {
    /// SEC1 uncompressed P-256 public key (65 bytes).
    pub public_key: Vec<u8>,
    /// `owner` or `driver`.
    pub role: String,
    /// A removed key stays known but inactive.
    pub active: bool,
    /// The counters seen from this key: the highest, and a bit per counter of the 64 below it.
    pub window_highest: u64,
    pub window_seen_below: u64,
}

/// A proof that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VerifiedCommand {
    pub vin: String,
    /// `doors.unlock`, `horn`, `chargeDeferredTime`… (the command's kind name).
    pub command: String,
    /// The server's PIN co-signature is present and valid for this envelope.
    pub with_pin: bool,
    /// The policy requires the PIN for this command.
    pub needs_pin: bool,
    pub counter: u64,
    pub expires_at: u64,
    /// SHA-256 of the proof's bytes (what the car's receipt answers).
    pub digest: Vec<u8>,
    /// The key's window with this counter recorded: save it before acting on the command.
    pub window_highest: u64,
    pub window_seen_below: u64,
}

/// A proof's parts, parsed strictly (no signature checked).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ParsedProof {
    /// The envelope's exact bytes, as the device signed them.
    pub envelope: Vec<u8>,
    pub envelope_sha256: Vec<u8>,
    /// DER ECDSA P-256 by the device key.
    pub device_signature: Vec<u8>,
    /// DER ECDSA P-256 by the command service's PIN co-signing key, when the PIN was proven.
    pub pin_cosignature: Option<Vec<u8>>,
    pub proof_sha256: Vec<u8>,
    pub command: String,
    pub vin: String,
    pub audience: String,
    /// SHA-256 of the signing key (its id on a keychain).
    pub key_id: Vec<u8>,
    pub counter: u64,
    pub expires_at: u64,
}

/// Why a proof was refused: one variant per rule of the verifier. `fault` is its stable name
/// (`malformed`, `wrongVehicle`, `pinRequired`…), `reason` a sentence for logs.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Error)]
pub enum CommandFault {
    Malformed {
        fault: String,
        reason: String,
    },
    UnsupportedVersion {
        fault: String,
        reason: String,
    },
    WrongVehicle {
        fault: String,
        reason: String,
    },
    WrongAudience {
        fault: String,
        reason: String,
    },
    UnknownKey {
        fault: String,
        reason: String,
    },
    InactiveKey {
        fault: String,
        reason: String,
    },
    InsufficientPrivileges {
        fault: String,
        reason: String,
    },
    BadSignature {
        fault: String,
        reason: String,
    },
    Expired {
        fault: String,
        reason: String,
    },
    TtlTooLong {
        fault: String,
        reason: String,
    },
    ReplayedCounter {
        fault: String,
        reason: String,
    },
    PinRequired {
        fault: String,
        reason: String,
    },
    BadPinEvidence {
        fault: String,
        reason: String,
    },
    /// The caller's keychain itself is wrong (a role other than `owner` or `driver`).
    InvalidKeychain {
        fault: String,
        reason: String,
    },
}

impl std::fmt::Display for CommandFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (fault, reason) = self.parts();
        write!(f, "{fault}: {reason}")
    }
}

impl std::error::Error for CommandFault {}

impl CommandFault {
    fn parts(&self) -> (&str, &str) {
        use CommandFault::*;
        match self {
            Malformed { fault, reason }
            | UnsupportedVersion { fault, reason }
            | WrongVehicle { fault, reason }
            | WrongAudience { fault, reason }
            | UnknownKey { fault, reason }
            | InactiveKey { fault, reason }
            | InsufficientPrivileges { fault, reason }
            | BadSignature { fault, reason }
            | Expired { fault, reason }
            | TtlTooLong { fault, reason }
            | ReplayedCounter { fault, reason }
            | PinRequired { fault, reason }
            | BadPinEvidence { fault, reason }
            | InvalidKeychain { fault, reason } => (fault, reason),
        }
    }

    fn invalid_keychain(reason: String) -> CommandFault {
        CommandFault::InvalidKeychain {
            fault: "invalidKeychain".into(),
            reason,
        }
    }
}

impl From<Fault> for CommandFault {
    fn from(f: Fault) -> Self {
        let fault = f.as_str().to_string();
        let reason = f.to_string();
        match f {
            Fault::Malformed(_) => CommandFault::Malformed { fault, reason },
            Fault::UnsupportedVersion => CommandFault::UnsupportedVersion { fault, reason },
            Fault::WrongVehicle => CommandFault::WrongVehicle { fault, reason },
            Fault::WrongAudience => CommandFault::WrongAudience { fault, reason },
            Fault::UnknownKey => CommandFault::UnknownKey { fault, reason },
            Fault::InactiveKey => CommandFault::InactiveKey { fault, reason },
            Fault::InsufficientPrivileges => CommandFault::InsufficientPrivileges { fault, reason },
            Fault::BadSignature => CommandFault::BadSignature { fault, reason },
            Fault::Expired => CommandFault::Expired { fault, reason },
            Fault::TtlTooLong => CommandFault::TtlTooLong { fault, reason },
            Fault::ReplayedCounter => CommandFault::ReplayedCounter { fault, reason },
            Fault::PinRequired => CommandFault::PinRequired { fault, reason },
            Fault::BadPinEvidence => CommandFault::BadPinEvidence { fault, reason },
        }
    }
}

/// Parses a command proof strictly (unknown, repeated or out-of-order fields, trailing bytes,
/// oversize: refused) and returns its parts and digests. Checks no signature: use
/// [`verify_command_proof`] before trusting anything in it.
#[uniffi::export]
pub fn parse_command_proof(proof: Vec<u8>) -> Result<ParsedProof, CommandFault> {
    let parsed = Proof::parse(&proof)?;
    let e = &parsed.envelope;
    Ok(ParsedProof {
        envelope_sha256: Sha256::digest(&parsed.envelope_bytes).to_vec(),
        proof_sha256: parsed.digest().to_vec(),
        command: e.command.kind().as_str().to_string(),
        vin: e.vin.clone(),
        audience: e.audience.clone(),
        key_id: e.key_id.to_vec(),
        counter: e.counter,
        expires_at: e.expires_at,
        envelope: parsed.envelope_bytes,
        device_signature: parsed.device_signature,
        pin_cosignature: parsed.pin_cosignature,
    })
}

/// A proof's bytes from its parts (the inverse of [`parse_command_proof`]): for a relying
/// party that received the envelope and signatures apart, and for tests.
#[uniffi::export]
pub fn encode_command_proof(
    envelope: Vec<u8>,
    device_signature: Vec<u8>,
    pin_cosignature: Option<Vec<u8>>,
) -> Vec<u8> {
    encode_proof(&envelope, &device_signature, pin_cosignature.as_deref())
}

/// Verifies a command proof as the car does: for `vin` and `audience`, signed by a key of
/// `keychain` (active, with the role the command needs, its counter not seen in its window),
/// not expired at `now` (Unix seconds) nor living longer than the command allows, low-S
/// signatures only, and the PIN co-signature by `pin_cosign_key` (SEC1) valid when present
/// and present when the command needs the PIN.
#[uniffi::export]
pub fn verify_command_proof(
    proof: Vec<u8>,
    vin: String,
    audience: String,
    pin_cosign_key: Vec<u8>,
    now: u64,
    keychain: Vec<CommandKey>,
) -> Result<VerifiedCommand, CommandFault> {
    let mut entries = Vec::with_capacity(keychain.len());
    for key in keychain {
        let role = Role::parse(&key.role).ok_or_else(|| {
            CommandFault::invalid_keychain(format!(
                "role {:?} is neither owner nor driver",
                key.role
            ))
        })?;
        entries.push((
            key_id(&key.public_key),
            KeyEntry {
                public_key: key.public_key,
                role,
                active: key.active,
                window: Window {
                    highest: key.window_highest,
                    seen_below: key.window_seen_below,
                },
            },
        ));
    }
    let policy = Policy::default();
    let verifier = Verifier {
        vin: &vin,
        audience: &audience,
        policy: &policy,
        pin: PinCheck::Cosignature(&pin_cosign_key),
        clock_skew: CLOCK_SKEW_SECONDS,
    };
    let accepted = verifier.verify(&proof, now, |id| {
        entries
            .into_iter()
            .find(|(key, _)| key == id)
            .map(|(_, entry)| entry)
    })?;
    let e = accepted.envelope;
    Ok(VerifiedCommand {
        vin: e.vin,
        command: e.command.kind().as_str().to_string(),
        with_pin: accepted.with_pin,
        needs_pin: accepted.needs_pin,
        counter: e.counter,
        expires_at: e.expires_at,
        digest: accepted.digest.to_vec(),
        window_highest: accepted.window.highest,
        window_seen_below: accepted.window.seen_below,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_proof_is_named() {
        let fault = parse_command_proof(vec![0xff]).unwrap_err();
        assert_eq!(fault.parts().0, "malformed");
        let fault =
            verify_command_proof(vec![], "V".into(), "a".into(), vec![], 0, vec![]).unwrap_err();
        assert!(matches!(fault, CommandFault::Malformed { .. }), "{fault}");
    }

    #[test]
    fn an_unknown_role_is_the_callers_mistake() {
        let key = CommandKey {
            public_key: vec![4; 65],
            role: "admin".into(),
            active: true,
            window_highest: 0,
            window_seen_below: 0,
        };
        let fault =
            verify_command_proof(vec![], "V".into(), "a".into(), vec![], 0, vec![key]).unwrap_err();
        assert_eq!(fault.parts().0, "invalidKeychain");
    }
}
