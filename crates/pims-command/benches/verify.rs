//! The verifier beside a bare ring P-256 verify on the same machine. A proof with PIN
//! evidence costs two ECDSA verifies plus parsing and digests: the target is at most 2× one
//! verify. Keys are derived once, outside the measured loop, as a car holds them.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{criterion_group, criterion_main, Criterion};
use pims_command::*;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

fn bench(c: &mut Criterion) {
    let message = device_message(&envelope(Command::UnlockDoors, 7, true).encode());
    let signature = sign(&device(), &message);
    let public_key = public(&device());
    c.bench_function("ring P-256 verify (one ECDSA verify)", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &public_key)
                .verify(&message, &signature)
                .unwrap()
        })
    });
    let policy = Policy::default();
    let cosign_key = public(&cosigner());
    let verifier = Verifier {
        vin: VIN,
        audience: AUDIENCE,
        policy: &policy,
        pin: PinCheck::Cosignature(&cosign_key),
        clock_skew: 10,
    };
    let entry = entry(Role::Owner, Window::default());
    for (name, proof) in [
        (
            "command proof with PIN evidence (car's verifier)",
            proof(Command::UnlockDoors, 7, true),
        ),
        (
            "command proof without PIN (car's verifier)",
            proof(Command::Horn, 7, false),
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                verifier
                    .verify(&proof, NOW, |_| Some(entry.clone()))
                    .unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
