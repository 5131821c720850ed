//! Fixed keys and a proof builder shared by the crate's tests and benchmark.
#![allow(dead_code)]

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use pims_command::*;

pub const VIN: &str = "VR1AB12C3D4567890";
pub const AUDIENCE: &str = "pims-commands";
pub const NOW: u64 = 1_800_000_000;

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

pub fn public(key: &SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

/// Deterministic (RFC 6979) DER signature, low-S.
pub fn sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let s: Signature = key.sign(message);
    s.normalize_s().unwrap_or(s).to_der().as_bytes().to_vec()
}

pub fn device() -> SigningKey {
    key(0x11)
}

pub fn cosigner() -> SigningKey {
    key(0x22)
}

pub fn envelope(command: Command, counter: u64, with_pin: bool) -> Envelope {
    Envelope {
        vin: VIN.into(),
        audience: AUDIENCE.into(),
        command,
        key_id: key_id(&public(&device())),
        counter,
        expires_at: NOW + 20,
        challenge: vec![0xC7; 16],
        pin_binding: with_pin.then_some([0xB1; 32]),
    }
}

/// The proof of `e` signed by `device`, co-signed by `cosigner` when it has a PIN binding.
pub fn proof_of(e: &Envelope, device: &SigningKey, cosigner: Option<&SigningKey>) -> Vec<u8> {
    let envelope_bytes = e.encode();
    let device_signature = sign(device, &device_message(&envelope_bytes));
    let pin_cosignature = cosigner.map(|c| sign(c, &pin_message(&envelope_bytes)));
    Proof {
        envelope: e.clone(),
        envelope_bytes,
        device_signature,
        pin_cosignature,
    }
    .encode()
}

pub fn proof(command: Command, counter: u64, with_pin: bool) -> Vec<u8> {
    let e = envelope(command, counter, with_pin);
    proof_of(&e, &device(), with_pin.then(cosigner).as_ref())
}

pub fn entry(role: Role, window: Window) -> KeyEntry {
    KeyEntry {
        public_key: public(&device()),
        role,
        active: true,
        window,
    }
}

/// A car's verifier: its VIN, the service's audience, the default policy, the pinned
/// co-signing key.
pub fn car_verify(proof: &[u8], now: u64, entry: Option<KeyEntry>) -> Result<Accepted, Fault> {
    let policy = Policy::default();
    let cosign_key = public(&cosigner());
    let verifier = Verifier {
        vin: VIN,
        audience: AUDIENCE,
        policy: &policy,
        pin: PinCheck::Cosignature(&cosign_key),
        clock_skew: 10,
    };
    let id = key_id(&public(&device()));
    verifier.verify(proof, now, |k| entry.filter(|_| *k == id))
}

pub fn owner() -> Option<KeyEntry> {
    Some(entry(Role::Owner, Window::default()))
}
