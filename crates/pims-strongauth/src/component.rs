//! The StrongAuthentication APIs of SDK-API.md §2.

use std::sync::Arc;

use async_trait::async_trait;
use pims_core::{Call, Component, ErrorCode, EventSink, Params, PimsError, Secret, Verb};
use pims_proto::{
    transcript, AccountStatus, ActivateDevice, AddPhoneNumber, ApiError, CheckSmsCode,
    DeviceChallenge, DeviceChallengeRequest, DeviceList, DeviceProof, DeviceState,
    EnrollmentFinished, EnrollmentStarted, EnrollmentStatus, FinishEnrollment, ModifyPhoneNumber,
    NewDevice, OtpChallenge, OtpChallengeRequest, OtpIssued, OtpRequest, PinFinish, PinStart,
    PinState, Platform, ResetPin, SendSmsCode, SmsCodeChecked, SmsCodeSent, SmsPurpose,
    StartEnrollment, UpdatePin,
};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::client::{CallError, ServerClient};
use crate::host::{FileVaultKey, Host};
use crate::pin;
use crate::signer;
use crate::vault::{Enrollment, UnconfirmedEnrollment, Vault, VaultError, VaultState};
use crate::{errors, StrongAuthConfig};

const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=8;
const SMS_DIGITS: std::ops::RangeInclusive<usize> = 4..=10;
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
            local: Mutex::new(Local {
                data_directory: config.data_directory.clone(),
                host: host.clone(),
                vault: None,
                state: None,
                events: events.clone(),
            }),
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
    fn ctx(&self, call: &Call) -> Result<Ctx, PimsError> {
        self.ctx_for(&call.transaction_id)
    }

    fn ctx_for(&self, transaction_id: &str) -> Result<Ctx, PimsError> {
        let token = self
            .host
            .tokens
            .access_token()
            .filter(|t| !t.trim().is_empty())
            .ok_or(ErrorCode::NeedBasicAuthentication)?;
        Ok(Ctx {
            token,
            transaction_id: transaction_id.to_owned(),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &Ctx,
        path: &str,
    ) -> Result<T, CallError> {
        self.client.get(path, &ctx.token, &ctx.transaction_id).await
    }

    async fn post<Req: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        ctx: &Ctx,
        path: &str,
        body: &Req,
    ) -> Result<T, CallError> {
        self.client
            .post(path, &ctx.token, &ctx.transaction_id, body)
            .await
    }

    async fn account_status(&self, ctx: &Ctx) -> Result<AccountStatus, PimsError> {
        self.get(ctx, "/v1/account")
            .await
            .map_err(errors::from_call)
    }

    // ---- account ---------------------------------------------------------------------------

    /// The local state after [`Core::refresh`]. An unreadable vault stays 2311 (only `enroll`
    /// and `remove` replace it), so the app learns why it must enroll again.
    async fn is_device_activated(&self, ctx: &Ctx) -> Result<Value, PimsError> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        self.refresh(ctx, &mut local, &mut state).await?;
        let activated = state.enrollment.as_ref().is_some_and(|e| e.activated);
        Ok(json!({ "isDeviceActivated": activated }))
    }

    /// Brings the local state up to date with the server when it answers: a pending activation
    /// is finished, and a device the server no longer knows (revoked, disabled, expired) is
    /// forgotten. Without an answer the local state stands. Shared with the event poll.
    async fn refresh(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
    ) -> Result<(), PimsError> {
        self.resume(ctx, local, state).await;
        let path = match &state.enrollment {
            Some(e) => format!("/v1/account?deviceId={}", e.device_id),
            None => "/v1/account".to_owned(),
        };
        match self.get::<AccountStatus>(ctx, &path).await {
            Ok(status) => {
                self.events
                    .observe(None, Some(status.pin == PinState::Blocked));
                let known = matches!(
                    status.device,
                    Some(DeviceState::Active | DeviceState::Pending)
                );
                if state.enrollment.is_some() && !known {
                    let e = self.forget_device(local, state);
                    if e.code != ErrorCode::DeviceDisabledOrUnknown {
                        return Err(e);
                    }
                    tracing::info!(transaction_id = %ctx.transaction_id, "device no longer known to the server; local enrollment cleared");
                }
                Ok(())
            }
            Err(CallError::Transport(_) | CallError::Unexpected(_)) => Ok(()),
            Err(e) => Err(errors::from_call(e)),
        }
    }

    async fn is_account_blocked(&self, ctx: &Ctx) -> Result<Value, PimsError> {
        let verdict = match self.get::<AccountStatus>(ctx, "/v1/account").await {
            Ok(s) if s.pin == PinState::Blocked => {
                self.events.observe(None, Some(true));
                "PinBlocked"
            }
            Ok(_) => {
                self.events.observe(None, Some(false));
                "NotBlocked"
            }
            Err(CallError::Transport(_) | CallError::Unexpected(_)) => "Unknown",
            Err(e) => return Err(errors::from_call(e)),
        };
        Ok(json!({ "isAccountBlocked": verdict }))
    }

    async fn trusted_phone_number(&self, ctx: &Ctx) -> Result<Value, PimsError> {
        match self.account_status(ctx).await?.phone_number {
            Some(number) => Ok(json!({ "phoneNumber": number })),
            None => Err(ErrorCode::NoPhoneNumber.into()),
        }
    }

    // ---- SMS codes -------------------------------------------------------------------------

    async fn send_sms_code(
        &self,
        ctx: &Ctx,
        purpose: SmsPurpose,
        phone_number: Option<String>,
    ) -> Result<Value, PimsError> {
        let _: SmsCodeSent = self
            .post(
                ctx,
                "/v1/sms-codes",
                &SendSmsCode {
                    purpose,
                    phone_number,
                },
            )
            .await
            .map_err(errors::from_call)?;
        Ok(Value::Null)
    }

    async fn check_enrollment_code(&self, ctx: &Ctx, sms_code: Secret) -> Result<Value, PimsError> {
        let checked: SmsCodeChecked = self
            .post(
                ctx,
                "/v1/sms-codes/check",
                &CheckSmsCode {
                    purpose: SmsPurpose::Enrollment,
                    sms_code: sms_code.expose().to_owned(),
                },
            )
            .await
            .map_err(errors::from_call)?;
        let status = match checked.enrollment_status {
            EnrollmentStatus::NotEnrolled => "NotEnrolled",
            EnrollmentStatus::AlreadyEnrolled => "AlreadyEnrolled",
        };
        Ok(json!({ "status": status }))
    }

    async fn add_phone_number(
        &self,
        ctx: &Ctx,
        phone_number: String,
        sms_code: Secret,
    ) -> Result<Value, PimsError> {
        let () = self
            .post(
                ctx,
                "/v1/phone-number",
                &AddPhoneNumber {
                    phone_number,
                    sms_code: sms_code.expose().to_owned(),
                },
            )
            .await
            .map_err(errors::from_call)?;
        Ok(Value::Null)
    }

    // ---- enrollment ------------------------------------------------------------------------

    /// `enroll` (phone_number `None`) and `enrollWithPhoneNumber`. The first device of an
    /// account registers the PIN; a further device proves it.
    async fn enroll(
        &self,
        ctx: &Ctx,
        pin: Secret,
        sms_code: Secret,
        phone_number: Option<String>,
    ) -> Result<Value, PimsError> {
        let mut local = self.local.lock().await;
        let mut state = local.read_or_replace()?;
        let had_enrollment = state.enrollment.is_some();
        let had_unconfirmed = state.unconfirmed.is_some();
        self.resume(ctx, &mut local, &mut state).await;
        match &state.enrollment {
            // An earlier enroll whose answer was lost has now completed: that is this request.
            Some(e) if e.activated && had_unconfirmed && !had_enrollment => return Ok(Value::Null),
            Some(e) if e.activated => return Err(ErrorCode::ForbiddenOperation.into()),
            Some(_) => return Err(ErrorCode::PostSynchronizationFailed.into()),
            None if state.unconfirmed.is_some() => return Err(ErrorCode::NoServiceAvailable.into()),
            None => {}
        }

        let status = self.account_status(ctx).await?;
        if status.pin == PinState::Blocked {
            return Err(ErrorCode::ForbiddenOperation.into());
        }
        match (&phone_number, &status.phone_number) {
            (Some(_), Some(_)) => return Err(ErrorCode::PhoneNumberAlreadyRegistered.into()),
            (None, None) => return Err(ErrorCode::PriorAuthenticatorRequired.into()),
            _ => {}
        }

        let register = status.pin == PinState::NotSet;
        let (exchange, message) = pin::start(&pin, register);
        let start = StartEnrollment {
            sms_code: sms_code.expose().to_owned(),
            phone_number,
            pin: if register {
                PinStart::Register(message)
            } else {
                PinStart::Login(message)
            },
        };
        let started: EnrollmentStarted = self
            .post(ctx, "/v1/enrollments", &start)
            .await
            .map_err(enrollment_error)?;
        let response = match (register, started.pin) {
            (true, PinStart::Register(r)) | (false, PinStart::Login(r)) => r,
            _ => return Err(ErrorCode::NoServiceAvailable.into()),
        };
        let pin_finish = pin::finish(exchange, &pin, response)
            .await
            .map_err(|_| PimsError::from(ErrorCode::NoServiceAvailable))?;

        let new_key = signer::generate(self.host.device_keys.as_ref()).map_err(errors::host)?;
        let signed = transcript::enrollment(
            &started.enrollment_id,
            started.nonce.as_slice(),
            &new_key.public_key,
            pin_finish.proof(),
        );
        let signature = signer::sign(&new_key.key, self.host.device_keys.as_ref(), &signed)
            .map_err(errors::host)?;
        state.unconfirmed = Some(UnconfirmedEnrollment {
            enrollment_id: started.enrollment_id,
            request: FinishEnrollment {
                idempotency_key: uuid::Uuid::new_v4().to_string(),
                pin: pin_finish,
                device: NewDevice {
                    public_key: new_key.public_key.into(),
                    name: self.config.device_name.clone(),
                    platform: self.config.platform,
                },
                signature: signature.into(),
            },
            key: new_key.key,
        });
        // Written before sending: if the answer is lost, the next call can resend it.
        local.write(&state)?;
        self.confirm_enrollment(ctx, &mut local, &mut state, FINISH_ATTEMPTS)
            .await
    }

    /// Sends the stored enrollment finish (retrying on a lost answer, with the same idempotency
    /// key), records the device, then activates it.
    async fn confirm_enrollment(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
        attempts: u32,
    ) -> Result<Value, PimsError> {
        let Some(unconfirmed) = state.unconfirmed.clone() else {
            return Ok(Value::Null);
        };
        let path = format!("/v1/enrollments/{}/finish", unconfirmed.enrollment_id);
        let mut outcome = Err(CallError::Transport(String::new()));
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
            outcome = self
                .post::<_, EnrollmentFinished>(ctx, &path, &unconfirmed.request)
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
                    key: unconfirmed.key,
                });
                local.write(state)?;
                tracing::info!(transaction_id = %ctx.transaction_id, "device enrolled, activating");
                self.activate(ctx, local, state).await
            }
            Err(CallError::Api(error)) => {
                state.unconfirmed = None;
                local.write(state)?;
                signer::discard(&unconfirmed.key, self.host.device_keys.as_ref());
                Err(enrollment_error(CallError::Api(error)))
            }
            Err(other) => Err(errors::from_call(other)),
        }
    }

    /// Pending → Active. The server has committed the device; if we cannot tell it the local
    /// state is written, that is 2316 and a later call finishes it.
    async fn activate(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
    ) -> Result<Value, PimsError> {
        let Some(enrollment) = state.enrollment.as_mut() else {
            return Err(ErrorCode::InternalStateNotCorrect.into());
        };
        enrollment.counter += 1;
        let (device_id, counter) = (enrollment.device_id.clone(), enrollment.counter);
        let signed =
            transcript::activation(&device_id, enrollment.activation_nonce.as_slice(), counter);
        let key = enrollment.key.clone();
        local.write(state)?;
        let signature =
            signer::sign(&key, self.host.device_keys.as_ref(), &signed).map_err(errors::host)?;
        let outcome: Result<(), CallError> = self
            .post(
                ctx,
                &format!("/v1/devices/{device_id}/activate"),
                &ActivateDevice {
                    counter,
                    signature: signature.into(),
                },
            )
            .await;
        match outcome {
            Ok(()) => {
                if let Some(e) = state.enrollment.as_mut() {
                    e.activated = true;
                }
                local.write(state)?;
                tracing::info!(transaction_id = %ctx.transaction_id, "device activated");
                Ok(Value::Null)
            }
            Err(CallError::Api(ApiError::DeviceUnknown)) => Err(self.forget_device(local, state)),
            Err(CallError::Api(error)) => Err(errors::from_api(error)),
            Err(_) => Err(ErrorCode::PostSynchronizationFailed.into()),
        }
    }

    /// Finishes whatever an earlier call left half done; failures only mean "still pending".
    async fn resume(&self, ctx: &Ctx, local: &mut Local, state: &mut VaultState) {
        let outcome = if state.unconfirmed.is_some() {
            self.confirm_enrollment(ctx, local, state, 1).await
        } else if state.enrollment.as_ref().is_some_and(|e| !e.activated) {
            self.activate(ctx, local, state).await
        } else {
            return;
        };
        if let Err(e) = outcome {
            tracing::info!(transaction_id = %ctx.transaction_id, code = e.code.code(), "pending enrollment not completed yet");
        }
    }

    /// The server no longer knows this device (revoked, expired, disabled as a clone): clear
    /// the local enrollment so the device can enroll again, and report 2312.
    fn forget_device(&self, local: &mut Local, state: &mut VaultState) -> PimsError {
        if let Some(enrollment) = state.enrollment.take() {
            signer::discard(&enrollment.key, self.host.device_keys.as_ref());
        }
        match local.write(state) {
            Ok(()) => ErrorCode::DeviceDisabledOrUnknown.into(),
            Err(e) => e,
        }
    }

    // ---- account management ----------------------------------------------------------------

    /// `enrollment remove`: every enrollment of the account and its PIN, on the server first,
    /// then here. Needs no enrolled device and works while PIN-blocked: it is the way out of
    /// 2317. An unreadable local vault is replaced too.
    async fn remove(&self, ctx: &Ctx) -> Result<Value, PimsError> {
        let mut local = self.local.lock().await;
        let state = local.read_or_replace()?;
        let () = self
            .post(ctx, "/v1/enrollments/remove", &json!({}))
            .await
            .map_err(errors::from_call)?;
        if let Some(e) = &state.enrollment {
            signer::discard(&e.key, self.host.device_keys.as_ref());
        }
        if let Some(u) = &state.unconfirmed {
            signer::discard(&u.key, self.host.device_keys.as_ref());
        }
        local.write(&VaultState::default())?;
        tracing::info!(transaction_id = %ctx.transaction_id, "every enrollment removed");
        Ok(Value::Null)
    }

    /// `pincode reset`: a new PIN, authorised by the `resetPIN` SMS code and this device.
    async fn reset_pin(
        &self,
        ctx: &Ctx,
        pin: Secret,
        sms_code: Secret,
    ) -> Result<Value, PimsError> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        let device_id = self.active_device(ctx, &mut local, &mut state).await?;
        let (exchange, message) = pin::start(&pin, true);
        let request = DeviceChallengeRequest {
            login: None,
            register: Some(message),
        };
        let challenge = self
            .device_challenge(ctx, &mut local, &mut state, &device_id, &request)
            .await?;
        let Some(response) = challenge.register.clone() else {
            return Err(ErrorCode::NoServiceAvailable.into());
        };
        let registration = match pin::finish(exchange, &pin, response).await {
            Ok(PinFinish::Register(upload)) => upload,
            _ => return Err(ErrorCode::NoServiceAvailable.into()),
        };
        let proof = self.sign_operation(
            &mut local,
            &mut state,
            transcript::PIN_RESET,
            &challenge,
            registration.as_slice(),
        )?;
        let request = ResetPin {
            proof,
            sms_code: sms_code.expose().to_owned(),
            registration,
        };
        let () = self
            .device_post(ctx, &mut local, &mut state, "/v1/pin/reset", &request)
            .await?;
        tracing::info!(transaction_id = %ctx.transaction_id, "PIN reset");
        Ok(Value::Null)
    }

    /// `pincode update`: one exchange proves the old PIN (OPAQUE login) and registers the new
    /// one, both bound by this device's signature. The PIN never leaves the device, so "new
    /// equals current" is decided here: once the server has accepted the old PIN as the
    /// current one, the new PIN equals the current one exactly when it equals the old one.
    async fn update_pin(&self, ctx: &Ctx, old: Secret, new: Secret) -> Result<Value, PimsError> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        let device_id = self.active_device(ctx, &mut local, &mut state).await?;
        let same = old.expose() == new.expose();
        let (login, login_message) = pin::start(&old, false);
        let register = (!same).then(|| pin::start(&new, true));
        let request = DeviceChallengeRequest {
            login: Some(login_message),
            register: register.as_ref().map(|(_, m)| m.clone()),
        };
        let challenge = self
            .device_challenge(ctx, &mut local, &mut state, &device_id, &request)
            .await?;
        let Some(login_response) = challenge.login.clone() else {
            return Err(ErrorCode::NoServiceAvailable.into());
        };
        let login = pin::finish(login, &old, login_response)
            .await
            .map_err(|_| PimsError::from(ErrorCode::NoServiceAvailable))?;
        // A wrong old PIN is reported (and counted) without registering anything.
        let registration = match (&login, register, challenge.register.clone()) {
            (PinFinish::Login(_), Some((exchange, _)), Some(response)) => {
                match pin::finish(exchange, &new, response).await {
                    Ok(PinFinish::Register(upload)) => Some(upload),
                    _ => return Err(ErrorCode::NoServiceAvailable.into()),
                }
            }
            (PinFinish::Login(_), Some(_), None) => {
                return Err(ErrorCode::NoServiceAvailable.into())
            }
            _ => None,
        };
        let proven = matches!(login, PinFinish::Login(_));
        let mut request = UpdatePin {
            proof: DeviceProof {
                challenge_id: String::new(),
                counter: 0,
                signature: Default::default(),
            },
            login,
            registration,
        };
        request.proof = self.sign_operation(
            &mut local,
            &mut state,
            transcript::PIN_UPDATE,
            &challenge,
            &request.signed_payload(),
        )?;
        let () = self
            .device_post(ctx, &mut local, &mut state, "/v1/pin/update", &request)
            .await?;
        if same && proven {
            return Err(ErrorCode::NewPinEqualsPrevious.into());
        }
        tracing::info!(transaction_id = %ctx.transaction_id, "PIN updated");
        Ok(Value::Null)
    }

    /// `smscode modifyPhoneNumber`: the number certified by a `phoneNumberCertification` code
    /// becomes the trusted one; this device signs the change.
    async fn modify_phone_number(
        &self,
        ctx: &Ctx,
        phone_number: String,
        sms_code: Secret,
    ) -> Result<Value, PimsError> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        let device_id = self.active_device(ctx, &mut local, &mut state).await?;
        let request = DeviceChallengeRequest {
            login: None,
            register: None,
        };
        let challenge = self
            .device_challenge(ctx, &mut local, &mut state, &device_id, &request)
            .await?;
        let proof = self.sign_operation(
            &mut local,
            &mut state,
            transcript::PHONE_NUMBER_MODIFY,
            &challenge,
            phone_number.as_bytes(),
        )?;
        let request = ModifyPhoneNumber {
            proof,
            phone_number,
            sms_code: sms_code.expose().to_owned(),
        };
        let () = self
            .device_post(
                ctx,
                &mut local,
                &mut state,
                "/v1/phone-number/modify",
                &request,
            )
            .await?;
        tracing::info!(transaction_id = %ctx.transaction_id, "trusted phone number modified");
        Ok(Value::Null)
    }

    /// GET `pims.authentication.devices`.
    async fn list_devices(&self, ctx: &Ctx) -> Result<Value, PimsError> {
        let this_device = {
            let mut local = self.local.lock().await;
            local
                .read()
                .ok()
                .and_then(|s| s.enrollment.map(|e| e.device_id))
        };
        let list: DeviceList = self
            .get(ctx, "/v1/devices")
            .await
            .map_err(errors::from_call)?;
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
                    "isThisDevice": this_device.as_deref() == Some(d.device_id.as_str()),
                })
            })
            .collect();
        Ok(json!({ "devices": devices }))
    }

    /// SET `pims.authentication.devices` `action=remove`: revokes one device of the account
    /// (this one included, which then forgets its enrollment).
    async fn revoke_device(&self, ctx: &Ctx, device_id: &str) -> Result<Value, PimsError> {
        let mut local = self.local.lock().await;
        let path = format!("/v1/devices/{}/revoke", url_segment(device_id));
        let () = self
            .post(ctx, &path, &json!({}))
            .await
            .map_err(errors::from_call)?;
        if let Ok(mut state) = local.read() {
            if state
                .enrollment
                .as_ref()
                .is_some_and(|e| e.device_id == device_id)
            {
                let _ = self.forget_device(&mut local, &mut state);
            }
        }
        tracing::info!(transaction_id = %ctx.transaction_id, "device revoked");
        Ok(Value::Null)
    }

    /// The id of this device's Active enrollment, which the account-management operations need.
    async fn active_device(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
    ) -> Result<String, PimsError> {
        self.resume(ctx, local, state).await;
        match &state.enrollment {
            Some(e) if e.activated => Ok(e.device_id.clone()),
            Some(_) => Err(ErrorCode::PostSynchronizationFailed.into()),
            None => Err(ErrorCode::PriorAuthenticatorRequired.into()),
        }
    }

    async fn device_challenge(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
        device_id: &str,
        request: &DeviceChallengeRequest,
    ) -> Result<DeviceChallenge, PimsError> {
        let path = format!("/v1/devices/{device_id}/challenges");
        self.device_post(ctx, local, state, &path, request).await
    }

    /// A request on behalf of this device: a server that no longer knows it makes it forget
    /// its enrollment (2312), so it can enroll again.
    async fn device_post<Req: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
        path: &str,
        body: &Req,
    ) -> Result<T, PimsError> {
        match self.post(ctx, path, body).await {
            Ok(v) => Ok(v),
            Err(CallError::Api(ApiError::DeviceUnknown)) => Err(self.forget_device(local, state)),
            Err(e) => Err(errors::from_call(e)),
        }
    }

    /// Signs `operation` over a device challenge with the next counter, written to the vault
    /// before use so a counter is never reused.
    fn sign_operation(
        &self,
        local: &mut Local,
        state: &mut VaultState,
        operation: &str,
        challenge: &DeviceChallenge,
        payload: &[u8],
    ) -> Result<DeviceProof, PimsError> {
        let Some(enrollment) = state.enrollment.as_mut() else {
            return Err(ErrorCode::InternalStateNotCorrect.into());
        };
        enrollment.counter += 1;
        let (device_id, counter, key) = (
            enrollment.device_id.clone(),
            enrollment.counter,
            enrollment.key.clone(),
        );
        local.write(state)?;
        let signed = transcript::device_operation(
            operation,
            &challenge.challenge_id,
            challenge.nonce.as_slice(),
            &device_id,
            counter,
            payload,
        );
        let signature =
            signer::sign(&key, self.host.device_keys.as_ref(), &signed).map_err(errors::host)?;
        Ok(DeviceProof {
            challenge_id: challenge.challenge_id.clone(),
            counter,
            signature: signature.into(),
        })
    }

    /// Android without `smsCode`: the host's SMS reader, for at most the configured timeout.
    async fn sms_code_from_host(&self) -> Result<Secret, PimsError> {
        let provider = match (&self.host.sms_codes, self.config.platform) {
            (Some(p), Platform::Android) => p.clone(),
            _ => return Err(PimsError::missing("smsCode")),
        };
        let timeout = self.config.sms_code_timeout;
        let read = tokio::task::spawn_blocking(move || provider.sms_code(timeout));
        let code = match tokio::time::timeout(timeout, read).await {
            Ok(Ok(Some(code))) => zeroize::Zeroizing::new(code),
            _ => {
                tracing::info!("no SMS code from the host's reader in time");
                return Err(PimsError::missing("smsCode"));
            }
        };
        let code = code.trim();
        if !SMS_DIGITS.contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PimsError::invalid("smsCode"));
        }
        Ok(Secret::new(code.to_owned()))
    }

    // ---- one-time proofs -------------------------------------------------------------------

    async fn otp(&self, ctx: &Ctx, pin: Option<Secret>) -> Result<Value, PimsError> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        self.resume(ctx, &mut local, &mut state).await;
        let device_id = match &state.enrollment {
            Some(e) if e.activated => e.device_id.clone(),
            Some(_) => return Err(ErrorCode::PostSynchronizationFailed.into()),
            None => return Err(ErrorCode::PriorAuthenticatorRequired.into()),
        };

        let exchange = pin.as_ref().map(|p| pin::start(p, false));
        let request = OtpChallengeRequest {
            device_id: device_id.clone(),
            pin: exchange.as_ref().map(|(_, message)| message.clone()),
        };
        let challenge: OtpChallenge = match self.post(ctx, "/v1/otp/challenges", &request).await {
            Ok(c) => c,
            Err(CallError::Api(ApiError::DeviceUnknown)) => {
                return Err(self.forget_device(&mut local, &mut state))
            }
            Err(e) => return Err(errors::from_call(e)),
        };
        let pin_finish = match (exchange, pin, challenge.pin) {
            (Some((exchange, _)), Some(pin), Some(response)) => Some(
                pin::finish(exchange, &pin, response)
                    .await
                    .map_err(|_| PimsError::from(ErrorCode::NoServiceAvailable))?,
            ),
            (None, None, None) => None,
            _ => return Err(ErrorCode::NoServiceAvailable.into()),
        };

        let enrollment = state.enrollment.as_mut().expect("checked above");
        enrollment.counter += 1;
        let counter = enrollment.counter;
        let key = enrollment.key.clone();
        local.write(&state)?;
        let proof = pin_finish.as_ref().map(|p| p.proof()).unwrap_or_default();
        let signed = transcript::otp(
            &challenge.challenge_id,
            challenge.nonce.as_slice(),
            &device_id,
            counter,
            proof,
        );
        let signature =
            signer::sign(&key, self.host.device_keys.as_ref(), &signed).map_err(errors::host)?;
        let request = OtpRequest {
            challenge_id: challenge.challenge_id,
            counter,
            pin: pin_finish,
            signature: signature.into(),
        };
        match self.post::<_, OtpIssued>(ctx, "/v1/otp", &request).await {
            Ok(issued) => {
                Ok(json!({ "otp": issued.otp, "expiresInSeconds": issued.expires_in_seconds }))
            }
            Err(CallError::Api(ApiError::DeviceUnknown)) => {
                Err(self.forget_device(&mut local, &mut state))
            }
            Err(e) => Err(errors::from_call(e)),
        }
    }
}

/// Enrollment-specific meanings: a missing trusted number means "activate a prior
/// authenticator first" rather than "no phone number".
fn enrollment_error(error: CallError) -> PimsError {
    match error {
        CallError::Api(ApiError::NoPhoneNumber) => ErrorCode::PriorAuthenticatorRequired.into(),
        other => errors::from_call(other),
    }
}

/// `phoneNumber` as digits with an optional leading `+` (spaces, dots, dashes and brackets
/// ignored), or an integer; normalised to `+<digits>`. The server validates it fully.
fn phone_number(params: &Params) -> Result<String, PimsError> {
    const NAME: &str = "phoneNumber";
    let raw = match params.get(NAME) {
        None => return Err(PimsError::missing(NAME)),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(Value::String(s)) if s.trim().is_empty() => return Err(PimsError::missing(NAME)),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(PimsError::invalid(NAME)),
    };
    let compact: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PimsError::invalid(NAME));
    }
    Ok(format!("+{digits}"))
}

/// `action`, or `type` where the reference uses that name for the same selector.
fn selector(params: &Params) -> Result<&str, PimsError> {
    match params.optional_str("action")? {
        Some(action) => Ok(action),
        None => params
            .optional_str("type")?
            .ok_or_else(|| PimsError::missing("action")),
    }
}

impl Core {
    async fn dispatch(&self, call: &Call) -> Result<Value, PimsError> {
        let p = &call.params;
        match (call.verb, call.api.as_str()) {
            (Verb::Get, "pims.authentication.account") => {
                p.required_choice("actionType", &["strong"])?;
                let kind = p.required_choice("type", &["isDeviceActivated", "isAccountBlocked"])?;
                let ctx = self.ctx(call)?;
                if kind == "isDeviceActivated" {
                    self.is_device_activated(&ctx).await
                } else {
                    self.is_account_blocked(&ctx).await
                }
            }
            (Verb::Get, "pims.authentication.trustedphonenumber") => {
                self.trusted_phone_number(&self.ctx(call)?).await
            }
            (Verb::Get, "pims.authentication.smscode") => {
                match p.required_choice(
                    "type",
                    &["phoneNumberCertification", "enrollment", "resetPIN"],
                )? {
                    "phoneNumberCertification" => {
                        let number = phone_number(p)?;
                        let ctx = self.ctx(call)?;
                        self.send_sms_code(&ctx, SmsPurpose::PhoneCertification, Some(number))
                            .await
                    }
                    "resetPIN" => {
                        self.send_sms_code(&self.ctx(call)?, SmsPurpose::ResetPin, None)
                            .await
                    }
                    _ => {
                        self.send_sms_code(&self.ctx(call)?, SmsPurpose::Enrollment, None)
                            .await
                    }
                }
            }
            (Verb::Set, "pims.authentication.smscode") => match selector(p)? {
                "enrollment" => {
                    let code = p.required_digits("smsCode", SMS_DIGITS)?;
                    self.check_enrollment_code(&self.ctx(call)?, code).await
                }
                "addPhoneNumber" => {
                    let code = p.required_digits("smsCode", SMS_DIGITS)?;
                    let number = phone_number(p)?;
                    self.add_phone_number(&self.ctx(call)?, number, code).await
                }
                "modifyPhoneNumber" => {
                    let code = p.required_digits("smsCode", SMS_DIGITS)?;
                    let number = phone_number(p)?;
                    self.modify_phone_number(&self.ctx(call)?, number, code)
                        .await
                }
                _ => Err(PimsError::invalid("action")),
            },
            (Verb::Set, "pims.authentication.enrollment") => {
                let action = p.required_choice(
                    "action",
                    &[
                        "enroll",
                        "enrollWithPhoneNumber",
                        "enrollmentWithPhoneNumber",
                        "remove",
                    ],
                )?;
                if action == "remove" {
                    return self.remove(&self.ctx(call)?).await;
                }
                let pin = p.required_digits("pinCode", PIN_DIGITS)?;
                let code = p.optional_digits("smsCode", SMS_DIGITS)?;
                let number = match action {
                    "enroll" => None,
                    _ => Some(phone_number(p)?),
                };
                let ctx = self.ctx(call)?;
                let code = match code {
                    Some(code) => code,
                    // Only `enroll` goes to the trusted number, which the SMS reader watches.
                    None if number.is_none() => self.sms_code_from_host().await?,
                    None => return Err(PimsError::missing("smsCode")),
                };
                self.enroll(&ctx, pin, code, number).await
            }
            (Verb::Set, "pims.authentication.pincode") => {
                match p.required_choice("action", &["reset", "update"])? {
                    "reset" => {
                        let pin = p.required_digits("pinCode", PIN_DIGITS)?;
                        let code = p.required_digits("smsCode", SMS_DIGITS)?;
                        self.reset_pin(&self.ctx(call)?, pin, code).await
                    }
                    _ => {
                        let old = p.required_digits("oldPIN", PIN_DIGITS)?;
                        let new = p.required_digits("newPIN", PIN_DIGITS)?;
                        self.update_pin(&self.ctx(call)?, old, new).await
                    }
                }
            }
            (Verb::Get, "pims.authentication.devices") => self.list_devices(&self.ctx(call)?).await,
            (Verb::Set, "pims.authentication.devices") => {
                p.required_choice("action", &["remove"])?;
                let device_id = p.required_str("deviceId")?.trim();
                if device_id.is_empty() || device_id.len() > 128 {
                    return Err(PimsError::invalid("deviceId"));
                }
                self.revoke_device(&self.ctx(call)?, device_id).await
            }
            (Verb::Get, "pims.authentication.otp") => {
                let pin = match p.required_choice("action", &["withPIN", "withoutPIN"])? {
                    "withPIN" => Some(p.required_digits("pinCode", PIN_DIGITS)?),
                    _ => None,
                };
                self.otp(&self.ctx(call)?, pin).await
            }
            _ => Err(ErrorCode::ApiNotSupported.into()),
        }
    }

    /// What a finished call tells about the account's lock, for subscribers.
    fn after_call(&self, call: &Call, outcome: &Result<Value, PimsError>) {
        match outcome {
            Err(e) if e.code == ErrorCode::AccountBlocked => self.events.observe(None, Some(true)),
            Ok(_)
                if call.api == "pims.authentication.pincode"
                    || (call.api == "pims.authentication.enrollment"
                        && call.params.optional_str("action").ok().flatten() == Some("remove")) =>
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
        let outcome = self.core.dispatch(&call).await;
        self.core.after_call(&call, &outcome);
        outcome
    }

    /// `pims.authentication.enrollment`: one RESULT per change of this device's activation or
    /// of the account's PIN lock, seen by this SDK's own calls or by a poll every
    /// `eventPollSeconds`.
    async fn subscribe(&self, call: Call, sink: EventSink) -> Result<(), PimsError> {
        if call.api != "pims.authentication.enrollment" {
            return Err(ErrorCode::ApiNotSupported.into());
        }
        let core = self.core.clone();
        let ctx = core.ctx(&call)?;
        // The starting point: later events report differences from it.
        let (activated, blocked) = {
            let mut local = core.local.lock().await;
            let mut state = local.read()?;
            core.refresh(&ctx, &mut local, &mut state).await?;
            let activated = state.enrollment.as_ref().is_some_and(|e| e.activated);
            (activated, core.events.last_blocked())
        };
        core.events.start(sink.clone(), activated, blocked);
        let every = core.config.event_poll;
        let transaction_id = call.transaction_id.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if !sink.is_active() {
                    break;
                }
                let Ok(ctx) = core.ctx_for(&transaction_id) else {
                    continue;
                };
                let mut local = core.local.lock().await;
                if let Ok(mut state) = local.read() {
                    if let Err(e) = core.refresh(&ctx, &mut local, &mut state).await {
                        tracing::info!(transaction_id = %ctx.transaction_id, code = e.code.code(), "event poll failed");
                    }
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

/// Subscription state: the last delivered view of this device and account, and where to send
/// changes. Every change is compared and sent under one lock, so each is delivered once.
#[derive(Default)]
struct Events {
    inner: std::sync::Mutex<EventsState>,
}

#[derive(Default)]
struct EventsState {
    sink: Option<EventSink>,
    activated: Option<bool>,
    /// `None` until the server has answered once.
    blocked: Option<bool>,
}

impl Events {
    fn start(&self, sink: EventSink, activated: bool, blocked: Option<bool>) {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.sink = Some(sink);
        inner.activated = Some(activated);
        inner.blocked = blocked;
    }

    fn stop(&self) {
        self.inner.lock().expect("not poisoned").sink = None;
    }

    fn last_blocked(&self) -> Option<bool> {
        self.inner.lock().expect("not poisoned").blocked
    }

    /// Records what a call or a poll learned (`None`: nothing about that part) and delivers one
    /// event per change.
    fn observe(&self, activated: Option<bool>, blocked: Option<bool>) {
        let mut inner = self.inner.lock().expect("not poisoned");
        let mut changes = Vec::new();
        if let Some(now) = activated {
            if inner.activated.is_some_and(|before| before != now) {
                changes.push(if now {
                    "deviceActivated"
                } else {
                    "deviceDeactivated"
                });
            }
            inner.activated = Some(now);
        }
        if let Some(now) = blocked {
            if inner.blocked.is_some_and(|before| before != now) {
                changes.push(if now {
                    "accountBlocked"
                } else {
                    "accountUnblocked"
                });
            }
            inner.blocked = Some(now);
        }
        let Some(sink) = inner.sink.clone() else {
            return;
        };
        if !sink.is_active() {
            inner.sink = None;
            return;
        }
        for event in changes {
            sink.send(Ok(json!({
                "event": event,
                "isDeviceActivated": inner.activated.unwrap_or(false),
                "isAccountBlocked": match inner.blocked {
                    Some(true) => "PinBlocked",
                    Some(false) => "NotBlocked",
                    None => "Unknown",
                },
            })));
        }
    }
}

/// A device id as one path segment: ids are UUIDs, anything else is percent-encoded.
fn url_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The vault, opened on first use (so a failing key store is a 2311 on a call, not a crash at
/// `initialize`), and the last state read or written.
struct Local {
    data_directory: std::path::PathBuf,
    host: Host,
    vault: Option<Vault>,
    state: Option<VaultState>,
    /// Told of every change of this device's activation.
    events: Arc<Events>,
}

impl Local {
    fn vault(&mut self) -> Result<&Vault, PimsError> {
        if self.vault.is_none() {
            let key = match &self.host.vault_key {
                Some(store) => store.load_or_create(),
                None => {
                    use crate::host::VaultKeyStore;
                    FileVaultKey::new(&self.data_directory).load_or_create()
                }
            }
            .map_err(errors::host)?;
            self.vault = Some(Vault::new(&self.data_directory, key));
        }
        Ok(self.vault.as_ref().expect("just set"))
    }

    fn read(&mut self) -> Result<VaultState, PimsError> {
        if let Some(state) = &self.state {
            return Ok(state.clone());
        }
        let state = self.vault()?.read().map_err(errors::vault)?;
        self.state = Some(state.clone());
        Ok(state)
    }

    /// For `enroll` and `remove`, which replace the local state anyway: a vault that cannot
    /// be decrypted (vault key lost or changed) reads as empty, since its keys are unusable.
    /// It is not cached, so other calls keep reporting 2311 until it is replaced.
    fn read_or_replace(&mut self) -> Result<VaultState, PimsError> {
        if let Some(state) = &self.state {
            return Ok(state.clone());
        }
        match self.vault()?.read() {
            Ok(state) => {
                self.state = Some(state.clone());
                Ok(state)
            }
            Err(VaultError::Unreadable) => {
                tracing::warn!("unreadable local enrollment state will be replaced");
                Ok(VaultState::default())
            }
            Err(e) => Err(errors::vault(e)),
        }
    }

    fn write(&mut self, state: &VaultState) -> Result<(), PimsError> {
        self.vault()?.write(state).map_err(errors::vault)?;
        self.state = Some(state.clone());
        let activated = state.enrollment.as_ref().is_some_and(|e| e.activated);
        self.events.observe(Some(activated), None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_normalised_or_rejected() {
        let p = |v: Value| Params::from_value(json!({ "phoneNumber": v })).unwrap();
        assert_eq!(
            phone_number(&p(json!("+33 6 12-34.56 78"))).unwrap(),
            "+33612345678"
        );
        assert_eq!(
            phone_number(&p(json!(33612345678u64))).unwrap(),
            "+33612345678"
        );
        assert_eq!(
            phone_number(&p(json!("+33 abc"))).unwrap_err().label,
            "Invalid phoneNumber parameter"
        );
        assert_eq!(
            phone_number(&p(json!(" "))).unwrap_err().label,
            "Missing phoneNumber parameter"
        );
    }
}
