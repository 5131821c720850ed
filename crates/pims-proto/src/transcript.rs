//! The exact bytes a device signs (ECDSA P-256 with SHA-256, DER signature).
//!
//! Every signature covers a fresh server nonce and the device's counter, so a replayed or
//! cloned key is detected by a counter that does not increase. Fields are length-prefixed so
//! no two different field lists produce the same bytes.

use sha2::{Digest, Sha256};

fn transcript(label: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + fields.iter().map(|f| f.len() + 4).sum::<usize>());
    out.extend_from_slice(label.as_bytes());
    for field in fields {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// SHA-256 of a message, to bind a signature to a PIN proof without repeating it.
pub fn digest(message: &[u8]) -> [u8; 32] {
    Sha256::digest(message).into()
}

/// Signed by a new device at the end of enrollment: proves possession of the key it registers,
/// bound to the enrollment session and to the PIN proof (registration upload or finalization).
pub fn enrollment(
    enrollment_id: &str,
    nonce: &[u8],
    public_key: &[u8],
    pin_proof: &[u8],
) -> Vec<u8> {
    transcript(
        "pims/v1/enroll",
        &[
            enrollment_id.as_bytes(),
            nonce,
            public_key,
            &digest(pin_proof),
        ],
    )
}

/// Signed to start a PIN login (the OPAQUE credential request) for an OTP or an operation: no
/// server nonce exists yet, so the counter alone makes it fresh.
pub fn login_start(device_id: &str, counter: u64, credential_request: &[u8]) -> Vec<u8> {
    transcript(
        "pims/v1/login-start",
        &[
            device_id.as_bytes(),
            &counter.to_be_bytes(),
            &digest(credential_request),
        ],
    )
}

/// Signed to move a Pending device to Active once its local state is safely written.
pub fn activation(device_id: &str, nonce: &[u8], counter: u64) -> Vec<u8> {
    transcript(
        "pims/v1/activate",
        &[device_id.as_bytes(), nonce, &counter.to_be_bytes()],
    )
}

/// Signed to obtain an OTP. With a PIN, `pin_proof` is the OPAQUE credential finalization of
/// the same challenge, so one signature binds both factors; without, it is empty.
pub fn otp(
    challenge_id: &str,
    nonce: &[u8],
    device_id: &str,
    counter: u64,
    pin_proof: &[u8],
) -> Vec<u8> {
    transcript(
        "pims/v1/otp",
        &[
            challenge_id.as_bytes(),
            nonce,
            device_id.as_bytes(),
            &counter.to_be_bytes(),
            &digest(pin_proof),
        ],
    )
}

/// The challenge an Android device key is generated with (`KeyGenParameterSpec
/// .setAttestationChallenge`) at enrollment: the enrollment session and its nonce. The session
/// is created only after the SMS code was checked (`POST /v1/enrollments`), so it also stands
/// for that code's use. The key cannot be in its own challenge (the challenge is given when it
/// is generated): the attestation certificate certifies the key itself, and the server checks
/// it is the key enrolled.
pub fn key_attestation_challenge(enrollment_id: &str, nonce: &[u8]) -> [u8; 32] {
    digest(&transcript(
        "pims/v1/key-attestation",
        &[enrollment_id.as_bytes(), nonce],
    ))
}

/// The challenge of an app attestation at enrollment (iOS App Attest `clientDataHash`): the
/// enrollment session and its nonce (created after the SMS code check, so bound to its use)
/// and the device public key. App Attest certifies its own key, not the device key, so the
/// device key is bound here: an attestation relayed for another key or session is refused.
pub fn attestation_challenge(enrollment_id: &str, nonce: &[u8], public_key: &[u8]) -> [u8; 32] {
    digest(&transcript(
        "pims/v1/app-attestation",
        &[enrollment_id.as_bytes(), nonce, public_key],
    ))
}

/// Operation names of [`device_operation`].
pub const PIN_RESET: &str = "pin_reset";
pub const PIN_UPDATE: &str = "pin_update";
pub const PHONE_NUMBER_MODIFY: &str = "phone_number_modify";
/// The second half of a PIN reset or update: the registration upload of the new PIN.
pub const PIN_CHANGE_FINISH: &str = "pin_change_finish";

/// Signed to authorise an account-management operation (`operation` names it, e.g.
/// `pin_reset`) over a device challenge; `payload` is what the operation changes, so a
/// signature for one operation or value cannot serve for another.
pub fn device_operation(
    operation: &str,
    challenge_id: &str,
    nonce: &[u8],
    device_id: &str,
    counter: u64,
    payload: &[u8],
) -> Vec<u8> {
    transcript(
        "pims/v1/device-operation",
        &[
            operation.as_bytes(),
            challenge_id.as_bytes(),
            nonce,
            device_id.as_bytes(),
            &counter.to_be_bytes(),
            &digest(payload),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixes_keep_field_boundaries() {
        assert_ne!(activation("ab", b"c", 1), activation("a", b"bc", 1));
    }

    #[test]
    fn attestation_challenges_bind_session_nonce_and_key() {
        let base = attestation_challenge("e", b"n", b"k");
        assert_ne!(base, attestation_challenge("e", b"n", b"K"));
        assert_ne!(base, attestation_challenge("e", b"N", b"k"));
        assert_ne!(base, attestation_challenge("E", b"n", b"k"));
        assert_ne!(
            key_attestation_challenge("e", b"n"),
            key_attestation_challenge("e", b"N")
        );
        assert_ne!(
            key_attestation_challenge("e", b"n"),
            attestation_challenge("e", b"n", b"")
        );
    }

    #[test]
    fn label_separates_purposes() {
        let a = activation("d", b"n", 1);
        let o = otp("d", b"n", "", 1, b"");
        assert_ne!(a, o);
    }
}
