use pims_proto::{
    transcript, ApiError, EnrollmentFinished, EnrollmentStarted, FinishEnrollment, PinFinish,
    PinStart, StartEnrollment,
};

use super::accounts::check_id;
use super::crypto::LoginStateRow;
use super::{crypto, phone, Service};
use crate::error::{api, Result};
use crate::sms::Notice;
use crate::store::{
    replay_scoped, EnrollmentProof, FinishEnrollmentStep, LoginStart, NewDeviceRecord,
    StartEnrollmentStep,
};

impl Service {
    /// `POST /v1/enrollments`.
    pub async fn start_enrollment(
        &self,
        account: &str,
        req: StartEnrollment,
    ) -> Result<EnrollmentStarted> {
        let phone_number = req
            .phone_number
            .as_deref()
            .map(|n| phone::parse_e164(n, req.region.as_deref()))
            .transpose()?;
        let record = self.store.account(account).await?.unwrap_or_default();
        // Cheap early answers; the store step re-checks all of them atomically.
        match &phone_number {
            Some(_) if record.phone_number.is_some() => {
                return api(ApiError::PhoneNumberAlreadyRegistered)
            }
            None if record.phone_number.is_none() => return api(ApiError::NoPhoneNumber),
            _ => {}
        }
        let session_id = crypto::new_row_id();
        // The registration response is returned only if the step below accepts the SMS code;
        // it is computed under a fresh identifier, so it reveals nothing of any other record.
        let (response, login, credential_id) = match (&req.pin, &record.pin_record) {
            (PinStart::Register(_), Some(_)) | (PinStart::Login(_), None) => {
                return api(ApiError::PinStateChanged)
            }
            (PinStart::Register(request), None) => {
                let credential_id = crypto::new_credential_id();
                let message = crypto::registration_response(
                    &self.keys.opaque,
                    account,
                    &credential_id,
                    request.as_slice(),
                )?;
                (
                    PinStart::Register(message.into()),
                    None,
                    Some(credential_id),
                )
            }
            (PinStart::Login(request), Some(_)) => {
                let pin = record.pin_for_login(self.limits.pin_attempts)?;
                let crypto::LoginStarted { message, state } = crypto::login_start(
                    &self.keys.opaque,
                    account,
                    &pin.credential_id,
                    &pin.record,
                    request.as_slice(),
                )?;
                let row = LoginStateRow::Enrollment {
                    account,
                    id: &session_id,
                };
                let login = LoginStart {
                    pin_record: pin.record,
                    state: crypto::seal_login_state(&self.keys.login_state, row, &state),
                };
                (PinStart::Login(message.into()), Some(login), None)
            }
        };
        let purpose = if phone_number.is_some() {
            pims_proto::SmsPurpose::PhoneCertification
        } else {
            pims_proto::SmsPurpose::Enrollment
        };
        let nonce = crypto::random_bytes(32);
        self.store
            .start_enrollment(StartEnrollmentStep {
                account: account.to_string(),
                session_id: session_id.clone(),
                nonce: nonce.clone(),
                phone_number,
                sms_code: self.code_matcher(account, purpose, &req.sms_code),
                login,
                credential_id,
                now: self.now(),
                ttl: self.limits.enrollment_session_ttl_seconds,
                limits: self.step_limits(),
            })
            .await?;
        Ok(EnrollmentStarted {
            enrollment_id: session_id,
            nonce: nonce.into(),
            pin: response,
        })
    }

    /// `POST /v1/enrollments/{id}/finish`: idempotent by `idempotency_key`.
    pub async fn finish_enrollment(
        &self,
        account: &str,
        enrollment_id: &str,
        req: FinishEnrollment,
    ) -> Result<EnrollmentFinished> {
        check_id(&req.idempotency_key, "idempotencyKey")?;
        check_id(enrollment_id, "enrollmentId")?;
        if let Some((scope, outcome)) = self
            .store
            .idempotent_outcome(account, &req.idempotency_key)
            .await?
        {
            return replay_scoped(enrollment_id, &scope, outcome);
        }
        let device = &req.device;
        let public_key = device.public_key.as_slice();
        if public_key.len() != 65 || public_key[0] != 0x04 {
            return api(ApiError::InvalidParameter {
                name: "publicKey".into(),
            });
        }
        let name = device.name.trim();
        if !pims_proto::device_name_ok(name) {
            return api(ApiError::InvalidParameter {
                name: "deviceName".into(),
            });
        }
        let now = self.now();
        let Some(session) = self
            .store
            .enrollment_session(account, enrollment_id, now)
            .await?
        else {
            // A retry whose first attempt committed answers from the idempotency record above;
            // otherwise the session is gone for good.
            return api(ApiError::SessionExpired);
        };

        // What the platform attests of the key, over challenges that bind this session and
        // its nonce (the session exists only once the SMS code was checked, so they stand for
        // that code's use) and the key (certified by an Android chain, in the App Attest
        // challenge). Verified at server time, outside the store's transaction.
        let proven = self.attestation.verify(
            req.attestation.as_ref(),
            &session.id,
            &session.nonce,
            public_key,
            now,
        );
        let transcript =
            transcript::enrollment(&session.id, &session.nonce, public_key, req.pin.proof());
        let proof = if !crypto::signature_ok(public_key, &transcript, req.signature.as_slice()) {
            EnrollmentProof::BadSignature
        } else {
            match (&session.login_state, &req.pin) {
                (None, PinFinish::Register(upload)) => EnrollmentProof::Register {
                    pin_record: crypto::registration_record(upload.as_slice())?,
                },
                (Some(sealed), PinFinish::Login(finalization)) => {
                    let row = LoginStateRow::Enrollment {
                        account,
                        id: &session.id,
                    };
                    let state = crypto::open_login_state(&self.keys.login_state, row, sealed)?;
                    EnrollmentProof::Login {
                        pin_ok: crypto::login_finish(&state, finalization.as_slice()),
                    }
                }
                (Some(_), PinFinish::LoginFailed) => EnrollmentProof::Login { pin_ok: false },
                _ => return api(ApiError::InvalidParameter { name: "pin".into() }),
            }
        };
        let result = self
            .store
            .finish_enrollment(FinishEnrollmentStep {
                account: account.to_string(),
                enrollment_id: enrollment_id.to_string(),
                idempotency_key: req.idempotency_key.clone(),
                proof,
                device: NewDeviceRecord {
                    id: crypto::new_row_id(),
                    public_key: public_key.to_vec(),
                    name: name.to_string(),
                    platform: device.platform,
                    activation_nonce: crypto::random_bytes(32),
                    assurance: proven.assurance.as_str().to_string(),
                    assurance_detail: proven.detail.clone(),
                },
                attestation_refusal: self.attestation.refusal(&proven),
                now,
                limits: self.step_limits(),
            })
            .await;
        self.metrics.pin_outcome(&result);
        match &result {
            Ok(done) => {
                self.metrics.enrollments.inc();
                tracing::info!(
                    device_id = %done.device_id,
                    assurance = proven.assurance.as_str(),
                    attestation_refused = proven.detail.as_deref(),
                    "device enrolled (pending)"
                )
            }
            Err(crate::error::Error::Api(e)) => tracing::info!(outcome = ?e, "enrollment refused"),
            Err(_) => {}
        }
        result
    }

    /// `POST /v1/devices/{id}/activate`.
    pub async fn activate_device(
        &self,
        account: &str,
        device_id: &str,
        counter: u64,
        signature: &[u8],
    ) -> Result<()> {
        check_id(device_id, "deviceId")?;
        let now = self.now();
        let Some(device) = self.store.device(account, device_id).await? else {
            return api(ApiError::DeviceUnknown);
        };
        if device
            .live_state(now, self.limits.pending_device_ttl_seconds)
            .is_none_or(|s| s == pims_proto::DeviceState::Disabled)
        {
            return api(ApiError::DeviceUnknown);
        }
        let transcript = transcript::activation(device_id, &device.activation_nonce, counter);
        if !crypto::signature_ok(&device.public_key, &transcript, signature) {
            return api(ApiError::BadSignature);
        }
        let activated = self
            .store
            .activate_device(crate::store::ActivateStep {
                account: account.to_string(),
                device_id: device_id.to_string(),
                counter,
                now,
                pending_device_ttl: self.limits.pending_device_ttl_seconds,
            })
            .await?;
        if activated {
            let number = self.trusted_number(account).await;
            self.notify(number.as_deref(), Notice::DeviceEnrolled).await;
        }
        Ok(())
    }
}
