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

/// Codes are read off a screen: case and separators do not matter.
fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The bytes the cloud signs when it tells car `vin`, answering its sync `nonce`, which keys
/// to remove.
pub fn keychain_sync_message(vin: &str, nonce: &[u8], removed: &[[u8; 32]]) -> Vec<u8> {
    let mut sorted = removed.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut h = Sha256::new();
    for id in &sorted {
        h.update(id);
    }
    [
        SYNC_LABEL,
        &(vin.len() as u32).to_be_bytes(),
        vin.as_bytes(),
        &(nonce.len() as u32).to_be_bytes(),
        nonce,
        &h.finalize()[..],
    ]
    .concat()
}
