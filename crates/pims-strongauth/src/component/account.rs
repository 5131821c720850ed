//! Account status, the trusted phone number and SMS codes.

use pims_core::Secret;
use pims_proto::endpoint::{self as ep, Empty};
use pims_proto::{
    AddPhoneNumber, ApiError, CheckSmsCode, DeviceState, EnrollmentStatus, PinState, SendSmsCode,
    SmsPurpose,
};
use serde_json::{json, Value};

use super::activation;
use super::device;
use super::error::Error;
use super::local::Local;
use super::request::PhoneNumber;
use super::shared::{Core, Ctx};
use crate::client::CallError;
use crate::vault::VaultState;

pub(super) async fn is_device_activated(core: &Core, ctx: &Ctx) -> Result<Value, Error> {
    let activated = activated(core, ctx).await?;
    Ok(json!({ "isDeviceActivated": activated }))
}

/// Whether this device is active, after [`refresh`]. An unreadable vault stays 2311 (only
/// `enroll` and `remove` replace it), so the app learns why it must enroll again. Shared with
/// the subscription's poll.
pub(super) async fn activated(core: &Core, ctx: &Ctx) -> Result<bool, Error> {
    let mut local = core.local.lock().await;
    let mut state = local.read()?;
    refresh(core, ctx, &mut local, &mut state).await?;
    Ok(state.enrollment.as_ref().is_some_and(|e| e.activated))
}

/// Brings the local state up to date with the server when it answers: a pending activation is
/// finished, and a device the server no longer knows (revoked, disabled, expired) is
/// forgotten. Without an answer the local state stands.
async fn refresh(
    core: &Core,
    ctx: &Ctx,
    local: &mut Local,
    state: &mut VaultState,
) -> Result<(), Error> {
    // A server that refused a connection moments ago is not asked again: the local state
    // stands, exactly as after another failed attempt.
    if core.client.known_unreachable() {
        return Ok(());
    }
    activation::resume(core, ctx, local, state).await;
    let query = state
        .enrollment
        .as_ref()
        .map(|e| ("deviceId", e.device_id.as_str()));
    let status = core
        .client
        .call::<ep::Account>(&[], query, &ctx.token, &ctx.transaction_id, &Empty {})
        .await;
    match status {
        Ok(status) => {
            core.events
                .observe(None, Some(status.pin == PinState::Blocked));
            let known = matches!(
                status.device,
                Some(DeviceState::Active | DeviceState::Pending)
            );
            if state.enrollment.is_some() && !known {
                device::forget(core, local, state)?;
                tracing::info!(transaction_id = %ctx.transaction_id, "device no longer known to the server; local enrollment cleared");
            }
            Ok(())
        }
        Err(CallError::Transport(_) | CallError::Unexpected(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn is_account_blocked(core: &Core, ctx: &Ctx) -> Result<Value, Error> {
    let verdict = match core.call::<ep::Account>(ctx, &[], &Empty {}).await {
        Ok(s) if s.pin == PinState::Blocked => {
            core.events.observe(None, Some(true));
            "PinBlocked"
        }
        Ok(_) => {
            core.events.observe(None, Some(false));
            "NotBlocked"
        }
        Err(CallError::Transport(_) | CallError::Unexpected(_)) => "Unknown",
        Err(e) => return Err(e.into()),
    };
    Ok(json!({ "isAccountBlocked": verdict }))
}

/// GET `trustedphonenumber`; while a hold after a number change runs, `recoveryHeldUntil` too
/// (additive), so an app can offer the owner's restore.
pub(super) async fn trusted_phone_number(core: &Core, ctx: &Ctx) -> Result<Value, Error> {
    let status = core.account_status(ctx).await?;
    let Some(number) = status.phone_number else {
        return Err(Error::Api(ApiError::NoPhoneNumber));
    };
    Ok(match status.recovery_held_until {
        Some(until) => json!({ "phoneNumber": number, "recoveryHeldUntil": until }),
        None => json!({ "phoneNumber": number }),
    })
}

pub(super) async fn send_sms_code(
    core: &Core,
    ctx: &Ctx,
    purpose: SmsPurpose,
    phone_number: Option<PhoneNumber>,
) -> Result<Value, Error> {
    let (phone_number, region) = match phone_number {
        Some(p) => (Some(p.number), p.region),
        None => (None, None),
    };
    let request = SendSmsCode {
        purpose,
        phone_number,
        region,
    };
    core.call::<ep::SmsCodes>(ctx, &[], &request).await?;
    Ok(Value::Null)
}

pub(super) async fn check_enrollment_code(
    core: &Core,
    ctx: &Ctx,
    sms_code: Secret,
) -> Result<Value, Error> {
    let request = CheckSmsCode {
        purpose: SmsPurpose::Enrollment,
        sms_code: sms_code.expose().to_owned(),
    };
    let checked = core.call::<ep::SmsCodeCheck>(ctx, &[], &request).await?;
    let status = match checked.enrollment_status {
        EnrollmentStatus::NotEnrolled => "NotEnrolled",
        EnrollmentStatus::AlreadyEnrolled => "AlreadyEnrolled",
    };
    Ok(json!({ "status": status }))
}

pub(super) async fn add_phone_number(
    core: &Core,
    ctx: &Ctx,
    phone_number: PhoneNumber,
    sms_code: Secret,
) -> Result<Value, Error> {
    let request = AddPhoneNumber {
        phone_number: phone_number.number,
        region: phone_number.region,
        sms_code: sms_code.expose().to_owned(),
    };
    core.call::<ep::PhoneNumberAdd>(ctx, &[], &request).await?;
    Ok(Value::Null)
}
