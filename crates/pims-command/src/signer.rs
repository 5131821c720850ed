//! The signing side of the rule the verifier checks: ECDSA P-256 / SHA-256, DER, low-S. One
//! signer for the service's PIN co-signatures and keychain answers and for the car's receipts.

/// A P-256 signing key on `ring` (constant-time, its point multiplication uses precomputed
/// tables). Signatures come out DER in low-S form, the only form [`crate::signature_ok`]
/// accepts. `ring`'s nonces are random, hedged with the key and the message digest: two
/// signatures of one message differ, both valid.
pub struct Signer {
    pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignerError {
    #[error("not a P-256 private scalar")]
    NotAScalar,
    #[error("no randomness for a signature")]
    NoRandomness,
}

impl Signer {
    /// The key whose private scalar is `scalar` (big-endian); refused when it is zero or not
    /// below the group order.
    pub fn from_scalar(scalar: &[u8]) -> Result<Signer, SignerError> {
        let secret = p256::SecretKey::from_slice(scalar).map_err(|_| SignerError::NotAScalar)?;
        let public = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &secret.public_key(),
            false,
        );
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &secret.to_bytes(),
            public.as_bytes(),
            &rng,
        )
        .map_err(|_| SignerError::NotAScalar)?;
        Ok(Signer { pair, rng })
    }

    /// The SEC1 uncompressed public key (65 bytes).
    pub fn public_key(&self) -> &[u8] {
        ring::signature::KeyPair::public_key(&self.pair).as_ref()
    }

    /// ECDSA P-256 / SHA-256 over `message`, DER, low-S.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        let fixed = self
            .pair
            .sign(&self.rng, message)
            .map_err(|_| SignerError::NoRandomness)?;
        // r ‖ s, each 32 bytes: s replaced by n − s when above n/2 (the same signature).
        let signature = p256::ecdsa::Signature::from_slice(fixed.as_ref())
            .map_err(|_| SignerError::NoRandomness)?;
        let signature = signature.normalize_s().unwrap_or(signature);
        Ok(signature.to_der().as_bytes().to_vec())
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { .. }")
    }
}
