use pims_proto::{
    transcript, ApiError, DeviceState, OtpChallenge, OtpChallengeRequest, OtpIssued, OtpRequest,
    OtpVerified, PinFinish,
};

use super::accounts::check_id;
use super::{crypto, Service};
use crate::error::{api, Result};
use crate::store::{ChallengeStep, IssueOtpStep, LoginStart, OtpProof};

impl Service {
    /// `POST /v1/otp/challenges`.
    pub async fn otp_challenge(
        &self,
        account: &str,
        req: OtpChallengeRequest,
    ) -> Result<OtpChallenge> {
        check_id(&req.device_id, "deviceId")?;
        let device = self.store.device(account, &req.device_id).await?;
        if device.map(|d| d.state) != Some(DeviceState::Active) {
            return api(ApiError::DeviceUnknown);
        }
        let (response, login) = match &req.pin {
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
        let challenge_id = uuid::Uuid::new_v4().to_string();
        let nonce = crypto::random_bytes(32);
        self.store
            .create_otp_challenge(ChallengeStep {
                account: account.to_string(),
                challenge_id: challenge_id.clone(),
                device_id: req.device_id,
                nonce: nonce.clone(),
                login,
                now: self.now(),
                ttl: self.limits.challenge_ttl_seconds,
                pin_attempts: self.limits.pin_attempts,
            })
            .await?;
        Ok(OtpChallenge {
            challenge_id,
            nonce: nonce.into(),
            pin: response,
        })
    }

    /// `POST /v1/otp`.
    pub async fn issue_otp(&self, account: &str, req: OtpRequest) -> Result<OtpIssued> {
        check_id(&req.challenge_id, "challengeId")?;
        let now = self.now();
        let Some(challenge) = self
            .store
            .otp_challenge(account, &req.challenge_id, now)
            .await?
        else {
            return api(ApiError::SessionExpired);
        };
        let pin_proof = req.pin.as_ref().map_or(&[][..], PinFinish::proof);
        let transcript = transcript::otp(
            &challenge.id,
            &challenge.nonce,
            &challenge.device_id,
            req.counter,
            pin_proof,
        );
        let proof = match (&challenge.login_state, &req.pin) {
            (None, None) => OtpProof::WithoutPin,
            (Some(state), Some(PinFinish::Login(finalization))) => OtpProof::Pin {
                ok: crypto::login_finish(state, finalization.as_slice()),
            },
            (Some(_), Some(PinFinish::LoginFailed)) => OtpProof::Pin { ok: false },
            _ => return api(ApiError::InvalidParameter { name: "pin".into() }),
        };
        let proof = if crypto::signature_ok(
            &challenge.device_public_key,
            &transcript,
            req.signature.as_slice(),
        ) {
            proof
        } else {
            OtpProof::BadSignature
        };
        let otp = crypto::new_otp();
        let with_pin = matches!(proof, OtpProof::Pin { .. });
        let issued = self
            .store
            .issue_otp(IssueOtpStep {
                account: account.to_string(),
                challenge_id: challenge.id,
                counter: req.counter,
                proof,
                otp_mac: crypto::otp_mac(&self.keys.otp, &otp),
                now,
                otp_ttl: self.limits.otp_ttl_seconds,
                pin_attempts: self.limits.pin_attempts,
            })
            .await;
        self.metrics.pin_outcome(&issued);
        issued?;
        self.metrics
            .otps_issued
            .with_label_values(&[if with_pin { "true" } else { "false" }])
            .inc();
        tracing::info!(device_id = %challenge.device_id, with_pin, "OTP issued");
        Ok(OtpIssued {
            otp,
            expires_in_seconds: self.limits.otp_ttl_seconds,
        })
    }

    /// `POST /v1/otp/verify`, for an authenticated relying party.
    pub async fn verify_otp(&self, relying_party: &str, otp: &str) -> Result<OtpVerified> {
        if otp.is_empty() || otp.len() > 128 {
            return api(ApiError::OtpInvalid);
        }
        let mac = crypto::otp_mac(&self.keys.otp, otp.trim());
        match self.store.use_otp(&mac, self.now(), relying_party).await? {
            Some(v) => {
                self.metrics.otps_verified.inc();
                tracing::info!(relying_party, device_id = %v.device_id, "OTP verified");
                Ok(OtpVerified {
                    subject: v.subject,
                    device_id: v.device_id,
                    with_pin: v.with_pin,
                    issued_at: v.issued_at,
                })
            }
            None => api(ApiError::OtpInvalid),
        }
    }
}
