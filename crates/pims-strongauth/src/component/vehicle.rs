//! The reference's remote-command component (`pims.vehicle.*`): the car the commands are
//! for, commands signed by this device's key — with the PIN proven for the very command when
//! it needs it — and the car's signed answers delivered to `pims.vehicle.signal`.
//!
//! PIN evidence, in the reference's flow: a command that needs the PIN is answered 2302; the
//! app gets an OTP with the PIN (the SDK asks it for the command service and keeps it) and
//! sends the command again, which spends that OTP. With `pinCode` (additive) one call does it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pims_command::Receipt;
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
    /// When a command was last answered 2302, and which (on which car).
    awaiting_pin: Option<(Instant, Pending)>,
    /// An OTP with PIN obtained for the command service after a 2302 of that command, until
    /// it expires: only that command, to that car, sent again spends it.
    pin_otp: Option<(Secret, Instant, Pending)>,
    signals: Vec<EventSink>,
}

/// The command a 2302 answered: the kept OTP serves it alone.
#[derive(Clone, PartialEq, Eq)]
struct Pending {
    vin: String,
    command: pims_command::Command,
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
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < AWAIT_PIN)
    }

    /// Keeps an OTP with PIN for the next command.
    pub(super) fn keep_pin_otp(&self, otp: &str, lifetime: Duration) {
        let mut s = self.session();
        if let Some((_, kind)) = s.awaiting_pin.take() {
            s.pin_otp = Some((Secret::new(otp.to_owned()), Instant::now() + lifetime, kind));
        }
    }

    fn take_pin_otp(&self, pending: &Pending) -> Option<String> {
        let mut s = self.session();
        match &s.pin_otp {
            Some((_, until, p)) if p == pending && Instant::now() < *until => {
                s.pin_otp.take().map(|(otp, _, _)| otp.expose().to_owned())
            }
            _ => None,
        }
    }

    /// Nothing waits for the PIN any more (the command was sent with it, ran, or the car
    /// changed): no OTP is kept, and the next OTP is the app's own.
    fn settle_pin(&self) {
        let mut s = self.session();
        s.awaiting_pin = None;
        s.pin_otp = None;
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
    core.settle_pin();
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
    let phone_key = public_key(&state)?;
    let mac = pims_command::pairing_mac(code.expose(), &vin, &phone_key);
    let request = PairVehicle {
        device_id,
        mac: mac.to_vec().into(),
    };
    let paired =
        device::call::<ep::VehiclePair>(core, ctx, &mut local, &mut state, &[&vin], &request)
            .await?;
    // The car's key only with the car's own MAC under the code: nobody relaying the pairing can
    // hand this phone a key of its own to sign receipts with.
    let car_key = paired.vehicle_key.as_slice();
    if !pims_command::pairing_answer_ok(
        code.expose(),
        &vin,
        &phone_key,
        car_key,
        paired.mac.as_slice(),
    ) {
        return Err(Error::ReceiptInvalid);
    }
    state.vehicles.insert(vin.clone(), paired.vehicle_key);
    state.vehicle_receipts.remove(&vin);
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

    let pending = Pending {
        vin: vin.clone(),
        command: command.clone(),
    };
    if pin.is_some() {
        core.settle_pin();
    }
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
        (None, None, None) => core.take_pin_otp(&pending).map(CommandPin::Otp),
        _ => return Err(Error::Malformed),
    };
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
            core.session().awaiting_pin = Some((Instant::now(), pending));
            return Err(Error::Api(ApiError::PinRequired {
                command: String::new(),
            }));
        }
        Err(e @ Error::Api(ApiError::VehicleUnreachable)) => {
            // The car may still have run it: its state comes with the next answer.
            core.signal(Err(ErrorCode::BrokerConnectionFailed.into()));
            return Err(e);
        }
        other => other?,
    };
    // The car answered the proof this call signed, not another the server picked: the same
    // envelope and signature, only the co-signature added.
    let relayed =
        pims_command::Proof::parse(sent.proof.as_slice()).map_err(|_| Error::Malformed)?;
    let signed =
        pims_command::Proof::parse(request.proof.as_slice()).map_err(|_| Error::Malformed)?;
    if relayed.envelope_bytes != signed.envelope_bytes
        || relayed.device_signature != signed.device_signature
    {
        core.signal(Err(ErrorCode::InvalidSignature.into()));
        return Err(Error::ReceiptInvalid);
    }
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
    // Signed by the car this device paired with, over the proof it was sent, and newer than
    // any receipt seen from that car: an old receipt cannot stand for a new command.
    let proof_digest = pims_proto::transcript::digest(sent.proof.as_slice());
    let last = state.vehicle_receipts.get(&vin).copied().unwrap_or(0);
    let verified = match state.vehicles.get(&vin) {
        Some(Bytes(car_key)) => {
            if !receipt.verify(car_key, r.signature.as_slice())
                || receipt.request != proof_digest
                || receipt.counter <= last
            {
                core.signal(Err(ErrorCode::InvalidSignature.into()));
                return Err(Error::ReceiptInvalid);
            }
            state.vehicle_receipts.insert(vin.clone(), receipt.counter);
            local.write(&state)?;
            true
        }
        None => false,
    };
    let vehicle: Value = serde_json::from_str(&r.state).map_err(|_| Error::Malformed)?;
    if r.code == 2302 {
        // The car's own policy wants the PIN: the reference's flow applies as for the service's.
        core.session().awaiting_pin = Some((Instant::now(), pending));
    } else {
        core.settle_pin();
    }
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
