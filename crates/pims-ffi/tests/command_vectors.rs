//! The golden command vectors (`crates/pims-command/tests/vectors/golden.json`) through the
//! functions the bindings export: the parts and digests byte for byte, every proof accepted
//! with the fixed keys, and every one-byte change refused.

use pims_ffi::{
    encode_command_proof, parse_command_proof, verify_command_proof, CommandFault, CommandKey,
};
use serde_json::Value;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pims-command/tests/vectors/golden.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn owner(g: &Value) -> Vec<CommandKey> {
    vec![CommandKey {
        public_key: hex(g["devicePublicKey"].as_str().unwrap()),
        role: "owner".into(),
        active: true,
        window_highest: 0,
        window_seen_below: 0,
    }]
}

fn verify(g: &Value, proof: Vec<u8>) -> Result<pims_ffi::VerifiedCommand, CommandFault> {
    verify_command_proof(
        proof,
        g["vin"].as_str().unwrap().into(),
        g["audience"].as_str().unwrap().into(),
        hex(g["pinCosignPublicKey"].as_str().unwrap()),
        g["now"].as_u64().unwrap(),
        owner(g),
    )
}

#[test]
fn golden_vectors_parse_and_verify_byte_for_byte() {
    let g = golden();
    let cases = g["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let proof = hex(case["proof"].as_str().unwrap());
        let parsed = parse_command_proof(proof.clone()).unwrap();
        assert_eq!(parsed.envelope, hex(case["envelope"].as_str().unwrap()));
        assert_eq!(
            parsed.envelope_sha256,
            hex(case["envelopeSha256"].as_str().unwrap())
        );
        assert_eq!(
            parsed.device_signature,
            hex(case["deviceSignature"].as_str().unwrap())
        );
        assert_eq!(
            parsed.pin_cosignature,
            case["pinCosignature"].as_str().map(hex)
        );
        assert_eq!(
            parsed.proof_sha256,
            hex(case["proofSha256"].as_str().unwrap())
        );
        assert_eq!(parsed.command, case["command"].as_str().unwrap());
        assert_eq!(parsed.key_id, hex(g["keyId"].as_str().unwrap()));
        let ok = verify(&g, proof.clone()).unwrap();
        assert_eq!(ok.command, case["command"].as_str().unwrap());
        assert_eq!(ok.digest, parsed.proof_sha256);
        assert_eq!(ok.with_pin, case["pinCosignature"].is_string());
        assert_eq!(
            (ok.counter, ok.window_highest),
            (
                case["counter"].as_u64().unwrap(),
                case["counter"].as_u64().unwrap()
            )
        );
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] ^= 0x01;
            assert!(
                verify(&g, bad).is_err(),
                "{}: byte {i} flipped",
                case["name"]
            );
        }
    }
}

#[test]
fn the_unlock_without_its_pin_cosignature_is_pin_required() {
    let g = golden();
    let unlock = &g["cases"][0];
    assert_eq!(unlock["command"], "doors.unlock");
    let parsed = parse_command_proof(hex(unlock["proof"].as_str().unwrap())).unwrap();
    // The same envelope and device signature without the co-signature.
    let proof = encode_command_proof(
        parsed.envelope.clone(),
        parsed.device_signature.clone(),
        None,
    );
    let with = encode_command_proof(
        parsed.envelope,
        parsed.device_signature,
        parsed.pin_cosignature,
    );
    assert_eq!(with, hex(unlock["proof"].as_str().unwrap()));
    let fault = verify(&g, proof).unwrap_err();
    assert!(
        matches!(fault, CommandFault::PinRequired { ref fault, .. } if fault == "pinRequired"),
        "{fault}"
    );
    // Another car, another service, a replayed counter.
    let proof = hex(unlock["proof"].as_str().unwrap());
    let mut other = g.clone();
    other["vin"] = "VR3UPHNKSKT101603".into();
    assert!(matches!(
        verify(&other, proof.clone()),
        Err(CommandFault::WrongVehicle { .. })
    ));
    let mut keys = owner(&g);
    keys[0].window_highest = 7;
    let fault = verify_command_proof(
        proof,
        g["vin"].as_str().unwrap().into(),
        g["audience"].as_str().unwrap().into(),
        hex(g["pinCosignPublicKey"].as_str().unwrap()),
        g["now"].as_u64().unwrap(),
        keys,
    )
    .unwrap_err();
    assert!(
        matches!(fault, CommandFault::ReplayedCounter { .. }),
        "{fault}"
    );
}
