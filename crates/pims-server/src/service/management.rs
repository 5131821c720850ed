//! Account management after enrollment: the device list, revocation, removing every
//! enrollment, and the operations an Active device signs (PIN reset and update, new number).

use pims_proto::{
    transcript, ApiError, DeviceChallenge, DeviceChallengeRequest, DeviceInfo, DeviceList,
    DeviceProof, ModifyPhoneNumber, PinFinish, ResetPin, SmsPurpose, UpdatePin,
};

use super::accounts::check_id;
use super::{crypto, phone, Service};
use crate::error::{api, Result};
use crate::store::{
    ChallengeStep, CodeCheck, CodeTarget, DeviceOperation, DeviceOperationStep, LoginStart,
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
        self.store.remove_enrollments(account, self.now()).await?;
        tracing::info!("every enrollment of the account removed");
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
        let device = self.store.device(account, device_id).await?;
        if device.map(|d| d.state) != Some(pims_proto::DeviceState::Active) {
            return api(ApiError::DeviceUnknown);
        }
        let (login_response, login) = match &req.login {
            None => (None, None),
            Some(request) => {
                let record = self.store.account(account).await?.unwrap_or_default();
                let Some(pin_record) = record.pin_record else {
                    return api(ApiError::NoPin);
                };
                if record.pin_failures >= self.limits.pin_attempts {
                    return api(ApiError::AccountBlocked);
                }
                let crypto::LoginStarted { message, state } = crypto::login_start(
                    &self.keys.opaque,
                    account,
                    &pin_record,
                    request.as_slice(),
                )?;
                (Some(message.into()), Some(LoginStart { pin_record, state }))
            }
        };
        // Registration responses are derived from the server setup alone: nothing to keep.
        let register_response = req
            .register
            .as_ref()
            .map(|r| crypto::registration_response(&self.keys.opaque, account, r.as_slice()))
            .transpose()?
            .map(Into::into);
        let challenge_id = uuid::Uuid::new_v4().to_string();
        let nonce = crypto::random_bytes(32);
        // Stored with the OTP challenges: same shape, same lockout; the signed transcript
        // differs, so one kind of answer can never serve as the other.
        self.store
            .create_otp_challenge(ChallengeStep {
                account: account.to_string(),
                challenge_id: challenge_id.clone(),
                device_id: device_id.to_string(),
                nonce: nonce.clone(),
                login,
                now: self.now(),
                ttl: self.limits.challenge_ttl_seconds,
                pin_attempts: self.limits.pin_attempts,
            })
            .await?;
        Ok(DeviceChallenge {
            challenge_id,
            nonce: nonce.into(),
            login: login_response,
            register: register_response,
        })
    }

    /// `POST /v1/pin/reset`.
    pub async fn reset_pin(&self, account: &str, req: ResetPin) -> Result<()> {
        let pin_record = crypto::registration_record(req.registration.as_slice())?;
        let code = self.code_check(
            account,
            SmsPurpose::ResetPin,
            CodeTarget::TrustedNumber,
            &req.sms_code,
        );
        self.device_operation(
            account,
            &req.proof,
            transcript::PIN_RESET,
            req.registration.as_slice(),
            None,
            DeviceOperation::ResetPin { code, pin_record },
        )
        .await?;
        tracing::info!("PIN reset");
        Ok(())
    }

    /// `POST /v1/pin/update`.
    pub async fn update_pin(&self, account: &str, req: UpdatePin) -> Result<()> {
        let pin_record = req
            .registration
            .as_ref()
            .map(|r| crypto::registration_record(r.as_slice()))
            .transpose()?;
        let login = match &req.login {
            PinFinish::Login(finalization) => Some(finalization.as_slice()),
            PinFinish::LoginFailed => None,
            PinFinish::Register(_) => {
                return api(ApiError::InvalidParameter {
                    name: "login".into(),
                })
            }
        };
        self.device_operation(
            account,
            &req.proof,
            transcript::PIN_UPDATE,
            &req.signed_payload(),
            Some(login),
            DeviceOperation::UpdatePin { pin_record },
        )
        .await?;
        tracing::info!("PIN updated");
        Ok(())
    }

    /// `POST /v1/phone-number/modify`.
    pub async fn modify_phone_number(&self, account: &str, req: ModifyPhoneNumber) -> Result<()> {
        let number = phone::parse_e164(&req.phone_number)?;
        let code = self.code_check(
            account,
            SmsPurpose::PhoneCertification,
            CodeTarget::Number(number.clone()),
            &req.sms_code,
        );
        self.device_operation(
            account,
            &req.proof,
            transcript::PHONE_NUMBER_MODIFY,
            &number.clone().into_bytes(),
            None,
            DeviceOperation::ModifyPhoneNumber {
                code,
                phone_number: number,
            },
        )
        .await?;
        tracing::info!("trusted phone number modified");
        Ok(())
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
    ) -> Result<()> {
        check_id(&proof.challenge_id, "challengeId")?;
        let now = self.now();
        let Some(challenge) = self
            .store
            .otp_challenge(account, &proof.challenge_id, now)
            .await?
        else {
            return api(ApiError::SessionExpired);
        };
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
        let pin_ok = match (&challenge.login_state, login) {
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
        self.store
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
            .await
    }
}
