//! Keys reach a car's keychain two ways only. The first owner key comes with proof of
//! presence: the car shows a one-time pairing code (standing for a key-card tap) and the phone
//! sends a MAC under it over the car and the key, so a relay that carries the request can
//! neither read the code nor put its own key in. Further keys come by a `keys.add` command an
//! owner key signs with the PIN. The cloud may ask a car to *remove* keys, never to add one:
//! its answer to the car's keychain sync is signed by the PIN co-signing key and bound to the
//! car's nonce.

use ring::hmac;
use sha2::{Digest, Sha256};

const PAIRING_LABEL: &[u8] = b"pims/v1/pair\n";
const ANSWER_LABEL: &[u8] = b"pims/v1/pair-answer\n";
const SYNC_LABEL: &[u8] = b"pims/v1/keychain-sync\n";

/// The pairing MAC a phone sends for `public_key` (SEC1) on `vin`, under the code the car shows.
pub fn pairing_mac(code: &str, vin: &str, public_key: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, normalize(code).as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(PAIRING_LABEL);
    ctx.update(vin.as_bytes());
    ctx.update(public_key);
    ctx.sign().as_ref().try_into().expect("32 bytes")
}

/// Whether `mac` is the pairing MAC for this code, car and key (constant time).
pub fn pairing_mac_ok(code: &str, vin: &str, public_key: &[u8], mac: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, normalize(code).as_bytes());
    hmac::verify(
        &key,
        &[PAIRING_LABEL, vin.as_bytes(), public_key].concat(),
        mac,
    )
    .is_ok()
}

/// The car's answer to a pairing: a MAC under the same code over the car, the phone's key and
/// the car's own key, so nobody who relays the pairing can hand the phone another "car key"
/// (and then sign receipts for a car it never reached).
pub fn pairing_answer_mac(code: &str, vin: &str, phone_key: &[u8], car_key: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, normalize(code).as_bytes());
    hmac::sign(&key, &pairing_answer_message(vin, phone_key, car_key))
        .as_ref()
        .try_into()
        .expect("32 bytes")
}

/// Whether `mac` is the car's answer for these keys (constant time).
pub fn pairing_answer_ok(
    code: &str,
    vin: &str,
    phone_key: &[u8],
    car_key: &[u8],
    mac: &[u8],
) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, normalize(code).as_bytes());
    hmac::verify(&key, &pairing_answer_message(vin, phone_key, car_key), mac).is_ok()
}

fn pairing_answer_message(vin: &str, phone_key: &[u8], car_key: &[u8]) -> Vec<u8> {
    let mut m = ANSWER_LABEL.to_vec();
    for part in [vin.as_bytes(), phone_key, car_key] {
        m.extend_from_slice(&(part.len() as u32).to_be_bytes());
        m.extend_from_slice(part);
    }
    m
}

/// Codes are read off a screen: case and separators do not matter.
fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// One key a car asks about in a keychain sync.
pub struct SyncedKey<'a> {
    pub account: &'a str,
    pub device_id: &'a str,
    pub key_id: &'a [u8],
}

/// The bytes the cloud signs when it tells car `vin`, answering its sync `nonce` about exactly
/// the keys `asked`, which keys to remove: a relay that drops a key from the question, or
/// changes what a key is known by, gets an answer the car refuses.
pub fn keychain_sync_message(
    vin: &str,
    nonce: &[u8],
    asked: &[SyncedKey<'_>],
    removed: &[[u8; 32]],
) -> Vec<u8> {
    let mut question = Sha256::new();
    for k in asked {
        for part in [k.account.as_bytes(), k.device_id.as_bytes(), k.key_id] {
            question.update((part.len() as u32).to_be_bytes());
            question.update(part);
        }
    }
    let mut sorted = removed.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut answer = Sha256::new();
    for id in &sorted {
        answer.update(id);
    }
    [
        SYNC_LABEL,
        &(vin.len() as u32).to_be_bytes(),
        vin.as_bytes(),
        &(nonce.len() as u32).to_be_bytes(),
        nonce,
        &question.finalize()[..],
        &answer.finalize()[..],
    ]
    .concat()
}
