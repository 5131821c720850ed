//! The account PIN after enrolling: reset with an SMS code, update with the current PIN, and
//! the validation `enroll` does on an active device. Each proves its authorization through
//! the first step of a PIN change (device-signed, counted by the server like any PIN check).

use pims_core::Secret;
use pims_proto::endpoint::{self as ep, Empty};
use pims_proto::{
    transcript, DeviceChallenge, DeviceProof, FinishPinChange, PinAuthorization, PinChangeStarted,
    PinFinish, StartPinChange,
};
use serde_json::Value;

use super::activation;
use super::device;
use super::error::Error;
use super::local::Local;
use super::shared::{Core, Ctx};
use crate::pin;
use crate::vault::VaultState;

/// `pincode reset`: a new PIN, authorised by the `resetPIN` SMS code and this device. The
/// server answers the new PIN's registration only once it has accepted the code.
pub(super) async fn reset(
    core: &Core,
    ctx: &Ctx,
    pin: Secret,
    sms_code: Secret,
) -> Result<Value, Error> {
    let mut local = core.local.lock().await;
    let mut state = local.read()?;
    let device_id = activation::active_device(core, ctx, &mut local, &mut state).await?;
    let challenge = device::challenge(core, ctx, &mut local, &mut state, &device_id, None).await?;
    let authorization = PinAuthorization::SmsCode(sms_code.expose().to_owned());
    change(
        core,
        ctx,
        &mut local,
        &mut state,
        &challenge,
        authorization,
        &pin,
    )
    .await?;
    tracing::info!(transaction_id = %ctx.transaction_id, "PIN reset");
    Ok(Value::Null)
}

/// `pincode update`: proves the old PIN (OPAQUE login, counted by the server) and only then
/// registers the new one. The PIN never leaves the device, so "new equals current" is decided
/// here: once the server has accepted the old PIN as the current one, the new PIN equals the
/// current one exactly when it equals the old one.
pub(super) async fn update(
    core: &Core,
    ctx: &Ctx,
    old: Secret,
    new: Secret,
) -> Result<Value, Error> {
    let mut local = core.local.lock().await;
    let mut state = local.read()?;
    let device_id = activation::active_device(core, ctx, &mut local, &mut state).await?;
    let same = old.expose() == new.expose();
    let (login, login_message) = pin::start(&old, false);
    let challenge = device::challenge(
        core,
        ctx,
        &mut local,
        &mut state,
        &device_id,
        Some(login_message),
    )
    .await?;
    let Some(login_response) = challenge.login.clone() else {
        return Err(Error::Malformed);
    };
    let login = pin::finish(login, &old, login_response).await?;
    let proven = matches!(login, PinFinish::Login(_));
    if same || !proven {
        // A wrong old PIN is 2308/2310, a right one equal to the new PIN is 2315.
        prove_pin_only(core, ctx, &mut local, &mut state, &challenge, login).await?;
        return Err(Error::SamePin);
    }
    let authorization = PinAuthorization::Pin(login);
    change(
        core,
        ctx,
        &mut local,
        &mut state,
        &challenge,
        authorization,
        &new,
    )
    .await?;
    tracing::info!(transaction_id = %ctx.transaction_id, "PIN updated");
    Ok(Value::Null)
}

/// `enroll` on the active device `device_id`: proves `pin` through the PIN update's
/// authorization step (2308/2310 when wrong); nothing changes.
pub(super) async fn validate(
    core: &Core,
    ctx: &Ctx,
    local: &mut Local,
    state: &mut VaultState,
    device_id: &str,
    pin: &Secret,
) -> Result<(), Error> {
    let (exchange, login_message) = pin::start(pin, false);
    let challenge =
        device::challenge(core, ctx, local, state, device_id, Some(login_message)).await?;
    let Some(login_response) = challenge.login.clone() else {
        return Err(Error::Malformed);
    };
    let login = pin::finish(exchange, pin, login_response).await?;
    prove_pin_only(core, ctx, local, state, &challenge, login).await?;
    tracing::info!(transaction_id = %ctx.transaction_id, "PIN validated");
    Ok(())
}

/// Sends a PIN-change start with only the PIN proof: nothing is registered or changed.
async fn prove_pin_only(
    core: &Core,
    ctx: &Ctx,
    local: &mut Local,
    state: &mut VaultState,
    challenge: &DeviceChallenge,
    login: PinFinish,
) -> Result<(), Error> {
    let request = StartPinChange {
        proof: DeviceProof::default(),
        authorization: PinAuthorization::Pin(login),
        registration: None,
    };
    let _: PinChangeStarted = signed_start(core, ctx, local, state, challenge, request).await?;
    Ok(())
}

/// The two halves of a PIN change: the authorized start answers the new PIN's OPAQUE
/// registration, the finish sends its upload over the challenge the start returned.
async fn change(
    core: &Core,
    ctx: &Ctx,
    local: &mut Local,
    state: &mut VaultState,
    challenge: &DeviceChallenge,
    authorization: PinAuthorization,
    new_pin: &Secret,
) -> Result<(), Error> {
    let (exchange, registration) = pin::start(new_pin, true);
    let request = StartPinChange {
        proof: DeviceProof::default(),
        authorization,
        registration: Some(registration),
    };
    let started = signed_start(core, ctx, local, state, challenge, request).await?;
    let Some(next) = started.next else {
        return Err(Error::Malformed);
    };
    let Some(response) = next.register.clone() else {
        return Err(Error::Malformed);
    };
    let PinFinish::Register(upload) = pin::finish(exchange, new_pin, response).await? else {
        return Err(Error::Malformed);
    };
    let proof = device::sign_operation(
        core,
        local,
        state,
        transcript::PIN_CHANGE_FINISH,
        &next,
        upload.as_slice(),
    )?;
    let request = FinishPinChange {
        proof,
        registration: upload,
    };
    device::call::<ep::PinChangeFinish>(core, ctx, local, state, &[], &request)
        .await
        .map(|Empty {}| ())
}

/// Signs a PIN-change start over `challenge` and sends it.
async fn signed_start(
    core: &Core,
    ctx: &Ctx,
    local: &mut Local,
    state: &mut VaultState,
    challenge: &DeviceChallenge,
    mut request: StartPinChange,
) -> Result<PinChangeStarted, Error> {
    request.proof = device::sign_operation(
        core,
        local,
        state,
        request.operation(),
        challenge,
        &request.signed_payload(),
    )?;
    device::call::<ep::PinChange>(core, ctx, local, state, &[], &request).await
}
