//! Errors the server reports, as `{"error": {"kind": "...", ...}}` with a matching HTTP status.
//! The SDK maps each kind to one app-facing code; see `pims-strongauth`'s error mapping.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApiError {
    /// No access token, or one the server does not accept.
    Unauthenticated,
    /// The SDK's protocol version is not accepted by this server.
    UnsupportedProtocol { supported: Vec<u32> },
    /// A request field is missing or malformed; `name` is the field.
    InvalidParameter { name: String },
    /// A valid phone number that cannot be the trusted one; `reason` says why.
    PhoneNumberRefused { reason: NumberRefusal },
    /// SMS code wrong, used, expired (`expired`), or its check limit reached.
    SmsCodeInvalid {
        expired: bool,
        attempts_remaining: u32,
    },
    /// The account has no trusted phone number.
    NoPhoneNumber,
    /// The account already has a trusted phone number.
    PhoneNumberAlreadyRegistered,
    /// The operation needs an account PIN and there is none.
    NoPin,
    /// The client asked to register a PIN but the account has one (or the reverse raced).
    PinStateChanged,
    /// Wrong PIN; the account is not blocked yet.
    WrongPin { attempts_remaining: u32 },
    /// Wrong PIN, and this failure reached the limit: the account is now PIN-blocked.
    PinBlocked,
    /// The account was already PIN-blocked before this request.
    AccountBlocked,
    /// An operator named an account the server has never seen (admin API and console).
    AccountUnknown,
    /// The device is unknown to the server, disabled, expired while pending, or was found cloned.
    DeviceUnknown,
    /// An operator asked to enable a device that no operator disabled (the clone rule, its
    /// account, a restore or a removal did): it stays disabled.
    DeviceNotReEnablable,
    /// The account already has the maximum number of devices.
    DeviceLimitReached,
    /// The enrollment or challenge session is unknown, finished or expired.
    SessionExpired,
    /// A device signature did not verify.
    BadSignature,
    /// Too many requests; retry after the given delay.
    RateLimited { retry_after_seconds: u64 },
    /// Setting a PIN by SMS alone is held after the trusted number changed, so its owner hears
    /// of the change (on the old number) before anyone can recover the PIN with the new one.
    RecoveryHeld { retry_after_seconds: u64 },
    /// No hold after a number change runs, or the number trusted before it is trusted again:
    /// there is nothing to restore.
    NothingToRestore,
    /// The restore code does not match the one sent to the number trusted before the hold.
    /// It is long enough to need no attempt limit, so nobody can use it up for its owner.
    RestoreCodeInvalid,
    /// The one-time proof is unknown, expired or already used (relying-party API).
    OtpInvalid,
    /// The command needs the PIN: send it again with the PIN (or an OTP with PIN).
    PinRequired { command: String },
    /// The command service or the car refused a command proof; `fault` names the rule
    /// (`pims_command::Fault::as_str`).
    CommandRefused { fault: String },
    /// No car with this VIN is reachable through this command service.
    VehicleUnknown,
    /// The car did not answer.
    VehicleUnreachable,
    /// The car refused the pairing (wrong code, or it is not waiting for one).
    PairingRefused,
    /// The server's policy requires a device key attested at `required` (or above) to enroll;
    /// the attestation sent proved `got` (`reason`: the rule that failed, if one did).
    AttestationRequired {
        required: String,
        got: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The relying party the OTP is for requires a device attested at `required`; this device
    /// was enrolled at `got`.
    AssuranceInsufficient { required: String, got: String },
    /// Relying-party credentials missing or wrong.
    RelyingPartyUnauthorized,
    /// A server-side failure; details are in the server log under the transaction id.
    Internal,
}

impl ApiError {
    /// HTTP status the server answers with.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Unauthenticated | ApiError::RelyingPartyUnauthorized => 401,
            ApiError::UnsupportedProtocol { .. } => 426,
            ApiError::InvalidParameter { .. } | ApiError::PhoneNumberRefused { .. } => 400,
            ApiError::SmsCodeInvalid { .. } | ApiError::RestoreCodeInvalid => 422,
            ApiError::WrongPin { .. }
            | ApiError::PinBlocked
            | ApiError::BadSignature
            | ApiError::PinRequired { .. }
            | ApiError::AttestationRequired { .. }
            | ApiError::AssuranceInsufficient { .. }
            | ApiError::CommandRefused { .. }
            | ApiError::PairingRefused => 403,
            ApiError::VehicleUnreachable => 502,
            ApiError::AccountBlocked | ApiError::RecoveryHeld { .. } => 423,
            ApiError::DeviceUnknown
            | ApiError::AccountUnknown
            | ApiError::SessionExpired
            | ApiError::OtpInvalid
            | ApiError::VehicleUnknown => 404,
            ApiError::NoPhoneNumber
            | ApiError::PhoneNumberAlreadyRegistered
            | ApiError::NoPin
            | ApiError::PinStateChanged
            | ApiError::DeviceLimitReached
            | ApiError::DeviceNotReEnablable
            | ApiError::NothingToRestore => 409,
            ApiError::RateLimited { .. } => 429,
            ApiError::Internal => 500,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::InvalidParameter { name } => write!(f, "invalid parameter {name}"),
            other => write!(f, "{other:?}"),
        }
    }
}

impl std::error::Error for ApiError {}

/// Why a valid phone number cannot be the trusted one (the app's `details.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum NumberRefusal {
    /// The numbering plan says it cannot receive SMS (fixed line, premium rate, satellite…).
    NotMobile,
    /// It is the number the account already trusts.
    AlreadyTrusted,
}

impl NumberRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            NumberRefusal::NotMobile => "notMobile",
            NumberRefusal::AlreadyTrusted => "alreadyTrusted",
        }
    }
}

/// Envelope of every error response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ApiError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_kind_tag() {
        let body = ErrorBody {
            error: ApiError::WrongPin {
                attempts_remaining: 3,
            },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"kind":"wrong_pin","attempts_remaining":3}}"#
        );
    }
}
