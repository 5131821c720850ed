//! One-time proofs with or without the PIN.

use pims_core::Secret;
use pims_proto::endpoint as ep;
use pims_proto::OtpChallengeRequest;
use serde_json::{json, Value};

use super::activation;
use super::device;
use super::error::Error;
use super::shared::{Core, Ctx};
use super::vehicle;
use crate::pin;

/// GET `pims.authentication.otp`: a challenge (with an OPAQUE login when `pin` is given), then
/// one device signature over it, the counter and the PIN proof.
pub(super) async fn otp(
    core: &Core,
    ctx: &Ctx,
    pin: Option<Secret>,
    audience: Option<String>,
) -> Result<Value, Error> {
    // After a command was answered 2302, an OTP with PIN for no named relying party is the
    // one the reference's flow gets to send the command again: for the command service, kept.
    let for_command = pin.is_some() && audience.is_none() && core.command_awaits_pin();
    let audience = match for_command {
        true => Some(vehicle::command_audience(core, ctx).await?),
        false => audience,
    };
    let mut local = core.local.lock().await;
    let mut state = local.read()?;
    let device_id = activation::active_device(core, ctx, &mut local, &mut state).await?;

    let exchange = pin.as_ref().map(|p| pin::start(p, false));
    let login = exchange.as_ref().map(|(_, message)| message.clone());
    let proof = login
        .as_ref()
        .map(|request| device::sign_login_start(core, &mut local, &mut state, request))
        .transpose()?;
    let request = OtpChallengeRequest {
        device_id: device_id.clone(),
        pin: login,
        audience,
        proof,
    };
    let challenge =
        device::call::<ep::OtpChallenges>(core, ctx, &mut local, &mut state, &[], &request).await?;
    let pin_finish = match (exchange, pin, challenge.pin.clone()) {
        (Some((exchange, _)), Some(pin), Some(response)) => {
            Some(pin::finish(exchange, &pin, response).await?)
        }
        (None, None, None) => None,
        _ => return Err(Error::Malformed),
    };

    let request = device::sign_next(core, &mut local, &mut state, |e| {
        pims_device::otp_request(&challenge, &e.device_id, e.counter, pin_finish)
    })?;
    let issued = device::call::<ep::Otp>(core, ctx, &mut local, &mut state, &[], &request).await?;
    if for_command {
        let lifetime = std::time::Duration::from_secs(issued.expires_in_seconds);
        core.keep_pin_otp(&issued.otp, lifetime);
    }
    Ok(json!({ "otp": issued.otp, "expiresInSeconds": issued.expires_in_seconds }))
}
