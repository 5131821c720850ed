//! Small cryptographic helpers of the domain: SMS-code derivation, OTP MACs, device signatures
//! and the server side of OPAQUE.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use pims_proto::pin::opaque_ke::{
    CredentialFinalization, CredentialRequest, RegistrationRequest, RegistrationUpload,
    ServerLogin, ServerLoginParameters, ServerRegistration, ServerSetup,
};
use pims_proto::pin::PinSuite;
use pims_proto::{ApiError, SmsPurpose};
use rand::rngs::OsRng;
use rand::RngCore;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    OsRng.fill_bytes(&mut v);
    v
}

fn mac(key: &[u8; 32], fields: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for f in fields {
        m.update(&(f.len() as u32).to_be_bytes());
        m.update(f);
    }
    m.finalize().into_bytes().into()
}

/// The SMS code bound to account, purpose and number, derived from the code's stored nonce:
/// resending yields the same code, and the database alone yields none.
pub fn sms_code(
    key: &[u8; 32],
    account: &str,
    purpose: SmsPurpose,
    phone: &str,
    nonce: &[u8],
    digits: u32,
) -> String {
    let tag = mac(
        key,
        &[
            account.as_bytes(),
            purpose.as_str().as_bytes(),
            phone.as_bytes(),
            nonce,
        ],
    );
    let n = u64::from_be_bytes(tag[..8].try_into().expect("8 bytes"));
    let modulus = 10u64.pow(digits);
    format!("{:0width$}", n % modulus, width = digits as usize)
}

/// Crockford's base32 alphabet: no I, L, O or U to misread.
const RESTORE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 12 characters, 60 bits: at 10,000 guesses a second for the whole 72 h hold an attacker
/// has about one chance in 440 million, so the code needs no attempt limit, and nobody can
/// use its attempts up to keep its owner out.
const RESTORE_CODE_CHARS: usize = 12;

/// The owner's restore code for a hold, bound to account and pre-hold number, derived from the
/// hold's stored nonce (the database alone yields none), written `XXXX-XXXX-XXXX`.
pub fn restore_code(key: &[u8; 32], account: &str, pre_hold_number: &str, nonce: &[u8]) -> String {
    let tag = mac(
        key,
        &[
            b"restore",
            account.as_bytes(),
            pre_hold_number.as_bytes(),
            nonce,
        ],
    );
    let bits = u64::from_be_bytes(tag[..8].try_into().expect("8 bytes"));
    let chars: Vec<u8> = (0..RESTORE_CODE_CHARS)
        .map(|i| RESTORE_ALPHABET[((bits >> (5 * i)) & 31) as usize])
        .collect();
    chars
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ASCII"))
        .collect::<Vec<_>>()
        .join("-")
}

/// A restore code as people type it: any case, with or without dashes and spaces, `O` for
/// `0` and `I`/`L` for `1` (Crockford's reading).
pub fn normalize_restore_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect()
}

/// Constant-time comparison of a candidate code with the derived one.
pub fn code_matches(candidate: &str, expected: &str) -> bool {
    candidate.len() == expected.len() && bool::from(candidate.as_bytes().ct_eq(expected.as_bytes()))
}

/// The id of a new challenge, enrollment session or device: a UUIDv7, so that ids grow with
/// time and a step's inserts land on the index pages the last ones did (random ids scatter
/// them, each costing a page in the WAL). All 74 bits after the millisecond are random (no
/// counter context, so ids of one millisecond do not share bits), which keeps it unguessable;
/// the time it carries is when the row was made — for a device, its enrollment, which the
/// device list shows and a relying party told the device id now learns to the millisecond.
pub fn new_row_id() -> String {
    uuid::Uuid::new_v7(uuid::Timestamp::now(uuid::NoContext)).to_string()
}

/// A fresh OTP: 128 random bits, base64url (22 characters).
pub fn new_otp() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(16))
}

/// What the database keeps of an OTP.
pub fn otp_mac(key: &[u8; 32], otp: &str) -> Vec<u8> {
    mac(key, &[otp.as_bytes()]).to_vec()
}

/// ECDSA P-256 / SHA-256 with a DER signature, over a SEC1 public key, in low-S form only.
///
/// Each ECDSA signature `(r, s)` has a twin `(r, n − s)` that verifies the same message, and
/// `ring` accepts both: anyone holding one proof could mint a second, different one. Only
/// `s ≤ n/2` is accepted, so every signed statement has exactly one encoding (the SDK signs
/// low-S). `ring` still does the verification: it is several times faster than `p256`.
pub fn signature_ok(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let low_s = match p256::ecdsa::Signature::from_der(signature) {
        Ok(parsed) => parsed.normalize_s().is_none(),
        Err(_) => false,
    };
    low_s
        && UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
            .verify(message, signature)
            .is_ok()
}

fn bad_pin_message() -> ApiError {
    ApiError::InvalidParameter { name: "pin".into() }
}

/// A fresh OPAQUE credential identifier for a new PIN record. The OPRF key is derived from
/// the server seed and this identifier, so a registration response under a new identifier
/// says nothing about the account's current record (whose identifier differs).
pub fn new_credential_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(16))
}

/// The stored identifier of records registered before fresh identifiers: their OPAQUE
/// credential identifier is the bare account subject.
pub const LEGACY_CREDENTIAL_ID: &str = "legacy";

/// The OPAQUE credential identifier of a record: the account and the record's own identifier,
/// so a record copied into another account's row (a database writer) never verifies there.
fn credential_identifier(account: &str, credential_id: &str) -> Vec<u8> {
    if credential_id == LEGACY_CREDENTIAL_ID {
        return account.as_bytes().to_vec();
    }
    let mut out = b"pims/v1/pin".to_vec();
    for field in [account, credential_id] {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// OPAQUE registration response for a new record of `account` under `credential_id`. Only
/// ever called once the caller is authorized to set a PIN (an SMS code checked, or the current
/// PIN proven).
pub fn registration_response(
    setup: &ServerSetup<PinSuite>,
    account: &str,
    credential_id: &str,
    request: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let request =
        RegistrationRequest::<PinSuite>::deserialize(request).map_err(|_| bad_pin_message())?;
    let identifier = credential_identifier(account, credential_id);
    let result = ServerRegistration::<PinSuite>::start(setup, request, &identifier)
        .map_err(|_| bad_pin_message())?;
    Ok(result.message.serialize().to_vec())
}

/// Refuses a malformed registration request before anything is counted or consumed.
pub fn check_registration_request(request: &[u8]) -> Result<(), ApiError> {
    RegistrationRequest::<PinSuite>::deserialize(request)
        .map(|_| ())
        .map_err(|_| bad_pin_message())
}

/// The PIN record kept for the account.
pub fn registration_record(upload: &[u8]) -> Result<Vec<u8>, ApiError> {
    let upload =
        RegistrationUpload::<PinSuite>::deserialize(upload).map_err(|_| bad_pin_message())?;
    Ok(ServerRegistration::finish(upload).serialize().to_vec())
}

/// OPAQUE credential response for the client and server state to keep until the finalization.
pub struct LoginStarted {
    pub message: Vec<u8>,
    pub state: Vec<u8>,
}

/// Starts a login against the account's `pin_record`, registered under `credential_id`.
pub fn login_start(
    setup: &ServerSetup<PinSuite>,
    account: &str,
    credential_id: &str,
    pin_record: &[u8],
    request: &[u8],
) -> crate::error::Result<LoginStarted> {
    let record = ServerRegistration::<PinSuite>::deserialize(pin_record)
        .map_err(|e| anyhow::anyhow!("stored PIN record is unreadable: {e:?}"))?;
    let request =
        CredentialRequest::<PinSuite>::deserialize(request).map_err(|_| bad_pin_message())?;
    let result = ServerLogin::start(
        &mut OsRng,
        setup,
        Some(record),
        request,
        &credential_identifier(account, credential_id),
        ServerLoginParameters::default(),
    )
    .map_err(|_| bad_pin_message())?;
    Ok(LoginStarted {
        message: result.message.serialize().to_vec(),
        state: result.state.serialize().to_vec(),
    })
}

/// Where a sealed login state lives; bound into the seal so a state moved to another row (or
/// another account) does not open.
#[derive(Clone, Copy)]
pub enum LoginStateRow<'a> {
    Enrollment { account: &'a str, id: &'a str },
    Challenge { account: &'a str, id: &'a str },
}

impl LoginStateRow<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let (kind, account, id) = match *self {
            LoginStateRow::Enrollment { account, id } => ("enrollment", account, id),
            LoginStateRow::Challenge { account, id } => ("challenge", account, id),
        };
        let mut out = Vec::new();
        for field in [kind, account, id] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

/// Seals a server login state for the database: it holds the MAC the server expects from the
/// client, so in clear a database reader could finish the login without the PIN.
pub fn seal_login_state(key: &[u8; 32], row: LoginStateRow<'_>, state: &[u8]) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let nonce = random_bytes(24);
    let aad = row.associated_data();
    let sealed = XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: state,
                aad: &aad,
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any length we store");
    [nonce, sealed].concat()
}

/// Opens a sealed login state; a state that does not open (altered, or moved from another row)
/// is an internal error, never a PIN outcome.
pub fn open_login_state(
    key: &[u8; 32],
    row: LoginStateRow<'_>,
    sealed: &[u8],
) -> crate::error::Result<Vec<u8>> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    if sealed.len() <= 24 {
        return Err(anyhow::anyhow!("sealed login state is truncated").into());
    }
    let (nonce, ciphertext) = sealed.split_at(24);
    let aad = row.associated_data();
    Ok(XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| anyhow::anyhow!("sealed login state does not open for its row"))?)
}

/// Whether the client's finalization proves the PIN. Any malformed input is a failed proof.
pub fn login_finish(state: &[u8], finalization: &[u8]) -> bool {
    let Ok(state) = ServerLogin::<PinSuite>::deserialize(state) else {
        return false;
    };
    let Ok(finalization) = CredentialFinalization::<PinSuite>::deserialize(finalization) else {
        return false;
    };
    state
        .finish(finalization, ServerLoginParameters::default())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_codes_are_long_bound_to_their_inputs_and_read_as_typed() {
        let key = [7u8; 32];
        let code = restore_code(&key, "alice", "+33612345678", b"nonce");
        assert_eq!(code.len(), 14);
        assert!(code
            .bytes()
            .all(|b| b == b'-' || RESTORE_ALPHABET.contains(&b)));
        assert_eq!(code, restore_code(&key, "alice", "+33612345678", b"nonce"));
        for other in [
            restore_code(&key, "bob", "+33612345678", b"nonce"),
            restore_code(&key, "alice", "+33612345679", b"nonce"),
            restore_code(&key, "alice", "+33612345678", b"other"),
            restore_code(&[8u8; 32], "alice", "+33612345678", b"nonce"),
        ] {
            assert_ne!(code, other);
        }
        let typed = code.to_lowercase().replace('-', " ");
        assert_eq!(normalize_restore_code(&typed), code.replace('-', ""));
        assert_eq!(normalize_restore_code("o1l-i"), "0111");
    }

    #[test]
    fn sms_codes_are_stable_per_nonce_and_bound_to_their_inputs() {
        let key = [1u8; 32];
        let a = sms_code(
            &key,
            "alice",
            SmsPurpose::Enrollment,
            "+33612345678",
            b"n",
            6,
        );
        assert_eq!(a.len(), 6);
        assert!(a.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(
            a,
            sms_code(
                &key,
                "alice",
                SmsPurpose::Enrollment,
                "+33612345678",
                b"n",
                6
            )
        );
        let others = [
            sms_code(&key, "bob", SmsPurpose::Enrollment, "+33612345678", b"n", 6),
            sms_code(
                &key,
                "alice",
                SmsPurpose::PhoneCertification,
                "+33612345678",
                b"n",
                6,
            ),
            sms_code(
                &key,
                "alice",
                SmsPurpose::Enrollment,
                "+33612345679",
                b"n",
                6,
            ),
            sms_code(
                &key,
                "alice",
                SmsPurpose::Enrollment,
                "+33612345678",
                b"m",
                6,
            ),
        ];
        // Each differs with probability 1 - 1e-6; these fixed inputs were checked once.
        assert!(others.iter().all(|o| *o != a));
        assert!(code_matches(&a, &a));
        assert!(!code_matches(&a[..5], &a));
    }

    #[test]
    fn sealed_login_state_opens_only_for_its_row() {
        let key = [7u8; 32];
        let row = LoginStateRow::Challenge {
            account: "alice",
            id: "c1",
        };
        let sealed = seal_login_state(&key, row, b"state");
        assert!(!sealed.windows(5).any(|w| w == b"state"));
        assert_eq!(open_login_state(&key, row, &sealed).unwrap(), b"state");
        let other_row = LoginStateRow::Challenge {
            account: "alice",
            id: "c2",
        };
        assert!(open_login_state(&key, other_row, &sealed).is_err());
        let other_kind = LoginStateRow::Enrollment {
            account: "alice",
            id: "c1",
        };
        assert!(open_login_state(&key, other_kind, &sealed).is_err());
        assert!(open_login_state(&[8u8; 32], row, &sealed).is_err());
    }

    #[test]
    fn otps_are_long_and_distinct() {
        let (a, b) = (new_otp(), new_otp());
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert_ne!(otp_mac(&[1; 32], &a), otp_mac(&[2; 32], &a));
    }
}
