//! This device's enrolled key at work: every signature with the next counter, every request
//! on the device's behalf, and forgetting an enrollment the server no longer knows.

use pims_proto::endpoint::{self as ep, Endpoint};
use pims_proto::{
    ApiError, Bytes, DeviceChallenge, DeviceChallengeRequest, DeviceProof, LoginProof,
};

use super::error::Error;
use super::local::Local;
use super::shared::{Core, Ctx};
use crate::client::CallError;
use crate::signer;
use crate::vault::{Enrollment, VaultState};

/// A request on behalf of this device: a server that no longer knows it makes it forget
/// its enrollment (2312), so it can enroll again.
pub(super) async fn call<E: Endpoint>(
    core: &Core,
    ctx: &Ctx,
    local: &mut Local,
    state: &mut VaultState,
    values: &[&str],
    body: &E::Request,
) -> Result<E::Response, Error> {
    match core.call::<E>(ctx, values, body).await {
        Ok(v) => Ok(v),
        Err(CallError::Api(ApiError::DeviceUnknown)) => {
            forget(core, local, state)?;
            Err(Error::Api(ApiError::DeviceUnknown))
        }
        Err(e) => Err(e.into()),
    }
}

/// The server no longer knows this device (revoked, expired, disabled as a clone): clear the
/// local enrollment so the device can enroll again.
pub(super) fn forget(core: &Core, local: &mut Local, state: &mut VaultState) -> Result<(), Error> {
    if let Some(enrollment) = state.enrollment.take() {
        signer::discard(&enrollment.key, core.host.device_keys.as_ref());
    }
    local.write(state)
}

/// A challenge for a device operation, starting the PIN login `login` when the operation
/// proves the PIN.
pub(super) async fn challenge(
    core: &Core,
    ctx: &Ctx,
    local: &mut Local,
    state: &mut VaultState,
    device_id: &str,
    login: Option<Bytes>,
) -> Result<DeviceChallenge, Error> {
    let proof = login
        .as_ref()
        .map(|request| sign_login_start(core, local, state, request))
        .transpose()?;
    let request = DeviceChallengeRequest { login, proof };
    call::<ep::DeviceChallenges>(core, ctx, local, state, &[device_id], &request).await
}

/// Signs the start of a PIN login (the OPAQUE credential request) with the next counter,
/// written to the vault before use: only this device can spend the account's PIN attempts.
pub(super) fn sign_login_start(
    core: &Core,
    local: &mut Local,
    state: &mut VaultState,
    credential_request: &Bytes,
) -> Result<LoginProof, Error> {
    sign_next(core, local, state, |e| {
        pims_device::login_proof(&e.device_id, e.counter, credential_request.as_slice())
    })
}

/// Signs `operation` over a device challenge with the next counter.
pub(super) fn sign_operation(
    core: &Core,
    local: &mut Local,
    state: &mut VaultState,
    operation: &str,
    challenge: &DeviceChallenge,
    payload: &[u8],
) -> Result<DeviceProof, Error> {
    sign_next(core, local, state, |e| {
        pims_device::operation_proof(operation, challenge, &e.device_id, e.counter, payload)
    })
}

/// Signs a device ceremony with the next counter, written to the vault before use so a
/// counter is never reused (the server disables a device whose counter does not grow).
pub(super) fn sign_next<T>(
    core: &Core,
    local: &mut Local,
    state: &mut VaultState,
    ceremony: impl FnOnce(&Enrollment) -> pims_device::ToSign<T>,
) -> Result<T, Error> {
    let Some(enrollment) = state.enrollment.as_mut() else {
        return Err(Error::NoLocalEnrollment);
    };
    enrollment.counter += 1;
    let to_sign = ceremony(enrollment);
    let key = enrollment.key.clone();
    local.write(state)?;
    let signature = signer::sign(&key, core.host.device_keys.as_ref(), &to_sign.transcript)?;
    Ok(to_sign.signed(signature))
}
