//! The command service's PIN co-signature (and the car's receipt): one P-256 / SHA-256
//! signature over `pin_message(envelope)`, low-S, DER — made with `p256` (pure Rust, RFC 6979)
//! as the server did before, and with [`Signer`] (`ring`: precomputed base-point tables,
//! hedged random nonce) as the server and the car do now. Same key, same message; both are
//! checked to pass the car's signature rule before the loops.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{criterion_group, criterion_main, Criterion};
use pims_command::*;

fn bench(c: &mut Criterion) {
    let message = pin_message(&envelope(Command::UnlockDoors, 7, true).encode());
    let key = cosigner();
    let public_key = public(&key);
    let signer = Signer::from_scalar(&key.to_bytes()).unwrap();
    assert_eq!(signer.public_key(), &public_key[..]);
    assert!(signature_ok(&public_key, &message, &sign(&key, &message)));
    for _ in 0..32 {
        assert!(signature_ok(
            &public_key,
            &message,
            &signer.sign(&message).unwrap()
        ));
    }
    c.bench_function("co-signature with p256 (before)", |b| {
        b.iter(|| sign(&key, &message))
    });
    c.bench_function("co-signature with ring (now)", |b| {
        b.iter(|| signer.sign(&message).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
