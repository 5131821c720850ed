//! The second half of an enrollment: the finish request the vault keeps until the server has
//! answered it, the activation (Pending → Active), and finishing either on a later call.

use std::time::Duration;

use pims_proto::endpoint::{self as ep, Empty};

use super::device;
use super::error::Error;
use super::local::Local;
use super::shared::{Core, Ctx};
use crate::client::CallError;
use crate::signer;
use crate::vault::{Enrollment, VaultState};

/// Sends the stored enrollment finish (up to `attempts` times on a lost answer, with the same
/// idempotency key), records the device, then activates it.
pub(super) async fn confirm(
    core: &Core,
    ctx: &Ctx,
    local: &mut Local,
    state: &mut VaultState,
    attempts: u32,
) -> Result<(), Error> {
    let Some(unconfirmed) = state.unconfirmed.clone() else {
        return Ok(());
    };
    let mut outcome = Err(CallError::Transport(String::new()));
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        outcome = core
            .call::<ep::EnrollmentFinish>(ctx, &[&unconfirmed.enrollment_id], &unconfirmed.request)
            .await;
        if !matches!(outcome, Err(CallError::Transport(_))) {
            break;
        }
    }
    match outcome {
        Ok(finished) => {
            state.unconfirmed = None;
            state.enrollment = Some(Enrollment {
                device_id: finished.device_id,
                activated: false,
                activation_nonce: finished.activation_nonce,
                counter: 0,
                public_key: unconfirmed.request.device.public_key.clone(),
                key: unconfirmed.key,
            });
            local.write(state)?;
            tracing::info!(transaction_id = %ctx.transaction_id, "device enrolled, activating");
            activate(core, ctx, local, state).await
        }
        Err(CallError::Api(error)) => {
            state.unconfirmed = None;
            local.write(state)?;
            signer::discard(&unconfirmed.key, core.host.device_keys.as_ref());
            Err(Error::Api(error))
        }
        Err(other) => Err(other.into()),
    }
}

/// Pending → Active. The server has committed the device; if we cannot tell it the local
/// state is written, that is 2316 and a later call finishes it.
async fn activate(
    core: &Core,
    ctx: &Ctx,
    local: &mut Local,
    state: &mut VaultState,
) -> Result<(), Error> {
    let Some(device_id) = state.enrollment.as_ref().map(|e| e.device_id.clone()) else {
        return Err(Error::NoLocalEnrollment);
    };
    let request = device::sign_next(core, local, state, |e| {
        pims_device::activation(&e.device_id, e.activation_nonce.as_slice(), e.counter)
    })?;
    let outcome =
        device::call::<ep::DeviceActivate>(core, ctx, local, state, &[&device_id], &request).await;
    match outcome {
        Ok(Empty {}) => {
            if let Some(e) = state.enrollment.as_mut() {
                e.activated = true;
            }
            local.write(state)?;
            tracing::info!(transaction_id = %ctx.transaction_id, "device activated");
            Ok(())
        }
        // The device is committed; only its activation is not confirmed.
        Err(Error::Transport(_) | Error::Unexpected(_)) => Err(Error::ActivationPending),
        Err(e) => Err(e),
    }
}

/// Finishes whatever an earlier call left half done; failures only mean "still pending".
pub(super) async fn resume(core: &Core, ctx: &Ctx, local: &mut Local, state: &mut VaultState) {
    let outcome = if state.unconfirmed.is_some() {
        confirm(core, ctx, local, state, 1).await
    } else if state.enrollment.as_ref().is_some_and(|e| !e.activated) {
        activate(core, ctx, local, state).await
    } else {
        return;
    };
    if let Err(error) = outcome {
        tracing::info!(transaction_id = %ctx.transaction_id, %error, "pending enrollment not completed yet");
    }
}

/// The id of this device's Active enrollment, after finishing what was pending: the OTP and
/// the account-management operations need it.
pub(super) async fn active_device(
    core: &Core,
    ctx: &Ctx,
    local: &mut Local,
    state: &mut VaultState,
) -> Result<String, Error> {
    resume(core, ctx, local, state).await;
    match &state.enrollment {
        Some(e) if e.activated => Ok(e.device_id.clone()),
        Some(_) => Err(Error::ActivationPending),
        None => Err(Error::NotEnrolled),
    }
}
