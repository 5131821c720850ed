//! Request and response bodies of the `/v1` API. Paths are listed on each type.
//! Every request except the relying-party and development endpoints carries
//! `Authorization: Bearer <access token>`; the token's subject is the account.

use serde::{Deserialize, Serialize};

use crate::Bytes;

// ---- account ----------------------------------------------------------------------------

/// `GET /v1/account?deviceId=<id>` (deviceId optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    pub phone_number: Option<String>,
    pub pin: PinState,
    /// PIN attempts left before the account blocks.
    pub pin_attempts_remaining: u32,
    /// State of the device named in the query; `None` when not asked or unknown to the server.
    pub device: Option<DeviceState>,
    /// Unix seconds: while a hold after a number change runs, until when a PIN cannot be set
    /// by SMS alone (after a change without the PIN, the owner may restore the number of
    /// before it meanwhile, see `RestorePhoneNumber`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_held_until: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PinState {
    /// No PIN yet: the next enrollment registers one.
    NotSet,
    Set,
    /// Too many wrong PINs.
    Blocked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Pending,
    Active,
    Disabled,
}

impl DeviceState {
    /// The state as stored.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeviceState::Pending),
            "active" => Some(DeviceState::Active),
            "disabled" => Some(DeviceState::Disabled),
            _ => None,
        }
    }
}

// ---- SMS codes --------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SmsPurpose {
    /// Proves the user holds a phone number before it becomes the trusted one.
    PhoneCertification,
    /// Sent to the trusted number to enroll a device.
    Enrollment,
    /// Sent to the trusted number to set a new PIN without the old one.
    ResetPin,
}

impl SmsPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsPurpose::PhoneCertification => "phone_certification",
            SmsPurpose::Enrollment => "enrollment",
            SmsPurpose::ResetPin => "reset_pin",
        }
    }
}

/// `POST /v1/sms-codes`: send (or resend, same code while valid) an SMS code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SendSmsCode {
    pub purpose: SmsPurpose,
    /// Required for `PhoneCertification`; ignored for `Enrollment` and `ResetPin` (the trusted
    /// number is used).
    pub phone_number: Option<String>,
    /// ISO 3166-1 alpha-2 region in which a `phone_number` written nationally (no leading
    /// `+`) is read; absent: the number must be international.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SmsCodeSent {
    pub expires_in_seconds: u64,
}

/// `POST /v1/sms-codes/check`: check an enrollment code without using it up.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CheckSmsCode {
    pub purpose: SmsPurpose,
    pub sms_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SmsCodeChecked {
    /// Whether the account already has a PIN (`AlreadyEnrolled`) or not (`NotEnrolled`).
    pub enrollment_status: EnrollmentStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EnrollmentStatus {
    NotEnrolled,
    AlreadyEnrolled,
}

/// `POST /v1/phone-number`: make a certified number the account's trusted number.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AddPhoneNumber {
    pub phone_number: String,
    /// ISO 3166-1 alpha-2 region in which a `phone_number` written nationally (no leading
    /// `+`) is read; absent: the number must be international.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub sms_code: String,
}

// ---- enrollment -------------------------------------------------------------------------

/// `POST /v1/enrollments`: first half of an enrollment. Checks the SMS code (without using it
/// up) and starts the PIN exchange: `Register` when the account has no PIN, `Login` otherwise.
/// A login start counts as a PIN attempt until it is proven right.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StartEnrollment {
    pub sms_code: String,
    /// `enrollWithPhoneNumber`: the code was sent to this number for certification, and the
    /// number becomes the trusted one when the enrollment finishes.
    pub phone_number: Option<String>,
    /// ISO 3166-1 alpha-2 region in which a `phone_number` written nationally (no leading
    /// `+`) is read; absent: the number must be international.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub pin: PinStart,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "mode", content = "message", rename_all = "snake_case")]
pub enum PinStart {
    /// OPAQUE `RegistrationRequest`.
    Register(Bytes),
    /// OPAQUE `CredentialRequest`.
    Login(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentStarted {
    pub enrollment_id: String,
    /// Fresh server nonce the device signs in [`FinishEnrollment`].
    pub nonce: Bytes,
    /// OPAQUE `RegistrationResponse` or `CredentialResponse`, matching the request.
    pub pin: PinStart,
}

/// `POST /v1/enrollments/{enrollmentId}/finish`: second half. Idempotent by `idempotencyKey`:
/// a retry returns the first outcome. On success the device exists as Pending.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FinishEnrollment {
    pub idempotency_key: String,
    pub pin: PinFinish,
    pub device: NewDevice,
    /// Over [`crate::transcript::enrollment`], with `pin_proof` = [`PinFinish::proof`].
    pub signature: Bytes,
    /// What the platform attests of the device key, when the host can (hardware keystores);
    /// absent for software keys. Beside [`NewDevice`] rather than in it, so callers that build
    /// a `NewDevice` keep compiling; bound by its own challenge, not by the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<DeviceAttestation>,
}

/// A platform attestation of the device key, sent at enrollment and verified by the server
/// (`pims-attest`), which records the assurance it proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceAttestation {
    /// Android Key Attestation: the device key's certificate chain (DER, leaf first), the key
    /// generated with [`crate::transcript::key_attestation_challenge`].
    Android { chain: Vec<Bytes> },
    /// Apple App Attest: the attestation object of `attestKey`, with
    /// [`crate::transcript::attestation_challenge`] as `clientDataHash`, and the App Attest key
    /// id.
    AppAttest { object: Bytes, key_id: Bytes },
}

/// The assurance of a device that sent no attestation, or whose attestation failed.
pub const UNATTESTED: &str = "unattested";

fn unattested() -> String {
    UNATTESTED.to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "mode", content = "message", rename_all = "snake_case")]
pub enum PinFinish {
    /// OPAQUE `RegistrationUpload`: becomes the account's PIN record.
    Register(Bytes),
    /// OPAQUE `CredentialFinalization`: proves the existing PIN.
    Login(Bytes),
    /// The device found the PIN wrong while opening the OPAQUE response; the server records
    /// the failure and answers `WrongPin` or `PinBlocked`.
    LoginFailed,
}

impl PinFinish {
    /// The bytes a device signature binds to.
    pub fn proof(&self) -> &[u8] {
        match self {
            PinFinish::Register(b) | PinFinish::Login(b) => b.as_slice(),
            PinFinish::LoginFailed => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NewDevice {
    /// SEC1 uncompressed P-256 public key (65 bytes).
    pub public_key: Bytes,
    /// Shown in the account's device list: see [`device_name_ok`].
    pub name: String,
    pub platform: Platform,
}

/// Most characters in a device name.
pub const MAX_DEVICE_NAME: usize = 100;

/// Whether `name` (already trimmed) may name a device: 1 to [`MAX_DEVICE_NAME`] characters,
/// none of them a control or format character. Names are shown to the account holder in device
/// lists and SMS notices, where bidirectional overrides (U+202E), isolates (U+2066…) and
/// zero-width characters (U+200B…) would let an attacker disguise one name as another.
pub fn device_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_DEVICE_NAME
        && !name.chars().any(is_control_or_format)
}

/// Unicode general categories Cc (control), Cf (format), Zl and Zp (line and paragraph
/// separators). Cf is listed in full (Unicode 16), so no Unicode table is linked into the SDK.
pub fn is_control_or_format(c: char) -> bool {
    const FORMAT: &[(char, char)] = &[
        ('\u{ad}', '\u{ad}'),
        ('\u{600}', '\u{605}'),
        ('\u{61c}', '\u{61c}'),
        ('\u{6dd}', '\u{6dd}'),
        ('\u{70f}', '\u{70f}'),
        ('\u{890}', '\u{891}'),
        ('\u{8e2}', '\u{8e2}'),
        ('\u{180e}', '\u{180e}'),
        ('\u{200b}', '\u{200f}'),
        ('\u{2028}', '\u{202e}'),
        ('\u{2060}', '\u{2064}'),
        ('\u{2066}', '\u{206f}'),
        ('\u{feff}', '\u{feff}'),
        ('\u{fff9}', '\u{fffb}'),
        ('\u{110bd}', '\u{110bd}'),
        ('\u{110cd}', '\u{110cd}'),
        ('\u{13430}', '\u{1343f}'),
        ('\u{1bca0}', '\u{1bca3}'),
        ('\u{1d173}', '\u{1d17a}'),
        ('\u{e0001}', '\u{e0001}'),
        ('\u{e0020}', '\u{e007f}'),
    ];
    c.is_control() || FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Ios,
    Android,
    Desktop,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
            Platform::Desktop => "desktop",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ios" => Some(Platform::Ios),
            "android" => Some(Platform::Android),
            "desktop" => Some(Platform::Desktop),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentFinished {
    pub device_id: String,
    /// Nonce the device signs in [`ActivateDevice`].
    pub activation_nonce: Bytes,
}

/// `POST /v1/devices/{deviceId}/activate`: Pending → Active, sent once the device has written
/// its local state. Activating an Active device again succeeds (a retry after a lost answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ActivateDevice {
    pub counter: u64,
    /// Over [`crate::transcript::activation`].
    pub signature: Bytes,
}

// ---- one-time proofs --------------------------------------------------------------------

/// `POST /v1/otp/challenges`: a fresh nonce for `deviceId`, plus the OPAQUE credential response
/// when a PIN proof is wanted (which counts as a PIN attempt until proven right).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OtpChallengeRequest {
    pub device_id: String,
    /// OPAQUE `CredentialRequest` for an OTP "withPIN".
    pub pin: Option<Bytes>,
    /// The relying party (its configured `id`) the OTP is for: only it can verify the OTP.
    /// Optional when the server has one relying party or a configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Required with `pin`: the device's signature starting the PIN login, so only the device
    /// (not a holder of the access token alone) can spend the account's PIN attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<LoginProof>,
}

/// A device's signature over [`crate::transcript::login_start`] with a counter that must
/// increase, as every device signature's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LoginProof {
    pub counter: u64,
    pub signature: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OtpChallenge {
    pub challenge_id: String,
    pub nonce: Bytes,
    /// OPAQUE `CredentialResponse` when the request carried a credential request.
    pub pin: Option<Bytes>,
}

/// `POST /v1/otp`: answer a challenge and receive the one-time proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OtpRequest {
    pub challenge_id: String,
    pub counter: u64,
    /// Required when the challenge carried a PIN exchange: `Login` or `LoginFailed`.
    pub pin: Option<PinFinish>,
    /// Over [`crate::transcript::otp`].
    pub signature: Bytes,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OtpIssued {
    pub otp: String,
    pub expires_in_seconds: u64,
}

impl std::fmt::Debug for OtpIssued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpIssued")
            .field("expires_in_seconds", &self.expires_in_seconds)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/otp/verify` (relying parties, HTTP Basic credentials): verifies an OTP exactly once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerifyOtp {
    pub otp: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OtpVerified {
    /// The account (access token subject).
    pub subject: String,
    pub device_id: String,
    /// Whether the proof included the account PIN.
    pub with_pin: bool,
    /// Unix seconds.
    pub issued_at: i64,
    /// When the account's current PIN was set (Unix seconds), if known.
    pub pin_set_at: Option<i64>,
    /// How the current PIN was set: a PIN recovered by SMS alone (`sms_recovery`) is weaker
    /// evidence of the owner than one set at the first enrollment or changed with the old PIN,
    /// so a remote-command service may ask for more after a fresh recovery.
    pub pin_set_by: Option<PinOrigin>,
    /// The last time (Unix seconds) a PIN of this account was set by SMS recovery, even if it
    /// was changed with `update` since: an update right after a recovery proves only the PIN
    /// the recovery set.
    pub pin_recovered_at: Option<i64>,
    /// What the device's enrollment proved of its key (`strongbox`, `tee`, `secure-enclave`,
    /// `software`, `unattested`); a relying party may require a level (`required_assurance`).
    #[serde(default = "unattested")]
    pub assurance: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PinOrigin {
    /// Registered by the account's first enrollment.
    Enrollment,
    /// Changed by a device that proved the previous PIN.
    Update,
    /// Set with an SMS code and no previous PIN: a PIN reset, or a new enrollment after every
    /// enrollment was removed.
    SmsRecovery,
}

impl PinOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            PinOrigin::Enrollment => "enrollment",
            PinOrigin::Update => "update",
            PinOrigin::SmsRecovery => "sms_recovery",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enrollment" => Some(PinOrigin::Enrollment),
            "update" => Some(PinOrigin::Update),
            "sms_recovery" => Some(PinOrigin::SmsRecovery),
            _ => None,
        }
    }
}

// ---- account management and devices ----------------------------------------------------
//
// `POST /v1/enrollments/remove` (no body, 204): disables every device of the account and
// deletes its PIN record; allowed while PIN-blocked, since it is the way out of that state.
// `POST /v1/devices/{deviceId}/revoke` (no body, 204): disables one device of the account.
// The operations below need an Active device: it proves itself by signing a fresh
// [`DeviceChallenge`] with a counter that must increase, as for an OTP.

/// `POST /v1/devices/{deviceId}/challenges`: a fresh nonce for an account-management operation,
/// with the OPAQUE login it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceChallengeRequest {
    /// OPAQUE `CredentialRequest` proving the current PIN (`pincode update`, and
    /// `modifyPhoneNumber` with `pinCode`); counts as a PIN attempt until proven right.
    pub login: Option<Bytes>,
    /// Required with `login`: the device's signature starting it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<LoginProof>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceChallenge {
    pub challenge_id: String,
    pub nonce: Bytes,
    /// OPAQUE `CredentialResponse` when the request carried `login`.
    pub login: Option<Bytes>,
    /// OPAQUE `RegistrationResponse` of a new PIN ([`PinChangeStarted`] only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<Bytes>,
}

/// A device's signature over a [`DeviceChallenge`], bound to one operation and its payload by
/// [`crate::transcript::device_operation`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceProof {
    pub challenge_id: String,
    pub counter: u64,
    pub signature: Bytes,
}

/// `POST /v1/pin/change`: first half of a PIN reset or update. The device signs it over a
/// device challenge; the server checks the authorization — a `ResetPin` SMS code (checked and
/// used up) or the current PIN (the challenge's counted login) — and only then answers the
/// OPAQUE registration request, under a fresh credential identifier, so no registration
/// response is ever computed for a caller who has not proven the right to set a PIN.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StartPinChange {
    pub proof: DeviceProof,
    pub authorization: PinAuthorization,
    /// OPAQUE `RegistrationRequest` of the new PIN. `None` with a PIN authorization only
    /// proves the PIN (the device found the new PIN equal to the current one: 2315).
    pub registration: Option<Bytes>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "mode", content = "value", rename_all = "snake_case")]
pub enum PinAuthorization {
    /// `pincode reset`: the code of a `ResetPin` SMS.
    SmsCode(String),
    /// `pincode update`: `Login` or `LoginFailed` for the challenge's credential response.
    Pin(PinFinish),
}

impl StartPinChange {
    /// The operation name the device signs.
    pub fn operation(&self) -> &'static str {
        match self.authorization {
            PinAuthorization::SmsCode(_) => crate::transcript::PIN_RESET,
            PinAuthorization::Pin(_) => crate::transcript::PIN_UPDATE,
        }
    }

    /// The bytes the device signature binds to: the PIN proof and the registration request.
    pub fn signed_payload(&self) -> Vec<u8> {
        let proof = match &self.authorization {
            PinAuthorization::SmsCode(_) => &[][..],
            PinAuthorization::Pin(finish) => finish.proof(),
        };
        let mut out = crate::transcript::digest(proof).to_vec();
        if let Some(r) = &self.registration {
            out.extend_from_slice(&crate::transcript::digest(r.as_slice()));
        }
        out
    }
}

/// The answer to [`StartPinChange`]: a new challenge carrying the registration response, for
/// [`FinishPinChange`]; `None` when the request had no registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PinChangeStarted {
    pub next: Option<DeviceChallenge>,
}

/// `POST /v1/pin/change/finish`: the OPAQUE `RegistrationUpload` of the new PIN, signed over the
/// challenge of [`PinChangeStarted`] (operation [`crate::transcript::PIN_CHANGE_FINISH`]).
/// A reset also clears the PIN failure count (unblocks the account).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FinishPinChange {
    pub proof: DeviceProof,
    pub registration: Bytes,
}

/// `POST /v1/phone-number/modify`: replaces the trusted number with one certified by a
/// `PhoneCertification` code; needs an Active device. The old number is told, and PIN recovery
/// by SMS is held for a while after the change.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModifyPhoneNumber {
    pub proof: DeviceProof,
    pub phone_number: String,
    /// ISO 3166-1 alpha-2 region in which a `phone_number` written nationally (no leading
    /// `+`) is read; absent: the number must be international.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub sms_code: String,
    /// The current PIN proven for the challenge's login (`Login` or `LoginFailed`), when the app
    /// gave `pinCode`; the challenge must then carry a login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<PinFinish>,
}

impl ModifyPhoneNumber {
    /// The bytes the device signature binds to: the new number (with its region, which gives
    /// it its meaning) and the PIN proof, if any.
    pub fn signed_payload(&self) -> Vec<u8> {
        let mut out = self.phone_number.clone().into_bytes();
        if let Some(region) = &self.region {
            // A number is digits after an optional `+`, a region letters: no ambiguity.
            out.extend_from_slice(region.as_bytes());
        }
        if let Some(login) = &self.login {
            out.extend_from_slice(&crate::transcript::digest(login.proof()));
        }
        out
    }
}

/// `POST /v1/phone-number/restore`: the owner, from any phone with their login, gives back the
/// number trusted before a running hold began, with the restore code the change notices sent
/// to that number.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RestorePhoneNumber {
    pub restore_code: String,
}

// The code restores an account: keep it out of Debug output.
impl std::fmt::Debug for RestorePhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestorePhoneNumber").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PhoneNumberRestored {
    /// The trusted number again (E.164): the caller proved it receives its SMS. The hold
    /// has ended: the owner may enroll with a new PIN at once.
    pub phone_number: String,
}

/// `GET /v1/devices`: the account's live (Pending or Active) devices, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceList {
    pub devices: Vec<DeviceInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    pub device_id: String,
    pub name: String,
    pub platform: Platform,
    pub state: DeviceState,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last OTP or operation signed by the device.
    pub last_used_at: Option<i64>,
    /// What the enrollment proved of the device key: `strongbox`, `tee`, `secure-enclave`,
    /// `software` or `unattested` (a string, so a level added later reads in older SDKs).
    #[serde(default = "unattested")]
    pub assurance: String,
}

// ---- development endpoints (off unless the server enables its development issuer) --------

/// `POST /v1/dev/tokens`: mint an access token for `subject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DevTokenRequest {
    pub subject: String,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DevToken {
    pub access_token: String,
    pub expires_in_seconds: u64,
}

/// Secrets never reach a log through `Debug`.
macro_rules! redacted_debug {
    ($($ty:ident),*) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($ty), " {{ .. }}"))
            }
        }
    )*};
}
redacted_debug!(
    CheckSmsCode,
    AddPhoneNumber,
    StartEnrollment,
    FinishEnrollment,
    VerifyOtp,
    DevToken,
    StartPinChange,
    PinAuthorization,
    FinishPinChange,
    ModifyPhoneNumber
);

#[cfg(test)]
mod device_name_tests {
    use super::*;

    #[test]
    fn device_names_refuse_control_and_format_characters() {
        assert!(device_name_ok("Léa's phone"));
        assert!(device_name_ok("電話 📱"));
        for bad in [
            "",
            "evil\u{202e}gpj.exe",
            "a\u{200b}b",
            "a\u{2066}b\u{2069}",
            "a\u{feff}",
            "a\nb",
            "a\u{2028}b",
            "tag\u{e0041}",
        ] {
            assert!(!device_name_ok(bad), "{bad:?}");
        }
        assert!(!device_name_ok(&"x".repeat(MAX_DEVICE_NAME + 1)));
    }
}

// ---- remote commands ------------------------------------------------------------------------

/// `GET /v1/commands/keys`: what a car or a relying party pins to check command proofs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CommandServiceKeys {
    /// The audience devices put in their envelopes for this command service.
    pub audience: String,
    /// The PIN co-signing public key (SEC1 uncompressed).
    pub pin_cosign_key: Bytes,
}

/// `POST /v1/commands`: a signed command (`pims-command` proof) for the car it names, over a
/// device challenge. A command that needs the PIN carries the PIN login's finalization
/// (`pin`, over the challenge's login, bound in the envelope), or an unused OTP with PIN this
/// device obtained (`pinOtp`, the reference's flow after 2302).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SendCommand {
    pub device_id: String,
    pub challenge_id: String,
    pub proof: Bytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<PinFinish>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_otp: Option<String>,
}

/// The car's signed answer to a command, relayed unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VehicleReceipt {
    /// SHA-256 of the proof the car answered.
    pub request: Bytes,
    /// 200 when executed, else a vehicle code (2360 doors already unlocked…) or the car's
    /// verifier fault (2355 and friends).
    pub code: u16,
    /// The car's verifier fault name when it refused the proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The vehicle object after the command, as JSON text exactly as signed.
    pub state: String,
    pub counter: u64,
    /// The car's signature (`pims_command::Receipt`).
    pub signature: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CommandSent {
    /// The proof as the car received it (with the PIN co-signature when there is one).
    pub proof: Bytes,
    pub receipt: VehicleReceipt,
}

/// `POST /v1/vehicles/{vin}/pair`: the first owner key, with the MAC under the pairing code
/// the car shows (`pims_command::pairing_mac`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PairVehicle {
    pub device_id: String,
    pub mac: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VehiclePaired {
    /// The car's own public key (SEC1), which signs its receipts.
    pub vehicle_key: Bytes,
    /// `pims_command::pairing_answer_mac` under the pairing code: the phone takes the key only
    /// when it checks, so nobody relaying the pairing can substitute another.
    pub mac: Bytes,
}

/// What a car asks the command service about the keys it holds, with its nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeychainSync {
    pub nonce: Bytes,
    pub keys: Vec<KeychainKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeychainKey {
    pub account: String,
    pub device_id: String,
    pub key_id: Bytes,
}

/// The keys to remove, signed by the PIN co-signing key over
/// `pims_command::keychain_sync_message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeychainRemovals {
    pub remove: Vec<Bytes>,
    pub signature: Bytes,
}

/// `POST /v1/commands/verify` (relying parties): checks a relayed command proof with the
/// verifier the car runs, for the account and device the relying party's app names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerifyCommand {
    pub proof: Bytes,
    pub subject: String,
    pub device_id: String,
}

/// Which command, which car, which device, with or without the PIN, and the PIN facts an OTP
/// verification gives. A check, not a use: the car and the command service take a proof once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CommandVerified {
    pub subject: String,
    pub device_id: String,
    pub vin: String,
    /// `doors.unlock`, `horn`… (`pims_command::CommandKind`).
    pub command: String,
    /// The PIN co-signature is present and valid.
    pub with_pin: bool,
    /// The policy requires the PIN for this command.
    pub pin_required: bool,
    pub counter: u64,
    pub expires_at: u64,
    /// What the device's key attestation proved at enrollment (`strongbox`, `tee`,
    /// `secure-enclave`, `software`, `unattested`).
    pub assurance: String,
    pub pin_set_at: Option<i64>,
    pub pin_set_by: Option<PinOrigin>,
    pub pin_recovered_at: Option<i64>,
}

/// The car's own API (`pims vehicle`), which the command service relays to.
pub mod car {
    use super::*;

    /// `POST /v1/pair` on the car: a key with the pairing-code MAC, and what the cloud knows
    /// it by (so a later keychain sync can name it for removal).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Pair {
        pub public_key: Bytes,
        pub mac: Bytes,
        pub account: String,
        pub device_id: String,
    }

    /// `POST /v1/commands` on the car.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Command {
        pub proof: Bytes,
    }

    pub const PAIR: &str = "/v1/pair";
    pub const COMMANDS: &str = "/v1/commands";
    pub const STATE: &str = "/v1/state";
}
