//! The StrongAuthentication APIs of SDK-API.md §2: dispatch here, one file per group of APIs.

mod account;
mod enrollment;
mod events;
mod local;
mod management;
mod otp;

use events::Events;
use local::Local;

use std::sync::Arc;

use async_trait::async_trait;
use pims_core::{Call, Component, ErrorCode, EventSink, Params, PimsError, Secret, Verb};
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

    async fn account_status(&self, ctx: &Ctx) -> Result<AccountStatus, PimsError> {
        self.call::<ep::Account>(ctx, &[], &Empty {})
            .await
            .map_err(errors::from_call)
    }
}

/// A phone number as the app typed it: international (`+…`), or national, which the server
/// reads in the configured `defaultRegion` with its numbering plan (the SDK library stays small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PhoneNumber {
    pub number: String,
    pub region: Option<String>,
}

/// `phoneNumber` as digits with an optional leading `+` (spaces, dots, dashes and brackets
/// ignored), or an integer (international digits: leading zeros cannot survive an integer).
/// The server validates it fully and answers E.164.
fn phone_number(params: &Params, default_region: &str) -> Result<PhoneNumber, PimsError> {
    const NAME: &str = "phoneNumber";
    let raw = match params.get(NAME) {
        None => return Err(PimsError::missing(NAME)),
        Some(Value::Number(n)) if n.is_u64() => format!("+{n}"),
        Some(Value::String(s)) if s.trim().is_empty() => return Err(PimsError::missing(NAME)),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(PimsError::invalid(NAME)),
    };
    let compact: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
        .collect();
    let (digits, region) = match compact.strip_prefix('+') {
        Some(digits) => (digits, None),
        None => (compact.as_str(), Some(default_region.to_owned())),
    };
    // E.164 has at most 15 digits; a national form may add an international prefix (`00`).
    if !(4..=18).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PimsError::invalid(NAME));
    }
    let number = match region {
        None => format!("+{digits}"),
        Some(_) => digits.to_owned(),
    };
    Ok(PhoneNumber { number, region })
}

/// The selector of SET `smscode`: `type` (SDK-API.md), or the reference's `action` as its
/// alias. Missing, it is named `type`; invalid, the errors name the parameter the app gave.
fn selector(params: &Params) -> Result<&str, PimsError> {
    const SELECTORS: [&str; 3] = ["enrollment", "addPhoneNumber", "modifyPhoneNumber"];
    let (name, chosen) = match params.optional_str("type")? {
        Some(kind) => ("type", kind),
        None => match params.optional_str("action")? {
            Some(action) => ("action", action),
            None => return Err(PimsError::missing("type")),
        },
    };
    if SELECTORS.contains(&chosen) {
        Ok(chosen)
    } else {
        Err(PimsError::invalid(name))
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
                        let number = phone_number(p, &self.config.default_region)?;
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
                    let number = phone_number(p, &self.config.default_region)?;
                    self.add_phone_number(&self.ctx(call)?, number, code).await
                }
                _ => {
                    // modifyPhoneNumber, the last one selector() accepts.
                    let code = p.required_digits("smsCode", SMS_DIGITS)?;
                    let number = phone_number(p, &self.config.default_region)?;
                    // Additive: with the current PIN the change is proven by both factors.
                    let pin = p.optional_digits("pinCode", PIN_DIGITS)?;
                    self.modify_phone_number(&self.ctx(call)?, number, code, pin)
                        .await
                }
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
                    _ => Some(phone_number(p, &self.config.default_region)?),
                };
                let ctx = self.ctx(call)?;
                let code = match code {
                    Some(code) => Some(code),
                    None if number.is_some() => return Err(PimsError::missing("smsCode")),
                    // An active device's `enroll` validates the PIN and needs no code.
                    None if self.activated_locally().await => None,
                    // `enroll` goes to the trusted number, which the SMS reader watches.
                    None => Some(self.sms_code_from_host().await?),
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
                // Additive: the relying party the OTP is for (its id on the server).
                let audience = match p.optional_str("audience")?.map(str::trim) {
                    Some("") | None => None,
                    Some(a) if a.len() > 128 => return Err(PimsError::invalid("audience")),
                    Some(a) => Some(a.to_string()),
                };
                self.otp(&self.ctx(call)?, pin, audience).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_normalised_or_rejected() {
        let p = |v: Value| Params::from_value(json!({ "phoneNumber": v })).unwrap();
        let parse = |v: Value| phone_number(&p(v), "FR");
        let international = |n: &str| PhoneNumber {
            number: n.into(),
            region: None,
        };
        assert_eq!(
            parse(json!("+33 6 12-34.56 78")).unwrap(),
            international("+33612345678")
        );
        assert_eq!(
            parse(json!(33612345678u64)).unwrap(),
            international("+33612345678")
        );
        for national in ["0612345678", "06 12 34 56 78", "06.12.34.56.78"] {
            assert_eq!(
                parse(json!(national)).unwrap(),
                PhoneNumber {
                    number: "0612345678".into(),
                    region: Some("FR".into())
                }
            );
        }
        assert_eq!(
            parse(json!("+33 abc")).unwrap_err().label,
            "Invalid phoneNumber parameter"
        );
        assert_eq!(
            parse(json!(" ")).unwrap_err().label,
            "Missing phoneNumber parameter"
        );
    }
}
