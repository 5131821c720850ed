//! The car's answer: signed by the car's own key over the request it answers, the outcome and
//! the state it reports, with a counter of its own so an old receipt is not taken for new.

use sha2::{Digest, Sha256};

use crate::proof::signature_ok;

const LABEL: &[u8] = b"pims/v1/receipt\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// [`crate::Proof::digest`] of the command answered.
    pub request: [u8; 32],
    /// 200 when executed, else the reference's vehicle code or the verifier's fault code.
    pub code: u16,
    /// The exact bytes of the state the car reports (JSON).
    pub state: Vec<u8>,
    /// The car's receipt counter, growing.
    pub counter: u64,
}

impl Receipt {
    /// The bytes the car's key signs.
    pub fn message(&self) -> Vec<u8> {
        let mut out = LABEL.to_vec();
        out.extend_from_slice(&self.request);
        out.extend_from_slice(&self.code.to_be_bytes());
        out.extend_from_slice(&Sha256::digest(&self.state));
        out.extend_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// Whether `signature` is the car's (`car_key`, SEC1) over this receipt.
    pub fn verify(&self, car_key: &[u8], signature: &[u8]) -> bool {
        signature_ok(car_key, &self.message(), signature)
    }
}
