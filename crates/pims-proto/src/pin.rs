//! The OPAQUE cipher suite used for the account PIN (RFC 9807, via `opaque-ke`).
//!
//! The device stretches the PIN with Argon2id (OWASP parameters, the `argon2` crate default);
//! the server never sees the PIN nor anything it could test a guess against offline.

use opaque_ke::{CipherSuite, Ristretto255, TripleDh};

pub struct PinSuite;

impl CipherSuite for PinSuite {
    type OprfCs = Ristretto255;
    type KeyExchange = TripleDh<Ristretto255, sha2::Sha512>;
    type Ksf = argon2::Argon2<'static>;
}

pub use opaque_ke;
