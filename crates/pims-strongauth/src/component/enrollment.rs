//! `enroll` / `enrollWithPhoneNumber`: the first half of the ceremony, up to the finish the
//! vault keeps (the rest is [`activation`]), and the SMS code it may take from the host.

use pims_core::Secret;
use pims_device::Stretching;
use pims_proto::endpoint as ep;
use pims_proto::{ApiError, NewDevice, PinState, Platform};
use serde_json::Value;

use super::activation;
use super::error::Error;
use super::pin_change;
use super::request::{PhoneNumber, SMS_DIGITS};
use super::shared::{Core, Ctx};
use crate::pin;
use crate::signer;
use crate::vault::UnconfirmedEnrollment;

/// Attempts, within the enroll call, to deliver a finish whose answer was lost (safe: the
/// idempotency key). A later call that resumes it tries once, so it never stalls on a dead link.
const FINISH_ATTEMPTS: u32 = 3;

/// `enroll` (phone_number `None`) and `enrollWithPhoneNumber`. The first device of an account
/// registers the PIN; a further device proves it; on a device already active it is a PIN
/// validation (the tutorial's step 8 after step 7), which needs no SMS code.
pub(super) async fn enroll(
    core: &Core,
    ctx: &Ctx,
    pin: Secret,
    sms_code: Option<Secret>,
    phone_number: Option<PhoneNumber>,
) -> Result<Value, Error> {
    let sms_code = match sms_code {
        Some(code) => Some(code),
        None if phone_number.is_some() => return Err(Error::MissingParameter("smsCode")),
        // An active device's `enroll` validates the PIN and needs no code.
        None if activated_locally(core).await => None,
        // `enroll` goes to the trusted number, which the SMS reader watches.
        None => Some(sms_code_from_host(core).await?),
    };
    let mut local = core.local.lock().await;
    let mut state = local.read_or_replace()?;
    let had_enrollment = state.enrollment.is_some();
    let had_unconfirmed = state.unconfirmed.is_some();
    activation::resume(core, ctx, &mut local, &mut state).await;
    match &state.enrollment {
        // An earlier enroll whose answer was lost has now completed: that is this request.
        Some(e) if e.activated && had_unconfirmed && !had_enrollment => return Ok(Value::Null),
        Some(e) if e.activated && phone_number.is_none() => {
            let device_id = e.device_id.clone();
            pin_change::validate(core, ctx, &mut local, &mut state, &device_id, &pin).await?;
            return Ok(Value::Null);
        }
        Some(e) if e.activated => return Err(Error::AlreadyEnrolled),
        Some(_) => return Err(Error::ActivationPending),
        None if state.unconfirmed.is_some() => return Err(Error::FinishPending),
        None => {}
    }
    let Some(sms_code) = sms_code else {
        return Err(Error::MissingParameter("smsCode"));
    };

    // Refusals the account status already shows, answered before any PIN work.
    let status = core.account_status(ctx).await?;
    if status.pin == PinState::Blocked {
        return Err(Error::Api(ApiError::AccountBlocked));
    }
    match (&phone_number, &status.phone_number) {
        (Some(_), Some(_)) => return Err(Error::Api(ApiError::PhoneNumberAlreadyRegistered)),
        (None, None) => return Err(Error::Api(ApiError::NoPhoneNumber)),
        _ => {}
    }

    let register = status.pin == PinState::NotSet;
    let (phone_number, region) = match phone_number {
        Some(p) => (Some(p.number), p.region),
        None => (None, None),
    };
    let (enrollment, start) = pims_device::start_enrollment(
        sms_code.expose().to_owned(),
        phone_number,
        region,
        pin.expose().as_bytes(),
        register,
    );
    let started = core.call::<ep::EnrollmentStart>(ctx, &[], &start).await?;

    // The platform attests the key over challenges that bind this session (created once the
    // SMS code was checked) and, for App Attest, the key itself.
    let host_keys = core.host.device_keys.as_ref();
    let (key_challenge, _) = pims_device::attestation_challenges(&started, &[]);
    let new_key = signer::generate_attested(host_keys, Some(&key_challenge))?;
    let (_, app_challenge) = pims_device::attestation_challenges(&started, &new_key.public_key);
    let attestation = signer::attestation(&new_key.key, host_keys, &app_challenge);
    let device = NewDevice {
        public_key: new_key.public_key.clone().into(),
        name: core.config.device_name.clone(),
        platform: core.config.platform,
    };
    let enrollment_id = started.enrollment_id.clone();
    let idempotency_key = uuid::Uuid::new_v4().to_string();
    let finish = pin::off_runtime(move || {
        enrollment.finish(
            pin.expose().as_bytes(),
            &started,
            device,
            idempotency_key,
            Stretching::Standard,
        )
    })
    .await;
    let finish = match finish {
        Ok(finish) => finish.with_attestation(attestation),
        Err(malformed) => {
            signer::discard(&new_key.key, core.host.device_keys.as_ref());
            return Err(malformed.into());
        }
    };
    let signature = signer::sign(
        &new_key.key,
        core.host.device_keys.as_ref(),
        &finish.transcript,
    )?;
    state.unconfirmed = Some(UnconfirmedEnrollment {
        enrollment_id,
        request: finish.signed(signature),
        key: new_key.key,
    });
    // Written before sending: if the answer is lost, the next call can resend it.
    local.write(&state)?;
    activation::confirm(core, ctx, &mut local, &mut state, FINISH_ATTEMPTS).await?;
    Ok(Value::Null)
}

/// Whether the vault holds an active enrollment (without asking the server).
async fn activated_locally(core: &Core) -> bool {
    let mut local = core.local.lock().await;
    local
        .read()
        .is_ok_and(|state| state.enrollment.is_some_and(|e| e.activated))
}

/// Android without `smsCode`: the host's SMS reader, for at most the configured timeout.
async fn sms_code_from_host(core: &Core) -> Result<Secret, Error> {
    let provider = match (&core.host.sms_codes, core.config.platform) {
        (Some(p), Platform::Android) => p.clone(),
        _ => return Err(Error::MissingParameter("smsCode")),
    };
    let timeout = core.config.sms_code_timeout;
    let read = tokio::task::spawn_blocking(move || provider.sms_code(timeout));
    let code = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(Some(code))) => zeroize::Zeroizing::new(code),
        _ => {
            tracing::info!("no SMS code from the host's reader in time");
            return Err(Error::MissingParameter("smsCode"));
        }
    };
    let code = code.trim();
    if !SMS_DIGITS.contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidParameter("smsCode"));
    }
    Ok(Secret::new(code.to_owned()))
}
