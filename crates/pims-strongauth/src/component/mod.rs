//! The StrongAuthentication APIs of SDK-API.md §2: dispatch here, one file per group of APIs.

mod account;
mod enrollment;
mod error;
mod events;
mod local;
mod management;
mod otp;
mod request;

use error::Error;
use events::Events;
use local::Local;
use request::{Operation, PhoneNumber, Request, SMS_DIGITS};

use std::sync::Arc;

use async_trait::async_trait;
use pims_core::{Call, Component, ErrorCode, EventSink, PimsError, Secret};
use pims_device::Stretching;
use pims_proto::endpoint::{self as ep, Empty, Endpoint};
use pims_proto::{
    transcript, AccountStatus, AddPhoneNumber, ApiError, Bytes, CheckSmsCode, DeviceChallenge,
    DeviceChallengeRequest, DeviceProof, DeviceState, EnrollmentStatus, FinishPinChange,
    LoginProof, ModifyPhoneNumber, NewDevice, OtpChallengeRequest, PinAuthorization,
    PinChangeStarted, PinFinish, PinState, Platform, SendSmsCode, SmsPurpose, StartPinChange,
};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::client::{CallError, ServerClient};
use crate::host::{FileVaultKey, Host};
use crate::pin;
use crate::signer;
use crate::vault::{Enrollment, UnconfirmedEnrollment, Vault, VaultError, VaultState};
use crate::StrongAuthConfig;

/// Attempts, within the enroll call, to deliver a finish whose answer was lost (safe: the
/// idempotency key). A later call that resumes it tries once, so it never stalls on a dead link.
const FINISH_ATTEMPTS: u32 = 3;

pub struct StrongAuthentication {
    core: Arc<Core>,
    /// The poll task of the `pims.authentication.enrollment` subscription.
    poll: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The component's state and APIs, shared with the subscription's poll task.
struct Core {
    config: StrongAuthConfig,
    host: Host,
    client: ServerClient,
    /// The vault and its cached state. Held for the whole of any call that reads or changes the
    /// enrollment, so one device never runs two enrollment steps at once.
    local: Mutex<Local>,
    events: Arc<Events>,
}

/// Per-call context: who is calling and how to join logs.
struct Ctx {
    token: String,
    transaction_id: String,
}

impl StrongAuthentication {
    pub fn new(config: StrongAuthConfig, host: Host) -> Result<Self, PimsError> {
        let client = ServerClient::new(&config.server_url, config.request_timeout);
        let events = Arc::new(Events::default());
        let core = Core {
            local: Mutex::new(Local::new(
                config.data_directory.clone(),
                host.clone(),
                events.clone(),
            )),
            config,
            host,
            client,
            events,
        };
        Ok(StrongAuthentication {
            core: Arc::new(core),
            poll: std::sync::Mutex::new(None),
        })
    }

    fn stop_polling(&self) {
        if let Some(task) = self.poll.lock().expect("not poisoned").take() {
            task.abort();
        }
    }
}

impl Core {
    fn ctx(&self, transaction_id: &str) -> Result<Ctx, Error> {
        let token = self
            .host
            .tokens
            .access_token()
            .filter(|t| !t.trim().is_empty())
            .ok_or(Error::NoAccessToken)?;
        Ok(Ctx {
            token,
            transaction_id: transaction_id.to_owned(),
        })
    }

    /// Operation `E` of the endpoint table, its path parameters filled by `values`.
    async fn call<E: Endpoint>(
        &self,
        ctx: &Ctx,
        values: &[&str],
        body: &E::Request,
    ) -> Result<E::Response, CallError> {
        self.client
            .call::<E>(values, None, &ctx.token, &ctx.transaction_id, body)
            .await
    }

    async fn account_status(&self, ctx: &Ctx) -> Result<AccountStatus, Error> {
        Ok(self.call::<ep::Account>(ctx, &[], &Empty {}).await?)
    }
}

impl Core {
    /// Reads the call, runs it, and gives the app its code: the one place an [`Error`]
    /// becomes a [`PimsError`].
    async fn dispatch(&self, call: &Call) -> Result<Value, PimsError> {
        let request = Request::parse(call, &self.config.default_region)?;
        let operation = request.operation();
        let outcome = self
            .run(&call.transaction_id, request)
            .await
            .map_err(|e| e.into_app(operation));
        self.after_call(operation, &outcome);
        outcome
    }

    /// From the app's call to the feature that serves it.
    async fn run(&self, transaction_id: &str, request: Request) -> Result<Value, Error> {
        let ctx = self.ctx(transaction_id)?;
        match request {
            Request::IsDeviceActivated => self.is_device_activated(&ctx).await,
            Request::IsAccountBlocked => self.is_account_blocked(&ctx).await,
            Request::TrustedPhoneNumber => self.trusted_phone_number(&ctx).await,
            Request::SendSmsCode {
                purpose,
                phone_number,
            } => self.send_sms_code(&ctx, purpose, phone_number).await,
            Request::CheckEnrollmentCode { sms_code } => {
                self.check_enrollment_code(&ctx, sms_code).await
            }
            Request::AddPhoneNumber {
                phone_number,
                sms_code,
            } => self.add_phone_number(&ctx, phone_number, sms_code).await,
            Request::ModifyPhoneNumber {
                phone_number,
                sms_code,
                pin,
            } => {
                self.modify_phone_number(&ctx, phone_number, sms_code, pin)
                    .await
            }
            Request::Enroll {
                pin,
                sms_code,
                phone_number,
            } => self.enroll(&ctx, pin, sms_code, phone_number).await,
            Request::RemoveEnrollments => self.remove(&ctx).await,
            Request::ResetPin { pin, sms_code } => self.reset_pin(&ctx, pin, sms_code).await,
            Request::UpdatePin { old, new } => self.update_pin(&ctx, old, new).await,
            Request::ListDevices => self.list_devices(&ctx).await,
            Request::RevokeDevice { device_id } => self.revoke_device(&ctx, &device_id).await,
            Request::Otp { pin, audience } => self.otp(&ctx, pin, audience).await,
        }
    }

    /// The subscription's look at the server: this device's activation, refreshed (events
    /// report what changed).
    async fn poll(&self, transaction_id: &str) -> Result<bool, Error> {
        let ctx = self.ctx(transaction_id)?;
        self.activation(&ctx).await
    }

    /// What a finished call tells about the account's lock, for subscribers.
    fn after_call(&self, operation: Operation, outcome: &Result<Value, PimsError>) {
        match outcome {
            Err(e) if e.code == ErrorCode::AccountBlocked => self.events.observe(None, Some(true)),
            Ok(_)
                if matches!(
                    operation,
                    Operation::ResetPin | Operation::UpdatePin | Operation::RemoveEnrollments
                ) =>
            {
                self.events.observe(None, Some(false))
            }
            _ => {}
        }
    }
}

#[async_trait]
impl Component for StrongAuthentication {
    async fn call(&self, call: Call) -> Result<Value, PimsError> {
        self.core.dispatch(&call).await
    }

    /// `pims.authentication.enrollment`: one RESULT per change of this device's activation or
    /// of the account's PIN lock, seen by this SDK's own calls or by a poll every
    /// `eventPollSeconds`.
    async fn subscribe(&self, call: Call, sink: EventSink) -> Result<(), PimsError> {
        if call.api != "pims.authentication.enrollment" {
            return Err(ErrorCode::ApiNotSupported.into());
        }
        let core = self.core.clone();
        // The starting point: later events report differences from it.
        let activated = core
            .poll(&call.transaction_id)
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
                match core.poll(&transaction_id).await {
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
