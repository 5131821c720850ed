//! The component's errors in two levels: [`Error`] says what went wrong, for the component's
//! own decisions and its logs; [`Error::into_app`] is the one place that turns it into an
//! app-facing code of SDK-API.md §3, deciding there where the code depends on the operation.

use pims_core::{ErrorCode, PimsError};
use pims_proto::ApiError;

use super::request::Operation;
use crate::client::CallError;
use crate::host::HostError;
use crate::pin::MalformedResponse;
use crate::vault::VaultError;

/// `details.hint` of 2301 when the host gave no token (none, a blank one, or its provider
/// failed): the label alone ("Need Basic Authentication") does not say which side is missing.
const NO_ACCESS_TOKEN_HINT: &str = "no access token: the app's AccessTokenProvider gave none (it returned null or blank, or failed)";
/// `details.hint` of 2301 when the server answered 401 to the token sent (expired, wrong
/// issuer or audience, bad signature, or a server without that token issuer).
const TOKEN_REFUSED_HINT: &str = "the server refused the access token";

/// Why a call of the component failed. Its `Display` is for logs and holds no secret.
#[derive(Debug)]
pub(super) enum Error {
    /// A parameter found missing only once the call runs (2101), e.g. `smsCode` on a device
    /// whose host has no SMS reader.
    MissingParameter(&'static str),
    /// A value found invalid once the call runs (2102), e.g. what the host's SMS reader gave.
    InvalidParameter(&'static str),
    /// The host gives no access token.
    NoAccessToken,
    /// A refusal of the protocol: the server's answer, or the one the account status it gave
    /// shows it would make (no trusted number, one already there, the PIN blocked).
    Api(ApiError),
    /// No answer: the server may or may not have acted.
    Transport(String),
    /// An answer outside the protocol (proxy error page, 5xx without a body…): its HTTP status.
    Unexpected(u16),
    /// An answer of the protocol that does not fit the step: a part missing, an OPAQUE message
    /// that does not parse.
    Malformed,
    Vault(VaultError),
    Host(HostError),
    /// The operation needs this device enrolled and active; it is not enrolled.
    NotEnrolled,
    /// This device's enrollment is committed on the server but its activation is not
    /// confirmed yet; a later call finishes it.
    ActivationPending,
    /// An enrollment finish was sent and its outcome is still unknown; a later call resends it.
    FinishPending,
    /// `enrollWithPhoneNumber` on a device already active.
    AlreadyEnrolled,
    /// The vault holds no enrollment where the step needs one.
    NoLocalEnrollment,
    /// The new PIN equals the current one.
    SamePin,
    /// A call that needs something set first (2010), e.g. the car (`vin`).
    NotSet(&'static str),
    /// The car answered a command with a code other than 200 (a vehicle code, or its
    /// verifier's refusal with `fault`).
    Vehicle {
        code: u16,
        fault: Option<String>,
    },
    /// The car's receipt is not signed by the car this device paired with.
    ReceiptInvalid,
}

impl Error {
    /// The code the app receives when `operation` fails with this error.
    pub(super) fn into_app(self, operation: Operation) -> PimsError {
        use ErrorCode::*;
        match self {
            Error::MissingParameter(name) => PimsError::missing(name),
            Error::InvalidParameter(name) => PimsError::invalid(name),
            Error::NoAccessToken => {
                PimsError::new(NeedBasicAuthentication).with_detail("hint", NO_ACCESS_TOKEN_HINT)
            }
            // The OTP kept to send a command again was spent or expired: the PIN again.
            Error::Api(ApiError::OtpInvalid) if operation == Operation::VehicleCommand => {
                NeedStrongAuthentication.into()
            }
            // Enrolling without a trusted number: "activate a prior authenticator first".
            Error::Api(ApiError::NoPhoneNumber) if operation == Operation::Enroll => {
                PriorAuthenticatorRequired.into()
            }
            Error::Api(api) => from_api(api),
            Error::Transport(reason) => {
                tracing::warn!(?operation, %reason, "server unreachable");
                NoServiceAvailable.into()
            }
            Error::Unexpected(status) => {
                tracing::warn!(?operation, status, "unexpected answer from server");
                NoServiceAvailable.into()
            }
            Error::Malformed => {
                tracing::warn!(?operation, "server answer does not fit the protocol");
                NoServiceAvailable.into()
            }
            Error::Vault(error) => {
                tracing::error!(?operation, %error, "local enrollment state unusable");
                InternalStateNotCorrect.into()
            }
            Error::Host(error) => {
                tracing::error!(?operation, %error, "host capability failed");
                InternalStateNotCorrect.into()
            }
            Error::NotEnrolled => PriorAuthenticatorRequired.into(),
            Error::ActivationPending => PostSynchronizationFailed.into(),
            Error::FinishPending => NoServiceAvailable.into(),
            Error::AlreadyEnrolled => ForbiddenOperation.into(),
            Error::NoLocalEnrollment => InternalStateNotCorrect.into(),
            Error::SamePin => NewPinEqualsPrevious.into(),
            Error::NotSet(name) => PimsError::not_set(name),
            e @ Error::Vehicle { .. } => e.vehicle_error(),
            Error::ReceiptInvalid => InvalidSignature.into(),
        }
    }

    /// The app's error for a car's answer other than 200 (also its signal event).
    pub(super) fn vehicle_error(&self) -> PimsError {
        use ErrorCode::*;
        let Error::Vehicle { code, fault } = self else {
            return ServerError.into();
        };
        let e = PimsError::new(match code {
            2302 => NeedStrongAuthentication,
            2323 => NotVehicleOwner,
            2342 => SmartphoneNotPaired,
            2355 => InvalidSignature,
            2356 => InvalidTimestamp,
            2360 => DoorsUnlocked,
            2361 => DoorsLocked,
            2366 => VinNotValid,
            _ => ServerError,
        });
        match fault {
            Some(fault) => e.with_detail("fault", fault.as_str()),
            None => e,
        }
    }
}

/// The server's refusals, where their code does not depend on the operation.
fn from_api(error: ApiError) -> PimsError {
    use ErrorCode::*;
    match error {
        ApiError::Unauthenticated => {
            PimsError::new(NeedBasicAuthentication).with_detail("hint", TOKEN_REFUSED_HINT)
        }
        ApiError::UnsupportedProtocol { .. } => VersionError.into(),
        ApiError::InvalidParameter { name } => PimsError::invalid(&name),
        ApiError::PhoneNumberRefused { reason } => {
            PimsError::invalid("phoneNumber").with_detail("reason", reason.as_str())
        }
        ApiError::RestoreCodeInvalid => PimsError::new(SmsCodeInvalid),
        ApiError::NothingToRestore => {
            PimsError::new(ForbiddenOperation).with_detail("reason", "nothingToRestore")
        }
        ApiError::SmsCodeInvalid {
            expired,
            attempts_remaining,
        } => {
            let e =
                PimsError::new(SmsCodeInvalid).with_detail("attemptsRemaining", attempts_remaining);
            if expired {
                e.with_sub_code(SmsCodeExpired)
            } else {
                e
            }
        }
        ApiError::NoPhoneNumber => NoPhoneNumber.into(),
        ApiError::PhoneNumberAlreadyRegistered => PhoneNumberAlreadyRegistered.into(),
        ApiError::NoPin => PriorAuthenticatorRequired.into(),
        ApiError::WrongPin { attempts_remaining } => {
            PimsError::new(AccessRefused).with_detail("attemptsRemaining", attempts_remaining)
        }
        ApiError::BadSignature => AccessRefused.into(),
        ApiError::PinBlocked => AccountBlocked.into(),
        ApiError::AccountBlocked | ApiError::DeviceLimitReached | ApiError::PinStateChanged => {
            ForbiddenOperation.into()
        }
        ApiError::DeviceUnknown => DeviceDisabledOrUnknown.into(),
        ApiError::SessionExpired => InternalStateNotCorrect.into(),
        ApiError::RateLimited {
            retry_after_seconds,
        } => PimsError::new(ServerError)
            .with_detail("reason", "rateLimited")
            .with_detail("retryAfterSeconds", retry_after_seconds),
        ApiError::RecoveryHeld {
            retry_after_seconds,
        } => PimsError::new(ForbiddenOperation)
            .with_detail("reason", "recoveryHeld")
            .with_detail("retryAfterSeconds", retry_after_seconds),
        ApiError::PinRequired { .. } => NeedStrongAuthentication.into(),
        // The server's policy wants a hardware-attested device key: a forbidden operation
        // for this device, whatever the app retries.
        ApiError::AttestationRequired {
            required,
            got,
            reason,
        } => {
            let e = PimsError::new(ForbiddenOperation)
                .with_detail("reason", "attestationRequired")
                .with_detail("required", required)
                .with_detail("got", got);
            match reason {
                Some(rule) => e.with_detail("rule", rule),
                None => e,
            }
        }
        ApiError::AssuranceInsufficient { required, got } => PimsError::new(ForbiddenOperation)
            .with_detail("reason", "assuranceInsufficient")
            .with_detail("required", required)
            .with_detail("got", got),
        ApiError::CommandRefused { fault } => PimsError::new(match fault.as_str() {
            "wrongVehicle" => VinNotValid,
            "expired" | "ttlTooLong" | "replayedCounter" => InvalidTimestamp,
            _ => InvalidSignature,
        })
        .with_detail("fault", fault),
        ApiError::VehicleUnknown => VinNotValid.into(),
        ApiError::VehicleUnreachable => BrokerConnectionFailed.into(),
        ApiError::PairingRefused => PimsError::invalid("pairingCode"),
        // Answers of the operator and relying-party doors: never the SDK's.
        ApiError::OtpInvalid
        | ApiError::RelyingPartyUnauthorized
        | ApiError::AccountUnknown
        | ApiError::DeviceNotReEnablable
        | ApiError::Internal => NoServiceAvailable.into(),
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::MissingParameter(name) => write!(f, "missing parameter {name}"),
            Error::InvalidParameter(name) => write!(f, "invalid parameter {name}"),
            Error::NoAccessToken => f.write_str("no access token"),
            Error::Api(error) => write!(f, "refused: {error}"),
            Error::Transport(reason) => write!(f, "no answer: {reason}"),
            Error::Unexpected(status) => write!(f, "answer outside the protocol (HTTP {status})"),
            Error::Malformed => f.write_str("answer does not fit the protocol"),
            Error::Vault(error) => write!(f, "{error}"),
            Error::Host(error) => write!(f, "host capability: {error}"),
            Error::NotEnrolled => f.write_str("this device is not enrolled"),
            Error::ActivationPending => f.write_str("activation not confirmed yet"),
            Error::FinishPending => f.write_str("enrollment finish sent, outcome unknown"),
            Error::AlreadyEnrolled => f.write_str("this device is already enrolled"),
            Error::NoLocalEnrollment => f.write_str("no local enrollment"),
            Error::SamePin => f.write_str("the new PIN equals the current one"),
            Error::NotSet(name) => write!(f, "{name} not set"),
            Error::Vehicle { code, fault } => write!(f, "the car answered {code} ({fault:?})"),
            Error::ReceiptInvalid => f.write_str("the car's receipt does not verify"),
        }
    }
}

impl From<CallError> for Error {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Api(api) => Error::Api(api),
            CallError::Transport(reason) => Error::Transport(reason),
            CallError::Unexpected(status) => Error::Unexpected(status),
        }
    }
}

impl From<VaultError> for Error {
    fn from(error: VaultError) -> Self {
        Error::Vault(error)
    }
}

impl From<HostError> for Error {
    fn from(error: HostError) -> Self {
        Error::Host(error)
    }
}

impl From<MalformedResponse> for Error {
    fn from(_: MalformedResponse) -> Self {
        Error::Malformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expired_sms_code_carries_sub_code_and_attempts() {
        let e = Error::Api(ApiError::SmsCodeInvalid {
            expired: true,
            attempts_remaining: 0,
        })
        .into_app(Operation::Enroll);
        assert_eq!(
            e.to_json(),
            json!({"code": 2305, "label": "The sms code is invalid",
                   "subCode": {"code": 2306, "label": "The sms code has expired"},
                   "details": {"attemptsRemaining": 0, "retryable": false}})
        );
    }

    #[test]
    fn a_missing_trusted_number_is_2307_except_when_enrolling() {
        let code = |operation| {
            Error::Api(ApiError::NoPhoneNumber)
                .into_app(operation)
                .code
                .code()
        };
        assert_eq!(code(Operation::Enroll), 2313);
        assert_eq!(code(Operation::TrustedPhoneNumber), 2307);
        assert_eq!(code(Operation::SendSmsCode), 2307);
        assert_eq!(code(Operation::ResetPin), 2307);
    }

    #[test]
    fn what_the_component_finds_itself_keeps_its_code() {
        let app = |error: Error| {
            let e = error.into_app(Operation::Otp);
            (e.code.code(), e.label)
        };
        assert_eq!(
            app(Error::MissingParameter("smsCode")),
            (2101, "Missing smsCode parameter".into())
        );
        assert_eq!(
            app(Error::InvalidParameter("smsCode")),
            (2102, "Invalid smsCode parameter".into())
        );
        assert_eq!(app(Error::NoAccessToken).0, 2301);
        assert_eq!(app(Error::Transport("connect".into())).0, 2314);
        assert_eq!(app(Error::Unexpected(502)).0, 2314);
        assert_eq!(app(Error::Malformed).0, 2314);
        assert_eq!(app(Error::Vault(VaultError::Unreadable)).0, 2311);
        assert_eq!(app(Error::Host(HostError("keystore".into()))).0, 2311);
        assert_eq!(app(Error::NotEnrolled).0, 2313);
        assert_eq!(app(Error::ActivationPending).0, 2316);
        assert_eq!(app(Error::FinishPending).0, 2314);
        assert_eq!(app(Error::AlreadyEnrolled).0, 2317);
        assert_eq!(app(Error::NoLocalEnrollment).0, 2311);
        assert_eq!(app(Error::SamePin).0, 2315);
    }

    #[test]
    fn need_basic_authentication_says_which_side_is_missing() {
        let no_token = Error::NoAccessToken.into_app(Operation::Otp).to_json();
        assert_eq!(
            no_token,
            json!({"code": 2301, "label": "Need Basic Authentication",
                   "details": {"hint": "no access token: the app's AccessTokenProvider gave none (it returned null or blank, or failed)",
                               "retryable": false}})
        );
        let refused = Error::Api(ApiError::Unauthenticated)
            .into_app(Operation::Otp)
            .to_json();
        assert_eq!(
            refused,
            json!({"code": 2301, "label": "Need Basic Authentication",
                   "details": {"hint": "the server refused the access token", "retryable": false}})
        );
    }

    #[test]
    fn a_refused_number_and_a_restore_say_why() {
        let e = Error::Api(ApiError::PhoneNumberRefused {
            reason: pims_proto::NumberRefusal::NotMobile,
        })
        .into_app(Operation::ModifyPhoneNumber);
        assert_eq!(
            (e.code, e.label.as_str(), &e.details["reason"]),
            (
                ErrorCode::InvalidParameter,
                "Invalid phoneNumber parameter",
                &serde_json::json!("notMobile")
            )
        );
        let e = Error::Api(ApiError::NothingToRestore).into_app(Operation::RestorePhoneNumber);
        assert_eq!(
            (e.code, &e.details["reason"]),
            (
                ErrorCode::ForbiddenOperation,
                &serde_json::json!("nothingToRestore")
            )
        );
        let e = Error::Api(ApiError::RestoreCodeInvalid).into_app(Operation::RestorePhoneNumber);
        assert_eq!(
            (e.code, e.details.get("attemptsRemaining")),
            (ErrorCode::SmsCodeInvalid, None)
        );
    }

    #[test]
    fn a_held_recovery_is_a_forbidden_state_with_its_delay() {
        let e = Error::Api(ApiError::RecoveryHeld {
            retry_after_seconds: 3600,
        })
        .into_app(Operation::ResetPin);
        assert_eq!(e.code.code(), 2317);
        assert_eq!(e.details["reason"], "recoveryHeld");
        assert_eq!(e.details["retryAfterSeconds"], 3600);
    }

    #[test]
    fn rate_limit_is_a_server_error_with_retry_delay() {
        let e = Error::Api(ApiError::RateLimited {
            retry_after_seconds: 30,
        })
        .into_app(Operation::SendSmsCode);
        assert_eq!(e.code.code(), 2204);
        assert_eq!(e.details["retryAfterSeconds"], 30);
    }
}
