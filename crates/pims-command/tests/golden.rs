//! Golden vectors: fixed keys, RFC 6979 signatures, the envelope and proof bytes and their
//! digests, in `tests/vectors/golden.json`, which the Kotlin and Python tests replay too.
//! `PIMS_BLESS=1` rewrites the file (only when the format changes on purpose).

mod common;

use common::*;
use pims_command::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn cases() -> Vec<(&'static str, Envelope, bool)> {
    vec![
        (
            "unlock with PIN",
            envelope(Command::UnlockDoors, 7, true),
            true,
        ),
        ("horn", envelope(Command::Horn, 8, false), false),
        (
            "charge deferred",
            envelope(
                Command::ChargeDeferredTime {
                    start_now: false,
                    hour: 23,
                    minute: 30,
                    check_start_charge: true,
                },
                9,
                false,
            ),
            false,
        ),
    ]
}

fn generate() -> Value {
    let cases: Vec<Value> = cases()
        .into_iter()
        .map(|(name, e, cosign)| {
            let envelope = e.encode();
            let p = proof_of(&e, &device(), cosign.then(cosigner).as_ref());
            let parsed = Proof::parse(&p).unwrap();
            json!({
                "name": name,
                "command": e.command.kind().as_str(),
                "counter": e.counter,
                "expiresAt": e.expires_at,
                "envelope": hex::encode(&envelope),
                "envelopeSha256": hex::encode(Sha256::digest(&envelope)),
                "deviceSignature": hex::encode(&parsed.device_signature),
                "pinCosignature": parsed.pin_cosignature.as_ref().map(hex::encode),
                "proof": hex::encode(&p),
                "proofSha256": hex::encode(parsed.digest()),
            })
        })
        .collect();
    json!({
        "comment": "Signed-command golden vectors (pims-command). Keys are fixed test keys; signatures are RFC 6979 deterministic ECDSA P-256/SHA-256, DER, low-S.",
        "vin": VIN,
        "audience": AUDIENCE,
        "now": NOW,
        "devicePrivateKey": hex::encode(device().to_bytes()),
        "devicePublicKey": hex::encode(public(&device())),
        "keyId": hex::encode(key_id(&public(&device()))),
        "pinCosignPrivateKey": hex::encode(cosigner().to_bytes()),
        "pinCosignPublicKey": hex::encode(public(&cosigner())),
        "cases": cases,
    })
}

#[test]
fn the_golden_vectors_are_reproduced_byte_for_byte_and_verify() {
    let path = format!("{}/tests/vectors/golden.json", env!("CARGO_MANIFEST_DIR"));
    let fresh = generate();
    if std::env::var_os("PIMS_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&fresh).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(stored, fresh);
    for case in stored["cases"].as_array().unwrap() {
        let p = hex::decode(case["proof"].as_str().unwrap()).unwrap();
        let ok = car_verify(&p, NOW, owner()).unwrap();
        assert_eq!(ok.envelope.command.kind().as_str(), case["command"]);
        assert_eq!(hex::encode(ok.digest), case["proofSha256"]);
    }
}
