//! A proof: the envelope, the device's signature and, for a command with the PIN, the
//! server's co-signature. What the device and the server sign is defined here, once.

use sha2::{Digest, Sha256};

use crate::envelope::{Envelope, MAX_ENVELOPE};
use crate::tlv::{Reader, Writer};
use crate::Fault;

/// The largest proof accepted.
pub const MAX_PROOF: usize = 1024;
/// What the device's key signs before the envelope (ECDSA P-256 / SHA-256).
pub const DEVICE_LABEL: &[u8] = b"pims/v1/command\n";
/// What the server's PIN co-signing key signs before the envelope's digest.
pub const PIN_LABEL: &[u8] = b"pims/v1/command-pin\n";

mod tag {
    pub const ENVELOPE: u8 = 0x01;
    pub const DEVICE_SIGNATURE: u8 = 0x02;
    pub const PIN_COSIGNATURE: u8 = 0x03;
}

/// DER ECDSA signatures are 8 to 72 bytes.
const SIGNATURE: std::ops::RangeInclusive<usize> = 8..=72;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The envelope's exact bytes, as signed.
    pub envelope_bytes: Vec<u8>,
    pub envelope: Envelope,
    /// DER ECDSA over [`device_message`].
    pub device_signature: Vec<u8>,
    /// DER ECDSA over [`pin_message`], by the server's PIN co-signing key.
    pub pin_cosignature: Option<Vec<u8>>,
}

/// The bytes a device signs for `envelope_bytes`.
pub fn device_message(envelope_bytes: &[u8]) -> Vec<u8> {
    [DEVICE_LABEL, envelope_bytes].concat()
}

/// The bytes the server's PIN co-signing key signs: the envelope's digest, after a counted
/// PIN check bound to it.
pub fn pin_message(envelope_bytes: &[u8]) -> Vec<u8> {
    [PIN_LABEL, &Sha256::digest(envelope_bytes)[..]].concat()
}

/// A proof's bytes from its parts.
pub fn encode_proof(
    envelope_bytes: &[u8],
    device_signature: &[u8],
    pin_cosignature: Option<&[u8]>,
) -> Vec<u8> {
    let mut w = Writer::default();
    w.field(tag::ENVELOPE, envelope_bytes)
        .field(tag::DEVICE_SIGNATURE, device_signature);
    if let Some(cosignature) = pin_cosignature {
        w.field(tag::PIN_COSIGNATURE, cosignature);
    }
    w.finish()
}

impl Proof {
    pub fn encode(&self) -> Vec<u8> {
        encode_proof(
            &self.envelope_bytes,
            &self.device_signature,
            self.pin_cosignature.as_deref(),
        )
    }

    /// Strict: unknown, repeated or out-of-order fields, trailing bytes and oversize refused.
    pub fn parse(bytes: &[u8]) -> Result<Proof, Fault> {
        if bytes.len() > MAX_PROOF {
            return Err(Fault::Malformed("proof too large"));
        }
        let mut r = Reader::new(bytes);
        let envelope_bytes = r.required(tag::ENVELOPE, 1..=MAX_ENVELOPE)?.to_vec();
        let device_signature = r.required(tag::DEVICE_SIGNATURE, SIGNATURE)?.to_vec();
        let pin_cosignature = r
            .optional(tag::PIN_COSIGNATURE, SIGNATURE)?
            .map(<[u8]>::to_vec);
        r.end()?;
        let envelope = Envelope::parse(&envelope_bytes)?;
        if pin_cosignature.is_some() && envelope.pin_binding.is_none() {
            return Err(Fault::Malformed(
                "PIN evidence for an envelope without the PIN",
            ));
        }
        Ok(Proof {
            envelope_bytes,
            envelope,
            device_signature,
            pin_cosignature,
        })
    }

    /// SHA-256 of the proof's bytes: what a receipt answers.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }
}

/// ECDSA P-256 / SHA-256, DER, low-S only (a high-S twin of a valid signature is a second
/// valid signature: refused so a signature is one value), by a SEC1 public key. The one
/// signature rule of the verifier, the server and the car.
pub fn signature_ok(public_key: &[u8], message: &[u8], der_signature: &[u8]) -> bool {
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
    let low_s = match p256::ecdsa::Signature::from_der(der_signature) {
        Ok(parsed) => parsed.normalize_s().is_none(),
        Err(_) => false,
    };
    low_s
        && UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
            .verify(message, der_signature)
            .is_ok()
}
