//! From server and local failures to the app-facing codes of SDK-API.md §3.

use pims_core::{ErrorCode, PimsError};
use pims_proto::ApiError;

use crate::client::CallError;

/// The generic mapping; call sites override the few cases whose meaning depends on the API
/// (for instance a missing trusted number is 2307 for an SMS, 2313 for an enrollment).
pub fn from_call(error: CallError) -> PimsError {
    match error {
        CallError::Api(api) => from_api(api),
        CallError::Transport(reason) => {
            tracing::warn!(%reason, "server unreachable");
            ErrorCode::NoServiceAvailable.into()
        }
        CallError::Unexpected(status) => {
            tracing::warn!(status, "unexpected answer from server");
            ErrorCode::NoServiceAvailable.into()
        }
    }
}

pub fn from_api(error: ApiError) -> PimsError {
    use ErrorCode::*;
    match error {
        ApiError::Unauthenticated => NeedBasicAuthentication.into(),
        ApiError::UnsupportedProtocol { .. } => VersionError.into(),
        ApiError::InvalidParameter { name } => PimsError::invalid(&name),
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
        ApiError::OtpInvalid | ApiError::RelyingPartyUnauthorized | ApiError::Internal => {
            NoServiceAvailable.into()
        }
    }
}

pub fn vault(error: crate::vault::VaultError) -> PimsError {
    tracing::error!(%error, "local enrollment state unusable");
    ErrorCode::InternalStateNotCorrect.into()
}

pub fn host(error: crate::host::HostError) -> PimsError {
    tracing::error!(%error, "host capability failed");
    ErrorCode::InternalStateNotCorrect.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expired_sms_code_carries_sub_code_and_attempts() {
        let e = from_api(ApiError::SmsCodeInvalid {
            expired: true,
            attempts_remaining: 0,
        });
        assert_eq!(
            e.to_json(),
            json!({"code": 2305, "label": "The sms code is invalid",
                   "subCode": {"code": 2306, "label": "The sms code has expired"},
                   "details": {"attemptsRemaining": 0, "retryable": false}})
        );
    }

    #[test]
    fn a_held_recovery_is_a_forbidden_state_with_its_delay() {
        let e = from_api(ApiError::RecoveryHeld {
            retry_after_seconds: 3600,
        });
        assert_eq!(e.code.code(), 2317);
        assert_eq!(e.details["reason"], "recoveryHeld");
        assert_eq!(e.details["retryAfterSeconds"], 3600);
    }

    #[test]
    fn rate_limit_is_a_server_error_with_retry_delay() {
        let e = from_api(ApiError::RateLimited {
            retry_after_seconds: 30,
        });
        assert_eq!(e.code.code(), 2204);
        assert_eq!(e.details["retryAfterSeconds"], 30);
    }
}
