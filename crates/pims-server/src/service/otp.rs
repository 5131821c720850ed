use pims_proto::{
    transcript, ApiError, DeviceChallenge, DeviceState, LoginProof, OtpChallenge,
    OtpChallengeRequest, OtpIssued, OtpRequest, OtpVerified, PinFinish,
};

use super::accounts::check_id;
use super::crypto::LoginStateRow;
use super::{crypto, Service};
use crate::error::{api, Result};
use crate::store::{ChallengeStep, IssueOtpStep, LoginStart, OtpChallengeRecord, OtpProof};

impl Service {
    /// `POST /v1/otp/challenges`.
    pub async fn otp_challenge(
        &self,
        account: &str,
        req: OtpChallengeRequest,
    ) -> Result<OtpChallenge> {
        check_id(&req.device_id, "deviceId")?;
        let audience = self.otp_audience(req.audience.as_deref())?;
        // A relying party that requires an attested device gets no OTP from a device below
        // it: refused here, before any PIN attempt is spent (a device's assurance never
        // changes after its enrollment, so the OTP answering this challenge is refused too).
        if let Some(required) = audience
            .as_deref()
            .and_then(|rp| self.attestation.required_for(rp))
        {
            if let Some(device) = self.store.device(account, &req.device_id).await? {
                let got = device
                    .assurance
                    .parse()
                    .unwrap_or(pims_attest::Assurance::Unattested);
                if !got.meets(required) {
                    return api(ApiError::AssuranceInsufficient {
                        required: required.as_str().into(),
                        got: got.as_str().into(),
                    });
                }
            }
        }
        let challenge = self
            .create_challenge(
                account,
                &req.device_id,
                req.pin.as_ref(),
                req.proof.as_ref(),
                audience,
            )
            .await?;
        Ok(OtpChallenge {
            challenge_id: challenge.challenge_id,
            nonce: challenge.nonce,
            pin: challenge.login,
        })
    }

    /// Records a challenge for an Active device, starting the counted PIN login when the
    /// device sent a credential request — signed by the device, so the access token alone
    /// cannot spend PIN attempts. Shared by OTPs and account-management operations.
    pub(super) async fn create_challenge(
        &self,
        account: &str,
        device_id: &str,
        login_request: Option<&pims_proto::Bytes>,
        proof: Option<&LoginProof>,
        audience: Option<String>,
    ) -> Result<DeviceChallenge> {
        let login_counter = match (login_request, proof) {
            // Nothing to check before the step, which finds the device Active or refuses.
            (None, _) => None,
            // A protocol-1 device: its logins were unsigned.
            (Some(_), None) => {
                return api(ApiError::UnsupportedProtocol {
                    supported: vec![pims_proto::PROTOCOL_VERSION],
                })
            }
            (Some(request), Some(proof)) => {
                // The signed login start is checked before the step counts its attempt.
                let device = self.store.device(account, device_id).await?;
                let Some(device) = device.filter(|d| d.state == DeviceState::Active) else {
                    return api(ApiError::DeviceUnknown);
                };
                let signed = transcript::login_start(device_id, proof.counter, request.as_slice());
                if !crypto::signature_ok(&device.public_key, &signed, proof.signature.as_slice()) {
                    return api(ApiError::BadSignature);
                }
                Some(proof.counter)
            }
        };
        let challenge_id = crypto::new_row_id();
        let (response, login) = match login_request {
            None => (None, None),
            Some(request) => {
                let record = self.store.account(account).await?.unwrap_or_default();
                let pin = record.pin_for_login(self.limits.pin_attempts)?;
                let crypto::LoginStarted { message, state } = crypto::login_start(
                    &self.keys.opaque,
                    account,
                    &pin.credential_id,
                    &pin.record,
                    request.as_slice(),
                )?;
                let row = LoginStateRow::Challenge {
                    account,
                    id: &challenge_id,
                };
                let login = LoginStart {
                    pin_record: pin.record,
                    state: crypto::seal_login_state(&self.keys.login_state, row, &state),
                };
                (Some(message.into()), Some(login))
            }
        };
        let nonce = crypto::random_bytes(32);
        self.store
            .create_otp_challenge(ChallengeStep {
                account: account.to_string(),
                challenge_id: challenge_id.clone(),
                device_id: device_id.to_string(),
                nonce: nonce.clone(),
                login,
                audience,
                login_counter,
                now: self.now(),
                ttl: self.limits.challenge_ttl_seconds,
                pin_attempts: self.limits.pin_attempts,
                max_open: self.limits.max_open_challenges_per_device,
            })
            .await?;
        Ok(DeviceChallenge {
            challenge_id,
            nonce: nonce.into(),
            login: response,
            register: None,
        })
    }

    /// The account's open (unused, unexpired) challenge `id`, or `SessionExpired`: what every
    /// answer to a device challenge (an OTP, an operation, a command) starts from.
    pub(super) async fn open_challenge(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<OtpChallengeRecord> {
        match self.store.otp_challenge(account, id, now).await? {
            Some(challenge) => Ok(challenge),
            None => api(ApiError::SessionExpired),
        }
    }

    /// The server login state of a challenge, opened from its seal.
    pub(super) fn challenge_login_state(
        &self,
        account: &str,
        challenge: &OtpChallengeRecord,
    ) -> Result<Option<Vec<u8>>> {
        let row = LoginStateRow::Challenge {
            account,
            id: &challenge.id,
        };
        challenge
            .login_state
            .as_deref()
            .map(|sealed| crypto::open_login_state(&self.keys.login_state, row, sealed))
            .transpose()
    }

    /// `POST /v1/otp`.
    pub async fn issue_otp(&self, account: &str, req: OtpRequest) -> Result<OtpIssued> {
        check_id(&req.challenge_id, "challengeId")?;
        let now = self.now();
        let challenge = self.open_challenge(account, &req.challenge_id, now).await?;
        let pin_proof = req.pin.as_ref().map_or(&[][..], PinFinish::proof);
        let transcript = transcript::otp(
            &challenge.id,
            &challenge.nonce,
            &challenge.device_id,
            req.counter,
            pin_proof,
        );
        let login_state = self.challenge_login_state(account, &challenge)?;
        let proof = match (&login_state, &req.pin) {
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
        tracing::debug!(device_id = %challenge.device_id, with_pin, "OTP issued");
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
                tracing::debug!(relying_party, device_id = %v.device_id, "OTP verified");
                Ok(OtpVerified {
                    subject: v.subject,
                    device_id: v.device_id,
                    with_pin: v.with_pin,
                    issued_at: v.issued_at,
                    pin_set_at: v.pin_set_at,
                    pin_set_by: v.pin_set_by,
                    pin_recovered_at: v.pin_recovered_at,
                    assurance: v.assurance,
                })
            }
            None => api(ApiError::OtpInvalid),
        }
    }
}
