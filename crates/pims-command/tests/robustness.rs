//! Every Wycheproof ECDSA P-256 vector through the verifier's signature rule, and 10,000
//! fuzzed proofs through the whole verifier: none accepted, no panic.

mod common;

use common::*;
use pims_command::*;
use rand::{Rng, SeedableRng};
use serde_json::Value;

fn vectors(file: &str) -> Value {
    let path = format!(
        "{}/tests/vectors/wycheproof/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(s: &Value) -> Vec<u8> {
    hex::decode(s.as_str().unwrap()).unwrap()
}

/// Runs `check` on every test; returns (invalid accepted, valid accepted, valid high-S).
fn run(file: &str, check: impl Fn(&[u8], &[u8], &[u8]) -> bool) -> (usize, usize, usize, usize) {
    let v = vectors(file);
    let (mut invalid_accepted, mut valid_accepted, mut valid, mut high_s) = (0, 0, 0, 0);
    for group in v["testGroups"].as_array().unwrap() {
        let key = hex(&group["publicKey"]["uncompressed"]);
        for t in group["tests"].as_array().unwrap() {
            let (msg, sig) = (hex(&t["msg"]), hex(&t["sig"]));
            let accepted = check(&key, &msg, &sig);
            match t["result"].as_str().unwrap() {
                "invalid" if accepted => invalid_accepted += 1,
                "valid" => {
                    valid += 1;
                    valid_accepted += accepted as usize;
                    let s = match sig.len() {
                        64 => p256::ecdsa::Signature::from_slice(&sig),
                        _ => p256::ecdsa::Signature::from_der(&sig),
                    };
                    if s.unwrap().normalize_s().is_some() {
                        high_s += 1;
                        assert!(!accepted, "tcId {} is high-S and was accepted", t["tcId"]);
                    }
                }
                _ => {}
            }
        }
    }
    (invalid_accepted, valid_accepted, valid, high_s)
}

#[test]
fn no_invalid_der_vector_is_accepted_and_every_low_s_valid_one_is() {
    let (invalid, accepted, valid, high_s) = run("ecdsa_secp256r1_sha256_test.json", signature_ok);
    assert_eq!(invalid, 0);
    assert_eq!((valid, accepted + high_s), (174, valid));
    assert!(high_s > 0, "the file has high-S vectors");
}

#[test]
fn no_invalid_p1363_vector_is_accepted_through_the_der_rule() {
    // Raw r‖s as a host that signs in P1363 form would hand it over: converted strictly.
    let (invalid, accepted, valid, high_s) =
        run("ecdsa_secp256r1_sha256_p1363_test.json", |key, msg, sig| {
            sig.len() == 64
                && p256::ecdsa::Signature::from_slice(sig)
                    .is_ok_and(|s| signature_ok(key, msg, s.to_der().as_bytes()))
        });
    assert_eq!(invalid, 0);
    assert_eq!((valid, accepted + high_s), (173, valid));
}

#[test]
fn ten_thousand_fuzzed_proofs_none_accepted_none_panics() {
    let originals = [
        proof(Command::UnlockDoors, 9, true),
        proof(Command::Horn, 9, false),
        proof(
            Command::Preconditioning {
                start_now: true,
                programs: vec![Program {
                    slot: 2,
                    hour: 6,
                    minute: 45,
                    enabled: true,
                    days: 31,
                }],
            },
            9,
            false,
        ),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
    let mut accepted = 0;
    for i in 0..10_000 {
        let mut p = originals[i % originals.len()].clone();
        match rng.gen_range(0..5) {
            0 => {
                let at = rng.gen_range(0..p.len());
                p[at] ^= 1 << rng.gen_range(0..8);
            }
            1 => p.truncate(rng.gen_range(0..p.len())),
            2 => {
                let at = rng.gen_range(0..=p.len());
                p.insert(at, rng.gen());
            }
            3 => {
                for _ in 0..rng.gen_range(1..8) {
                    let at = rng.gen_range(0..p.len());
                    p[at] = rng.gen();
                }
            }
            _ => p = (0..rng.gen_range(0..600)).map(|_| rng.gen()).collect(),
        }
        if originals.contains(&p) {
            continue;
        }
        if car_verify(&p, NOW, owner()).is_ok() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 0);
}
