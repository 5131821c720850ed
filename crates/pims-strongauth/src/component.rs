//! The StrongAuthentication APIs of SDK-API.md §2.

use async_trait::async_trait;
use pims_core::{Call, Component, ErrorCode, Params, PimsError, Secret, Verb};
use pims_proto::{
    transcript, AccountStatus, ActivateDevice, AddPhoneNumber, ApiError, CheckSmsCode,
    EnrollmentFinished, EnrollmentStarted, EnrollmentStatus, FinishEnrollment, NewDevice,
    OtpChallenge, OtpChallengeRequest, OtpIssued, OtpRequest, PinStart, PinState, SendSmsCode,
    SmsCodeChecked, SmsCodeSent, SmsPurpose, StartEnrollment,
};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::client::{CallError, ServerClient};
use crate::host::{FileVaultKey, Host};
use crate::pin;
use crate::signer;
use crate::vault::{Enrollment, UnconfirmedEnrollment, Vault, VaultState};
use crate::{errors, StrongAuthConfig};

const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=8;
const SMS_DIGITS: std::ops::RangeInclusive<usize> = 4..=10;
/// Attempts, within the enroll call, to deliver a finish whose answer was lost (safe: the
/// idempotency key). A later call that resumes it tries once, so it never stalls on a dead link.
const FINISH_ATTEMPTS: u32 = 3;

pub struct StrongAuthentication {
    config: StrongAuthConfig,
    host: Host,
    client: ServerClient,
    /// The vault and its cached state. Held for the whole of any call that reads or changes the
    /// enrollment, so one device never runs two enrollment steps at once.
    local: Mutex<Local>,
}

/// Per-call context: who is calling and how to join logs.
struct Ctx {
    token: String,
    transaction_id: String,
}

impl StrongAuthentication {
    pub fn new(config: StrongAuthConfig, host: Host) -> Result<Self, PimsError> {
        let client = ServerClient::new(&config.server_url, config.request_timeout);
        Ok(StrongAuthentication {
            local: Mutex::new(Local {
                data_directory: config.data_directory.clone(),
                host: host.clone(),
                vault: None,
                state: None,
            }),
            config,
            host,
            client,
        })
    }

    fn ctx(&self, call: &Call) -> Result<Ctx, PimsError> {
        let token = self
            .host
            .tokens
            .access_token()
            .filter(|t| !t.trim().is_empty())
            .ok_or(ErrorCode::NeedBasicAuthentication)?;
        Ok(Ctx {
            token,
            transaction_id: call.transaction_id.clone(),
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

    async fn is_device_activated(&self, ctx: &Ctx) -> Result<Value, PimsError> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        self.resume(ctx, &mut local, &mut state).await;
        let activated = state.enrollment.as_ref().is_some_and(|e| e.activated);
        Ok(json!({ "isDeviceActivated": activated }))
    }

    async fn is_account_blocked(&self, ctx: &Ctx) -> Result<Value, PimsError> {
        let verdict = match self.get::<AccountStatus>(ctx, "/v1/account").await {
            Ok(s) if s.pin == PinState::Blocked => "PinBlocked",
            Ok(_) => "NotBlocked",
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
        let mut state = local.read()?;
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
            Err(CallError::Api(ApiError::DeviceUnknown)) => self.forget_device(local, state),
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
    fn forget_device(&self, local: &mut Local, state: &mut VaultState) -> Result<Value, PimsError> {
        if let Some(enrollment) = state.enrollment.take() {
            signer::discard(&enrollment.key, self.host.device_keys.as_ref());
        }
        local.write(state)?;
        Err(ErrorCode::DeviceDisabledOrUnknown.into())
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
                return self.forget_device(&mut local, &mut state)
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
                self.forget_device(&mut local, &mut state)
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

#[async_trait]
impl Component for StrongAuthentication {
    async fn call(&self, call: Call) -> Result<Value, PimsError> {
        let p = &call.params;
        match (call.verb, call.api.as_str()) {
            (Verb::Get, "pims.authentication.account") => {
                p.required_choice("actionType", &["strong"])?;
                let kind = p.required_choice("type", &["isDeviceActivated", "isAccountBlocked"])?;
                let ctx = self.ctx(&call)?;
                if kind == "isDeviceActivated" {
                    self.is_device_activated(&ctx).await
                } else {
                    self.is_account_blocked(&ctx).await
                }
            }
            (Verb::Get, "pims.authentication.trustedphonenumber") => {
                self.trusted_phone_number(&self.ctx(&call)?).await
            }
            (Verb::Get, "pims.authentication.smscode") => {
                match p.required_choice("type", &["phoneNumberCertification", "enrollment"])? {
                    "phoneNumberCertification" => {
                        let number = phone_number(p)?;
                        let ctx = self.ctx(&call)?;
                        self.send_sms_code(&ctx, SmsPurpose::PhoneCertification, Some(number))
                            .await
                    }
                    _ => {
                        self.send_sms_code(&self.ctx(&call)?, SmsPurpose::Enrollment, None)
                            .await
                    }
                }
            }
            (Verb::Set, "pims.authentication.smscode") => match selector(p)? {
                "enrollment" => {
                    let code = p.required_digits("smsCode", SMS_DIGITS)?;
                    self.check_enrollment_code(&self.ctx(&call)?, code).await
                }
                "addPhoneNumber" => {
                    let code = p.required_digits("smsCode", SMS_DIGITS)?;
                    let number = phone_number(p)?;
                    self.add_phone_number(&self.ctx(&call)?, number, code).await
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
                    ],
                )?;
                let pin = p.required_digits("pinCode", PIN_DIGITS)?;
                let code = p.required_digits("smsCode", SMS_DIGITS)?;
                let number = match action {
                    "enroll" => None,
                    _ => Some(phone_number(p)?),
                };
                self.enroll(&self.ctx(&call)?, pin, code, number).await
            }
            (Verb::Get, "pims.authentication.otp") => {
                let pin = match p.required_choice("action", &["withPIN", "withoutPIN"])? {
                    "withPIN" => Some(p.required_digits("pinCode", PIN_DIGITS)?),
                    _ => None,
                };
                self.otp(&self.ctx(&call)?, pin).await
            }
            _ => Err(ErrorCode::ApiNotSupported.into()),
        }
    }
}

/// The vault, opened on first use (so a failing key store is a 2311 on a call, not a crash at
/// `initialize`), and the last state read or written.
struct Local {
    data_directory: std::path::PathBuf,
    host: Host,
    vault: Option<Vault>,
    state: Option<VaultState>,
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

    fn write(&mut self, state: &VaultState) -> Result<(), PimsError> {
        self.vault()?.write(state).map_err(errors::vault)?;
        self.state = Some(state.clone());
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
