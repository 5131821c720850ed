//! One-time proofs with or without the PIN.

use super::*;

impl Core {
    pub(super) async fn otp(
        &self,
        ctx: &Ctx,
        pin: Option<Secret>,
        audience: Option<String>,
    ) -> Result<Value, PimsError> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        self.resume(ctx, &mut local, &mut state).await;
        let device_id = match &state.enrollment {
            Some(e) if e.activated => e.device_id.clone(),
            Some(_) => return Err(ErrorCode::PostSynchronizationFailed.into()),
            None => return Err(ErrorCode::PriorAuthenticatorRequired.into()),
        };

        let exchange = pin.as_ref().map(|p| pin::start(p, false));
        let login = exchange.as_ref().map(|(_, message)| message.clone());
        let proof = login
            .as_ref()
            .map(|request| self.sign_login_start(&mut local, &mut state, request))
            .transpose()?;
        let request = OtpChallengeRequest {
            device_id: device_id.clone(),
            pin: login,
            audience,
            proof,
        };
        let challenge = match self.call::<ep::OtpChallenges>(ctx, &[], &request).await {
            Ok(c) => c,
            Err(CallError::Api(ApiError::DeviceUnknown)) => {
                return Err(self.forget_device(&mut local, &mut state))
            }
            Err(e) => return Err(errors::from_call(e)),
        };
        let pin_finish = match (exchange, pin, challenge.pin.clone()) {
            (Some((exchange, _)), Some(pin), Some(response)) => Some(
                pin::finish(exchange, &pin, response)
                    .await
                    .map_err(|_| PimsError::from(ErrorCode::NoServiceAvailable))?,
            ),
            (None, None, None) => None,
            _ => return Err(ErrorCode::NoServiceAvailable.into()),
        };

        let request = self.sign_next(&mut local, &mut state, |e| {
            pims_device::otp_request(&challenge, &e.device_id, e.counter, pin_finish)
        })?;
        match self.call::<ep::Otp>(ctx, &[], &request).await {
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
