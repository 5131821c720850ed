//! The reference's remote-command component (`pims.vehicle.*`): the car the commands are
//! for, commands signed by this device's key — with the PIN proven for the very command when
//! it needs it — and the car's signed answers delivered to `pims.vehicle.signal`.
//!
//! PIN evidence, in the reference's flow: a command that needs the PIN is answered 2302; the
//! app gets an OTP with the PIN (the SDK asks it for the command service and keeps it) and
//! sends the command again, which spends that OTP. With `pinCode` (additive) one call does it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pims_command::{CommandKind, Receipt};
use pims_core::{ErrorCode, EventSink, PimsError, Secret};
use pims_device::{CommandOrder, CommandPin};
use pims_proto::endpoint::{self as ep, Empty};
use pims_proto::{ApiError, Bytes, PairVehicle};
use serde_json::{json, Value};

use super::error::Error;
use super::shared::{Core, Ctx};
use super::{activation, device};
use crate::pin;
use crate::vault::{DeviceKey, VaultState};

/// How long a proof lives: the default policy's cap.
const PROOF_SECONDS: u64 = 30;
/// How long after a 2302 an OTP with PIN is taken as meant for the command sent again.
const AWAIT_PIN: Duration = Duration::from_secs(120);

/// What the component remembers between remote-command calls (in memory only).
#[derive(Default)]
pub(super) struct Session {
    vin: Option<String>,
    /// The command service's audience, once asked.
    audience: Option<String>,
    /// When a command was last answered 2302, and which.
    awaiting_pin: Option<(Instant, CommandKind)>,
    /// An OTP with PIN obtained for the command service after a 2302 of that command, until
    /// it expires: only that command sent again spends it.
    pin_otp: Option<(Secret, Instant, CommandKind)>,
    signals: Vec<EventSink>,
}

impl Core {
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.vehicle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an OTP with PIN requested now (without an audience) is the one the app gets
    /// to send a command again after 2302: then it is for the command service.
    pub(super) fn command_awaits_pin(&self) -> bool {
        self.session()
            .awaiting_pin
            .is_some_and(|(at, _)| at.elapsed() < AWAIT_PIN)
    }

    /// Keeps an OTP with PIN for the next command.
    pub(super) fn keep_pin_otp(&self, otp: &str, lifetime: Duration) {
        let mut s = self.session();
        if let Some((_, kind)) = s.awaiting_pin.take() {
            s.pin_otp = Some((Secret::new(otp.to_owned()), Instant::now() + lifetime, kind));
        }
    }

    fn take_pin_otp(&self, kind: CommandKind) -> Option<String> {
        let mut s = self.session();
        match &s.pin_otp {
            Some((_, until, k)) if *k == kind && Instant::now() < *until => {
                s.pin_otp.take().map(|(otp, _, _)| otp.expose().to_owned())
            }
            _ => None,
        }
    }

    /// Delivers one signal event to every live subscription.
    fn signal(&self, outcome: Result<Value, PimsError>) {
        let mut s = self.session();
        s.signals.retain(|sink| sink.send(outcome.clone()));
    }

    pub(super) fn subscribe_signal(&self, sink: EventSink) {
        self.session().signals.push(sink);
    }

    pub(super) fn audience(&self) -> Option<String> {
        self.session().audience.clone()
    }
}

/// SET `pims.vehicle.vin`.
pub(super) fn select_vin(core: &Core, vin: String) -> Result<Value, Error> {
    core.session().vin = Some(vin);
    Ok(Value::Null)
}

fn selected_vin(core: &Core) -> Result<String, Error> {
    core.session().vin.clone().ok_or(Error::NotSet("vin"))
}

/// The command service's audience, asked once.
pub(super) async fn command_audience(core: &Core, ctx: &Ctx) -> Result<String, Error> {
    if let Some(audience) = core.audience() {
        return Ok(audience);
    }
    let keys = core.call::<ep::CommandKeys>(ctx, &[], &Empty {}).await?;
    core.session().audience = Some(keys.audience.clone());
    Ok(keys.audience)
}

/// This device key's public half (from the vault; derived for a software key in a vault
/// written before remote commands).
fn public_key(state: &VaultState) -> Result<Vec<u8>, Error> {
    let e = state.enrollment.as_ref().ok_or(Error::NotEnrolled)?;
    if !e.public_key.as_slice().is_empty() {
        return Ok(e.public_key.0.clone());
    }
    match &e.key {
        DeviceKey::Software { secret } => p256::ecdsa::SigningKey::from_slice(secret.as_slice())
            .map(|k| {
                k.verifying_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec()
            })
            .map_err(|_| Error::NoLocalEnrollment),
        // A hardware key enrolled by an SDK before remote commands: enroll again.
        DeviceKey::Host { .. } => Err(Error::NoLocalEnrollment),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// SET `pims.vehicle.pairing`: this device's key on the selected car's keychain, proven with
/// the code the car shows (a MAC under it: the code itself never leaves the phone).
pub(super) async fn pair(core: &Core, ctx: &Ctx, code: Secret) -> Result<Value, Error> {
    let vin = selected_vin(core)?;
    let mut local = core.local.lock().await;
    let mut state = local.read()?;
    let device_id = activation::active_device(core, ctx, &mut local, &mut state).await?;
    let mac = pims_command::pairing_mac(code.expose(), &vin, &public_key(&state)?);
    let request = PairVehicle {
        device_id,
        mac: mac.to_vec().into(),
    };
    let paired =
        device::call::<ep::VehiclePair>(core, ctx, &mut local, &mut state, &[&vin], &request)
            .await?;
    state.vehicles.insert(vin, paired.vehicle_key);
    local.write(&state)?;
    Ok(Value::Null)
}

/// SET `pims.vehicle.command`.
pub(super) async fn command(
    core: &Core,
    ctx: &Ctx,
    command: pims_command::Command,
    pin: Option<Secret>,
) -> Result<Value, Error> {
    let vin = selected_vin(core)?;
    let audience = command_audience(core, ctx).await?;
    let mut local = core.local.lock().await;
    let mut state = local.read()?;
    let device_id = activation::active_device(core, ctx, &mut local, &mut state).await?;
    let public_key = public_key(&state)?;

    let login = pin.as_ref().map(|p| pin::start(p, false));
    let challenge = device::challenge(
        core,
        ctx,
        &mut local,
        &mut state,
        &device_id,
        login.as_ref().map(|(_, m)| m.clone()),
    )
    .await?;
    let evidence = match (login, pin, challenge.login.clone()) {
        (Some((exchange, _)), Some(pin), Some(response)) => Some(CommandPin::Login(
            pin::finish(exchange, &pin, response).await?,
        )),
        (None, None, None) => core.take_pin_otp(command.kind()).map(CommandPin::Otp),
        _ => return Err(Error::Malformed),
    };
    let kind = command.kind();
    let order = CommandOrder {
        vin: vin.clone(),
        audience,
        command,
        expires_at: unix_now() + PROOF_SECONDS,
    };
    let request = device::sign_next(core, &mut local, &mut state, |e| {
        pims_device::command(
            &challenge,
            &e.device_id,
            &public_key,
            e.counter,
            order,
            evidence,
        )
    })?;
    let sent = device::call::<ep::Commands>(core, ctx, &mut local, &mut state, &[], &request).await;
    let sent = match sent {
        Err(Error::Api(ApiError::PinRequired { .. })) => {
            core.session().awaiting_pin = Some((Instant::now(), kind));
            return Err(Error::Api(ApiError::PinRequired {
                command: String::new(),
            }));
        }
        other => other?,
    };
    let r = &sent.receipt;
    let receipt = Receipt {
        request: r
            .request
            .as_slice()
            .try_into()
            .map_err(|_| Error::Malformed)?,
        code: r.code,
        state: r.state.clone().into_bytes(),
        counter: r.counter,
    };
    // The car's own signature, when this device paired with it; the request it answers must
    // be the proof it was sent.
    let proof_digest = pims_proto::transcript::digest(sent.proof.as_slice());
    let verified = match state.vehicles.get(&vin) {
        Some(Bytes(car_key)) => {
            if !receipt.verify(car_key, r.signature.as_slice()) || receipt.request != proof_digest {
                core.signal(Err(ErrorCode::InvalidSignature.into()));
                return Err(Error::ReceiptInvalid);
            }
            true
        }
        None => false,
    };
    let vehicle: Value = serde_json::from_str(&r.state).map_err(|_| Error::Malformed)?;
    if r.code == 200 {
        core.signal(Ok(
            json!({ "code": 200, "vehicle": vehicle, "receiptVerified": verified }),
        ));
        Ok(Value::Null)
    } else {
        let error = Error::Vehicle {
            code: r.code,
            fault: r.fault.clone(),
        };
        core.signal(Err(error.vehicle_error()));
        Err(error)
    }
}
