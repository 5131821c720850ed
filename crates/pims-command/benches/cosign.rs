//! The command service's PIN co-signature: one P-256 / SHA-256 signature over
//! `pin_message(envelope)`, low-S, DER — made with `p256` (pure Rust, RFC 6979) as the server
//! did before, and with `ring` (precomputed base-point tables, hedged random nonce) as
//! `pims_server::keys::CosignKey` does now. Same key, same message; both are checked to pass
//! the car's signature rule before the loops.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{criterion_group, criterion_main, Criterion};
use pims_command::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// What the server does with ring's r ‖ s: S to low-S, then DER.
fn ring_cosign(pair: &EcdsaKeyPair, rng: &SystemRandom, message: &[u8]) -> Vec<u8> {
    let fixed = pair.sign(rng, message).unwrap();
    let s = p256::ecdsa::Signature::from_slice(fixed.as_ref()).unwrap();
    s.normalize_s().unwrap_or(s).to_der().as_bytes().to_vec()
}

fn bench(c: &mut Criterion) {
    let message = pin_message(&envelope(Command::UnlockDoors, 7, true).encode());
    let key = cosigner();
    let public_key = public(&key);
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::from_private_key_and_public_key(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.to_bytes(),
        &public_key,
        &rng,
    )
    .unwrap();
    assert!(signature_ok(&public_key, &message, &sign(&key, &message)));
    for _ in 0..32 {
        assert!(signature_ok(
            &public_key,
            &message,
            &ring_cosign(&pair, &rng, &message)
        ));
    }
    c.bench_function("co-signature with p256 (before)", |b| {
        b.iter(|| sign(&key, &message))
    });
    c.bench_function("co-signature with ring (now)", |b| {
        b.iter(|| ring_cosign(&pair, &rng, &message))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
