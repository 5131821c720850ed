//! One-time proofs with or without the PIN.

use super::*;

impl Core {
    pub(super) async fn otp(
        &self,
        ctx: &Ctx,
        pin: Option<Secret>,
        audience: Option<String>,
    ) -> Result<Value, Error> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        let device_id = self.active_device(ctx, &mut local, &mut state).await?;

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
        let challenge = self
            .device_call::<ep::OtpChallenges>(ctx, &mut local, &mut state, &[], &request)
            .await?;
        let pin_finish = match (exchange, pin, challenge.pin.clone()) {
            (Some((exchange, _)), Some(pin), Some(response)) => {
                Some(pin::finish(exchange, &pin, response).await?)
            }
            (None, None, None) => None,
            _ => return Err(Error::Malformed),
        };

        let request = self.sign_next(&mut local, &mut state, |e| {
            pims_device::otp_request(&challenge, &e.device_id, e.counter, pin_finish)
        })?;
        let issued = self
            .device_call::<ep::Otp>(ctx, &mut local, &mut state, &[], &request)
            .await?;
        Ok(json!({ "otp": issued.otp, "expiresInSeconds": issued.expires_in_seconds }))
    }
}
