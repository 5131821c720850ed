//! Signed remote commands: a proof of exactly one command, on one car, for one service, by
//! one device key, once — with, when the policy says so, the server's co-signature that the
//! account PIN was proven for that very envelope.
//!
//! - [`Envelope`]: the canonical, versioned bytes a device signs (strict TLV, fixed
//!   parameter layouts: one command has one encoding);
//! - [`Proof`]: the envelope, the device's signature and the PIN co-signature;
//! - [`Verifier`]: every rule, without I/O, for the command service, the car and relying
//!   parties alike; [`Fault`] says which rule refused;
//! - [`Receipt`]: what a car signs back.
//!
//! Dependencies: `ring` verifies ECDSA (the server's verifier already, constant-time);
//! `p256` parses signatures strictly and tells high-S apart; `sha2` digests.

mod envelope;
mod pairing;
mod proof;
mod receipt;
mod signer;
mod tlv;
mod verify;

pub use envelope::{
    key_id, public_key_ok, vin_ok, Command, CommandKind, Envelope, Program, Role, MAX_ENVELOPE,
    MAX_PROGRAMS, VERSION,
};
pub use pairing::{
    keychain_sync_message, pairing_answer_mac, pairing_answer_ok, pairing_mac, pairing_mac_ok,
    SyncedKey,
};
pub use proof::{
    device_message, encode_proof, pin_message, signature_ok, Proof, DEVICE_LABEL, MAX_PROOF,
    PIN_LABEL,
};
pub use receipt::Receipt;
pub use signer::{Signer, SignerError};
pub use verify::{Accepted, KeyEntry, PinCheck, Policy, Rule, Verifier, Window, MAX_TTL};

/// Why a verifier refused a proof: one per rule, each with a remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    #[error("unsupported envelope version")]
    UnsupportedVersion,
    #[error("the proof is for another vehicle")]
    WrongVehicle,
    #[error("the proof is for another service")]
    WrongAudience,
    #[error("the key is not on the keychain")]
    UnknownKey,
    #[error("the key was removed from the keychain")]
    InactiveKey,
    #[error("the key's role does not allow this command")]
    InsufficientPrivileges,
    #[error("the device signature is not valid")]
    BadSignature,
    #[error("the proof has expired")]
    Expired,
    #[error("the proof lives longer than this command allows")]
    TtlTooLong,
    #[error("the counter was seen before")]
    ReplayedCounter,
    #[error("this command needs the PIN")]
    PinRequired,
    #[error("the PIN evidence is not valid")]
    BadPinEvidence,
}

impl Fault {
    /// A stable name for answers and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Fault::Malformed(_) => "malformed",
            Fault::UnsupportedVersion => "unsupportedVersion",
            Fault::WrongVehicle => "wrongVehicle",
            Fault::WrongAudience => "wrongAudience",
            Fault::UnknownKey => "unknownKey",
            Fault::InactiveKey => "inactiveKey",
            Fault::InsufficientPrivileges => "insufficientPrivileges",
            Fault::BadSignature => "badSignature",
            Fault::Expired => "expired",
            Fault::TtlTooLong => "ttlTooLong",
            Fault::ReplayedCounter => "replayedCounter",
            Fault::PinRequired => "pinRequired",
            Fault::BadPinEvidence => "badPinEvidence",
        }
    }
}
