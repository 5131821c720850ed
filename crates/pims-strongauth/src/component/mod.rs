//! The StrongAuthentication APIs of SDK-API.md §2. Layers, each using only those below it:
//!
//! - here: the component the facade sees, and [`run`], the dispatch from a call to the feature
//!   that serves it;
//! - features, one file each: `account` (status, trusted number, SMS codes), `enrollment`,
//!   `pin_change`, `management` (remove, phone number change, devices), `otp`;
//! - `activation` (the second half of an enrollment, finished on a later call if need be) and
//!   `device` (signatures with the next counter, requests on this device's behalf);
//! - `shared` (the [`Core`] state every call shares), `local` (the vault), `events`;
//! - `request` (calls read into a [`Request`]) and `error` (the component's [`Error`] and the
//!   one place it becomes an app code).

mod account;
mod activation;
mod device;
mod enrollment;
mod error;
mod events;
mod local;
mod management;
mod otp;
mod pin_change;
mod request;
mod shared;
mod vehicle;

use std::sync::Arc;

use async_trait::async_trait;
use pims_core::{Call, Component, ErrorCode, EventSink, PimsError};
use serde_json::Value;

use crate::host::Host;
use crate::StrongAuthConfig;
use error::Error;
use request::{Operation, Request};
use shared::Core;

pub struct StrongAuthentication {
    core: Arc<Core>,
    /// The poll task of the `pims.authentication.enrollment` subscription.
    poll: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl StrongAuthentication {
    pub fn new(config: StrongAuthConfig, host: Host) -> Result<Self, PimsError> {
        Ok(StrongAuthentication {
            core: Arc::new(Core::new(config, host)),
            poll: std::sync::Mutex::new(None),
        })
    }

    fn stop_polling(&self) {
        if let Some(task) = self.poll.lock().expect("not poisoned").take() {
            task.abort();
        }
    }
}

/// From the app's call to the feature that serves it.
async fn run(core: &Core, transaction_id: &str, request: Request) -> Result<Value, Error> {
    let ctx = core.ctx(transaction_id)?;
    match request {
        Request::IsDeviceActivated => account::is_device_activated(core, &ctx).await,
        Request::IsAccountBlocked => account::is_account_blocked(core, &ctx).await,
        Request::TrustedPhoneNumber => account::trusted_phone_number(core, &ctx).await,
        Request::RestorePhoneNumber { restore_code } => {
            management::restore_phone_number(core, &ctx, restore_code).await
        }
        Request::SendSmsCode {
            purpose,
            phone_number,
        } => account::send_sms_code(core, &ctx, purpose, phone_number).await,
        Request::CheckEnrollmentCode { sms_code } => {
            account::check_enrollment_code(core, &ctx, sms_code).await
        }
        Request::AddPhoneNumber {
            phone_number,
            sms_code,
        } => account::add_phone_number(core, &ctx, phone_number, sms_code).await,
        Request::ModifyPhoneNumber {
            phone_number,
            sms_code,
            pin,
        } => management::modify_phone_number(core, &ctx, phone_number, sms_code, pin).await,
        Request::Enroll {
            pin,
            sms_code,
            phone_number,
        } => enrollment::enroll(core, &ctx, pin, sms_code, phone_number).await,
        Request::RemoveEnrollments => management::remove(core, &ctx).await,
        Request::ResetPin { pin, sms_code } => pin_change::reset(core, &ctx, pin, sms_code).await,
        Request::UpdatePin { old, new } => pin_change::update(core, &ctx, old, new).await,
        Request::ListDevices => management::list_devices(core, &ctx).await,
        Request::RevokeDevice { device_id } => {
            management::revoke_device(core, &ctx, &device_id).await
        }
        Request::Otp { pin, audience } => otp::otp(core, &ctx, pin, audience).await,
        Request::SelectVin { vin } => vehicle::select_vin(core, vin),
        Request::VehicleCommand { command, pin } => {
            vehicle::command(core, &ctx, command, pin).await
        }
        Request::PairVehicle { pairing_code } => vehicle::pair(core, &ctx, pairing_code).await,
    }
}

/// The subscription's look at the server: this device's activation, refreshed (the events
/// report what changed).
async fn poll(core: &Core, transaction_id: &str) -> Result<bool, Error> {
    let ctx = core.ctx(transaction_id)?;
    account::activated(core, &ctx).await
}

/// What a finished call tells about the account's lock, for subscribers.
fn after_call(core: &Core, operation: Operation, outcome: &Result<Value, PimsError>) {
    match outcome {
        Err(e) if e.code == ErrorCode::AccountBlocked => core.events.observe(None, Some(true)),
        Ok(_)
            if matches!(
                operation,
                Operation::ResetPin | Operation::UpdatePin | Operation::RemoveEnrollments
            ) =>
        {
            core.events.observe(None, Some(false))
        }
        _ => {}
    }
}

#[async_trait]
impl Component for StrongAuthentication {
    /// Reads the call, runs it, and gives the app the code of its [`Error`], if any.
    async fn call(&self, call: Call) -> Result<Value, PimsError> {
        let request = Request::parse(&call, &self.core.config.default_region)?;
        let operation = request.operation();
        let outcome = run(&self.core, &call.transaction_id, request)
            .await
            .map_err(|e| e.into_app(operation));
        after_call(&self.core, operation, &outcome);
        outcome
    }

    /// `pims.authentication.enrollment`: one RESULT per change of this device's activation or
    /// of the account's PIN lock, seen by this SDK's own calls or by a poll every
    /// `eventPollSeconds`.
    async fn subscribe(&self, call: Call, sink: EventSink) -> Result<(), PimsError> {
        if call.api == "pims.vehicle.signal" {
            // RESULT events come from the car's answers to this SDK's commands.
            self.core.subscribe_signal(sink);
            return Ok(());
        }
        if call.api != "pims.authentication.enrollment" {
            return Err(ErrorCode::ApiNotSupported.into());
        }
        let core = self.core.clone();
        // The starting point: later events report differences from it.
        let activated = poll(&core, &call.transaction_id)
            .await
            .map_err(|e| e.into_app(Operation::Subscribe))?;
        let blocked = core.events.last_blocked();
        core.events.start(sink.clone(), activated, blocked);
        let every = core.config.event_poll;
        let transaction_id = call.transaction_id.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if !sink.is_active() {
                    break;
                }
                match poll(&core, &transaction_id).await {
                    Ok(_) | Err(Error::NoAccessToken) => {}
                    Err(error) => tracing::info!(%transaction_id, %error, "event poll failed"),
                }
            }
        });
        if let Some(old) = self.poll.lock().expect("not poisoned").replace(task) {
            old.abort();
        }
        Ok(())
    }

    async fn release(&self) {
        self.stop_polling();
        self.core.events.stop();
    }
}
