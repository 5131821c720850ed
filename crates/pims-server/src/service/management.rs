//! Account management after enrollment: the device list, revocation, removing every
//! enrollment, and the operations an Active device signs (PIN reset and update, new number).

use std::sync::Arc;

use pims_proto::{
    transcript, ApiError, DeviceChallenge, DeviceChallengeRequest, DeviceInfo, DeviceList,
    DeviceProof, FinishPinChange, ModifyPhoneNumber, PhoneNumberRestored, PinAuthorization,
    PinChangeStarted, PinFinish, PinOrigin, RestorePhoneNumber, SmsPurpose, StartPinChange,
};

use super::accounts::check_id;
use super::{crypto, phone, Service};
use crate::error::{api, Error, Result};
use crate::sms::{self, Notice};
use crate::store::{
    CodeCheck, CodeMatcher, CodeTarget, DeviceOperation, DeviceOperationStep, NumberChanged,
    OperationOutcome, PinChangeChallenge, RestoreBy, RestoreStep, Restored,
};

impl Service {
    /// `GET /v1/devices`.
    pub async fn list_devices(&self, account: &str) -> Result<DeviceList> {
        let devices = self
            .store
            .list_devices(account, self.now(), self.limits.pending_device_ttl_seconds)
            .await?;
        Ok(DeviceList {
            devices: devices
                .into_iter()
                .map(|d| DeviceInfo {
                    device_id: d.id,
                    name: d.name,
                    platform: d.platform,
                    state: d.state,
                    created_at: d.created_at,
                    last_used_at: d.last_used_at,
                    assurance: d.assurance,
                })
                .collect(),
        })
    }

    /// `POST /v1/devices/{id}/revoke`.
    pub async fn revoke_device(&self, account: &str, device_id: &str) -> Result<()> {
        check_id(device_id, "deviceId")?;
        self.store
            .revoke_device(account, device_id, self.now())
            .await?;
        tracing::info!(device_id, "device revoked");
        Ok(())
    }

    /// `POST /v1/enrollments/remove`.
    pub async fn remove_enrollments(&self, account: &str) -> Result<()> {
        let removed = self.store.remove_enrollments(account, self.now()).await?;
        tracing::info!("every enrollment of the account removed");
        if removed {
            let number = self.trusted_number(account).await;
            self.notify(number.as_deref(), Notice::EnrollmentsRemoved)
                .await;
        }
        Ok(())
    }

    /// `POST /v1/devices/{id}/challenges`.
    pub async fn device_challenge(
        &self,
        account: &str,
        device_id: &str,
        req: DeviceChallengeRequest,
    ) -> Result<DeviceChallenge> {
        check_id(device_id, "deviceId")?;
        // Same rows as OTP challenges: same shape, same lockout; the signed transcript
        // differs, so one kind of answer can never serve as the other.
        self.create_challenge(
            account,
            device_id,
            req.login.as_ref(),
            req.proof.as_ref(),
            None,
        )
        .await
    }

    /// `POST /v1/pin/change`: authorizes a PIN reset (SMS code) or update (current PIN) in
    /// one store step, and only then answers the registration request, under a fresh
    /// credential identifier.
    pub async fn start_pin_change(
        &self,
        account: &str,
        req: StartPinChange,
    ) -> Result<PinChangeStarted> {
        // Parse the request before anything is counted; answer it only once authorized.
        if let Some(r) = &req.registration {
            crypto::check_registration_request(r.as_slice())?;
        }
        let next = req.registration.as_ref().map(|_| PinChangeChallenge {
            challenge_id: crypto::new_row_id(),
            nonce: crypto::random_bytes(32),
            credential_id: crypto::new_credential_id(),
            ttl: self.limits.challenge_ttl_seconds,
        });
        // What the answer carries once the store step has authorized the change.
        let answer = next.as_ref().map(|n| {
            (
                n.challenge_id.clone(),
                n.nonce.clone(),
                n.credential_id.clone(),
            )
        });
        let (login, operation) = match (&req.authorization, next) {
            (PinAuthorization::SmsCode(code), Some(next)) => {
                let code = self.code_check(
                    account,
                    SmsPurpose::ResetPin,
                    CodeTarget::TrustedNumber,
                    code,
                );
                (None, DeviceOperation::StartPinReset { code, next })
            }
            (PinAuthorization::SmsCode(_), None) => {
                return api(ApiError::InvalidParameter {
                    name: "registration".into(),
                })
            }
            (PinAuthorization::Pin(finish), next) => (
                Some(login_proof(finish)?),
                DeviceOperation::StartPinUpdate { next },
            ),
        };
        self.device_operation(
            account,
            &req.proof,
            req.operation(),
            &req.signed_payload(),
            login,
            operation,
        )
        .await?;
        let next = match (answer, &req.registration) {
            (Some((challenge_id, nonce, credential_id)), Some(request)) => Some(DeviceChallenge {
                challenge_id,
                nonce: nonce.into(),
                login: None,
                register: Some(
                    crypto::registration_response(
                        &self.keys.opaque,
                        account,
                        &credential_id,
                        request.as_slice(),
                    )?
                    .into(),
                ),
            }),
            _ => None,
        };
        tracing::info!(operation = req.operation(), "PIN change authorized");
        Ok(PinChangeStarted { next })
    }

    /// `POST /v1/pin/change/finish`.
    pub async fn finish_pin_change(&self, account: &str, req: FinishPinChange) -> Result<()> {
        let pin_record = crypto::registration_record(req.registration.as_slice())?;
        let outcome = self
            .device_operation(
                account,
                &req.proof,
                transcript::PIN_CHANGE_FINISH,
                req.registration.as_slice(),
                None,
                DeviceOperation::FinishPinChange { pin_record },
            )
            .await?;
        tracing::info!(by = ?outcome.pin_set_by, "PIN changed");
        if outcome.pin_set_by == Some(PinOrigin::SmsRecovery) {
            let number = self.trusted_number(account).await;
            self.notify(number.as_deref(), Notice::PinReset).await;
        }
        Ok(())
    }

    /// `POST /v1/phone-number/modify`.
    pub async fn modify_phone_number(&self, account: &str, req: ModifyPhoneNumber) -> Result<()> {
        let number = phone::parse_e164(&req.phone_number, req.region.as_deref())?;
        let code = self.code_check(
            account,
            SmsPurpose::PhoneCertification,
            CodeTarget::Number(number.clone()),
            &req.sms_code,
        );
        let login = req.login.as_ref().map(login_proof).transpose()?;
        let outcome = self
            .device_operation(
                account,
                &req.proof,
                transcript::PHONE_NUMBER_MODIFY,
                &req.signed_payload(),
                login,
                DeviceOperation::ModifyPhoneNumber {
                    code,
                    phone_number: number,
                    recovery_hold: self.limits.recovery_hold_after_number_change_seconds,
                    restore_nonce: crypto::random_bytes(32),
                },
            )
            .await?;
        tracing::info!(
            pin_proven = login.is_some(),
            "trusted phone number modified"
        );
        if let Some(change) = outcome.number_change {
            self.tell_number_change(account, &change).await;
        }
        Ok(())
    }

    /// The notices of a number change: the number it replaced is told, with the code that
    /// undoes it when the change was made without the PIN; the number of before a restore
    /// window a PIN-proven change closed is told too.
    async fn tell_number_change(&self, account: &str, change: &NumberChanged) {
        match &change.restorable {
            Some((number, nonce)) => {
                let code = crypto::restore_code(&self.keys.sms_code, account, number, nonce);
                let text = sms::number_changed_text(&change.phone_number, &code, change.held_until);
                self.notify_text(Some(number), Notice::PhoneNumberChanged, &text)
                    .await;
            }
            None => {
                self.notify(Some(&change.replaced), Notice::PhoneNumberChanged)
                    .await
            }
        }
        if let Some(number) = change
            .closed_window_of
            .as_deref()
            .filter(|n| *n != change.replaced)
        {
            self.notify(Some(number), Notice::PhoneNumberChanged).await;
        }
    }

    /// `POST /v1/phone-number/restore`: the owner's own way back during a hold, with the code
    /// the change notices sent to the number trusted before it.
    pub async fn restore_phone_number_by_owner(
        &self,
        account: &str,
        req: RestorePhoneNumber,
    ) -> Result<PhoneNumberRestored> {
        let candidate = crypto::normalize_restore_code(&req.restore_code);
        if candidate.is_empty() || candidate.len() > 32 {
            return api(ApiError::InvalidParameter {
                name: "restoreCode".into(),
            });
        }
        let key = self.keys.sms_code;
        let owner = account.to_string();
        let code: CodeMatcher = Arc::new(move |pre_hold: &str, nonce: &[u8]| {
            let expected = crypto::restore_code(&key, &owner, pre_hold, nonce);
            crypto::code_matches(&candidate, &crypto::normalize_restore_code(&expected))
        });
        let restored = self
            .restore_phone_number(account, RestoreBy::Owner { code })
            .await;
        if matches!(restored, Err(Error::Api(ApiError::RestoreCodeInvalid))) {
            self.metrics.restore_codes_refused.inc();
        }
        let restored = restored?;
        Ok(PhoneNumberRestored {
            phone_number: restored.phone_number,
        })
    }

    /// Gives back the number of before the restore window (the owner with their code, or the
    /// helpdesk), ending the hold and disabling every device, and tells both numbers. The one
    /// place a restore happens: the admin API, the console and the SDK's call all come here.
    pub async fn restore_phone_number(&self, account: &str, by: RestoreBy) -> Result<Restored> {
        let restored = self
            .store
            .restore_phone_number(RestoreStep {
                account: account.to_string(),
                by,
                now: self.now(),
            })
            .await?;
        tracing::info!(
            devices_disabled = restored.devices_disabled,
            "trusted number restored to the one of before the hold"
        );
        for number in [&restored.phone_number, &restored.replaced] {
            self.notify(Some(number), Notice::PhoneNumberRestored).await;
        }
        Ok(restored)
    }

    fn code_check(
        &self,
        account: &str,
        purpose: SmsPurpose,
        target: CodeTarget,
        sms_code: &str,
    ) -> CodeCheck {
        CodeCheck {
            account: account.to_string(),
            purpose,
            target,
            matcher: self.code_matcher(account, purpose, sms_code),
            now: self.now(),
            max_checks: self.limits.sms_code_max_checks,
        }
    }

    /// Verifies the device signature (and, with `login`, the PIN proof) outside the
    /// transaction, then applies `operation` in one store step. `login` is `Some(None)` for a
    /// PIN the device itself found wrong.
    async fn device_operation(
        &self,
        account: &str,
        proof: &DeviceProof,
        operation_name: &str,
        payload: &[u8],
        login: Option<Option<&[u8]>>,
        operation: DeviceOperation,
    ) -> Result<OperationOutcome> {
        check_id(&proof.challenge_id, "challengeId")?;
        let now = self.now();
        let challenge = self
            .open_challenge(account, &proof.challenge_id, now)
            .await?;
        let signed = transcript::device_operation(
            operation_name,
            &challenge.id,
            &challenge.nonce,
            &challenge.device_id,
            proof.counter,
            payload,
        );
        let signature_ok = crypto::signature_ok(
            &challenge.device_public_key,
            &signed,
            proof.signature.as_slice(),
        );
        let login_state = self.challenge_login_state(account, &challenge)?;
        let pin_ok = match (&login_state, login) {
            (Some(state), Some(Some(finalization))) => {
                Some(crypto::login_finish(state, finalization))
            }
            (Some(_), Some(None)) => Some(false),
            (None, None) => None,
            _ => {
                return api(ApiError::InvalidParameter {
                    name: "login".into(),
                })
            }
        };
        let result = self
            .store
            .device_operation(DeviceOperationStep {
                account: account.to_string(),
                challenge_id: challenge.id,
                counter: proof.counter,
                signature_ok,
                pin_ok,
                operation,
                now,
                pin_attempts: self.limits.pin_attempts,
            })
            .await;
        self.metrics.pin_outcome(&result);
        result
    }
}

/// The finalization of a PIN login in an operation: `None` for a PIN the device found wrong.
fn login_proof(finish: &PinFinish) -> Result<Option<&[u8]>> {
    match finish {
        PinFinish::Login(finalization) => Ok(Some(finalization.as_slice())),
        PinFinish::LoginFailed => Ok(None),
        PinFinish::Register(_) => api(ApiError::InvalidParameter {
            name: "login".into(),
        }),
    }
}
