//! Account management besides the PIN: removing every enrollment, changing the trusted phone
//! number, listing and revoking devices.

use pims_core::Secret;
use pims_proto::endpoint::{self as ep, Empty};
use pims_proto::{transcript, DeviceProof, DeviceState, ModifyPhoneNumber, RestorePhoneNumber};
use serde_json::{json, Value};

use super::activation;
use super::device;
use super::error::Error;
use super::request::PhoneNumber;
use super::shared::{Core, Ctx};
use crate::pin;
use crate::signer;
use crate::vault::VaultState;

/// `enrollment remove`: every enrollment of the account and its PIN, on the server first, then
/// here. Needs no enrolled device and works while PIN-blocked: it is the way out of 2317. An
/// unreadable local vault is replaced too.
pub(super) async fn remove(core: &Core, ctx: &Ctx) -> Result<Value, Error> {
    let mut local = core.local.lock().await;
    let state = local.read_or_replace()?;
    core.call::<ep::EnrollmentsRemove>(ctx, &[], &Empty {})
        .await?;
    if let Some(e) = &state.enrollment {
        signer::discard(&e.key, core.host.device_keys.as_ref());
    }
    if let Some(u) = &state.unconfirmed {
        signer::discard(&u.key, core.host.device_keys.as_ref());
    }
    local.write(&VaultState::default())?;
    tracing::info!(transaction_id = %ctx.transaction_id, "every enrollment removed");
    Ok(Value::Null)
}

/// `smscode modifyPhoneNumber`: the number certified by a `phoneNumberCertification` code
/// becomes the trusted one; this device signs the change and, when the app gives the current
/// PIN, proves it in the same operation (counted like any PIN check).
pub(super) async fn modify_phone_number(
    core: &Core,
    ctx: &Ctx,
    phone_number: PhoneNumber,
    sms_code: Secret,
    pin: Option<Secret>,
) -> Result<Value, Error> {
    let mut local = core.local.lock().await;
    let mut state = local.read()?;
    let device_id = activation::active_device(core, ctx, &mut local, &mut state).await?;
    let exchange = pin.as_ref().map(|p| pin::start(p, false));
    let login_message = exchange.as_ref().map(|(_, m)| m.clone());
    let challenge =
        device::challenge(core, ctx, &mut local, &mut state, &device_id, login_message).await?;
    let login = match (exchange, &pin, challenge.login.clone()) {
        (Some((exchange, _)), Some(pin), Some(response)) => {
            Some(pin::finish(exchange, pin, response).await?)
        }
        (None, None, None) => None,
        _ => return Err(Error::Malformed),
    };
    let mut request = ModifyPhoneNumber {
        proof: DeviceProof::default(),
        phone_number: phone_number.number,
        region: phone_number.region,
        sms_code: sms_code.expose().to_owned(),
        login,
    };
    request.proof = device::sign_operation(
        core,
        &mut local,
        &mut state,
        transcript::PHONE_NUMBER_MODIFY,
        &challenge,
        &request.signed_payload(),
    )?;
    device::call::<ep::PhoneNumberModify>(core, ctx, &mut local, &mut state, &[], &request).await?;
    tracing::info!(transaction_id = %ctx.transaction_id, "trusted phone number modified");
    Ok(Value::Null)
}

/// SET `trustedphonenumber` `action=restore`: the owner's way back during the hold after a
/// number change, from any phone with their login and the restore code the change notice sent
/// to the number trusted before it. Every device of the account is disabled, this one too if
/// it was enrolled: it then forgets its enrollment, and `enroll` (with the PIN) works again.
pub(super) async fn restore_phone_number(
    core: &Core,
    ctx: &Ctx,
    restore_code: Secret,
) -> Result<Value, Error> {
    let mut local = core.local.lock().await;
    let request = RestorePhoneNumber {
        restore_code: restore_code.expose().to_owned(),
    };
    let restored = core
        .call::<ep::PhoneNumberRestore>(ctx, &[], &request)
        .await?;
    if let Ok(mut state) = local.read() {
        if state.enrollment.is_some() {
            // Disabled on the server already; a vault that cannot be written is found out,
            // and cleared, by the next call.
            let _ = device::forget(core, &mut local, &mut state);
        }
    }
    tracing::info!(transaction_id = %ctx.transaction_id, "trusted phone number restored");
    Ok(json!({ "phoneNumber": restored.phone_number }))
}

/// GET `pims.authentication.devices`.
pub(super) async fn list_devices(core: &Core, ctx: &Ctx) -> Result<Value, Error> {
    let this_device = {
        let mut local = core.local.lock().await;
        local
            .read()
            .ok()
            .and_then(|s| s.enrollment.map(|e| e.device_id))
    };
    let list = core.call::<ep::Devices>(ctx, &[], &Empty {}).await?;
    let devices: Vec<Value> = list
        .devices
        .into_iter()
        .map(|d| {
            json!({
                "deviceId": d.device_id,
                "name": d.name,
                "platform": d.platform.as_str(),
                "state": match d.state {
                    DeviceState::Pending => "Pending",
                    DeviceState::Active => "Active",
                    DeviceState::Disabled => "Disabled",
                },
                "createdAt": d.created_at,
                "lastUsedAt": d.last_used_at,
                // What its enrollment proved of its key: strongbox, tee, secure-enclave,
                // software or unattested.
                "assurance": d.assurance,
                "isThisDevice": this_device.as_deref() == Some(d.device_id.as_str()),
            })
        })
        .collect();
    Ok(json!({ "devices": devices }))
}

/// SET `pims.authentication.devices` `action=remove`: revokes one device of the account (this
/// one included, which then forgets its enrollment).
pub(super) async fn revoke_device(core: &Core, ctx: &Ctx, device_id: &str) -> Result<Value, Error> {
    let mut local = core.local.lock().await;
    core.call::<ep::DeviceRevoke>(ctx, &[device_id], &Empty {})
        .await?;
    if let Ok(mut state) = local.read() {
        if state
            .enrollment
            .as_ref()
            .is_some_and(|e| e.device_id == device_id)
        {
            // Revoked on the server already; a vault that cannot be written is found out, and
            // cleared, by the next call.
            let _ = device::forget(core, &mut local, &mut state);
        }
    }
    tracing::info!(transaction_id = %ctx.transaction_id, "device revoked");
    Ok(Value::Null)
}
