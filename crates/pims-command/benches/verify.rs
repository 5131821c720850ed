//! The verifier beside a bare ring P-256 verify on the same machine: a proof with PIN evidence
//! costs two ECDSA verifies plus parsing; the target is at most 2× one verify... plus little.

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
    let with_pin = proof(Command::UnlockDoors, 7, true);
    c.bench_function("command proof with PIN evidence (car's verifier)", |b| {
        b.iter(|| car_verify(&with_pin, NOW, owner()).unwrap())
    });
    let without = proof(Command::Horn, 7, false);
    c.bench_function("command proof without PIN", |b| {
        b.iter(|| car_verify(&without, NOW, owner()).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
