//! Account status, the trusted phone number and SMS codes.

use super::*;

impl Core {
    pub(super) async fn is_device_activated(&self, ctx: &Ctx) -> Result<Value, Error> {
        let activated = self.activation(ctx).await?;
        Ok(json!({ "isDeviceActivated": activated }))
    }

    /// Whether this device is active, after [`Core::refresh`]. An unreadable vault stays 2311
    /// (only `enroll` and `remove` replace it), so the app learns why it must enroll again.
    pub(super) async fn activation(&self, ctx: &Ctx) -> Result<bool, Error> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        self.refresh(ctx, &mut local, &mut state).await?;
        Ok(state.enrollment.as_ref().is_some_and(|e| e.activated))
    }

    /// Brings the local state up to date with the server when it answers: a pending activation
    /// is finished, and a device the server no longer knows (revoked, disabled, expired) is
    /// forgotten. Without an answer the local state stands. Shared with the event poll.
    pub(super) async fn refresh(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
    ) -> Result<(), Error> {
        // A server that refused a connection moments ago is not asked again: the local state
        // stands, exactly as after another failed attempt.
        if self.client.known_unreachable() {
            return Ok(());
        }
        self.resume(ctx, local, state).await;
        let query = state
            .enrollment
            .as_ref()
            .map(|e| ("deviceId", e.device_id.as_str()));
        let status = self
            .client
            .call::<ep::Account>(&[], query, &ctx.token, &ctx.transaction_id, &Empty {})
            .await;
        match status {
            Ok(status) => {
                self.events
                    .observe(None, Some(status.pin == PinState::Blocked));
                let known = matches!(
                    status.device,
                    Some(DeviceState::Active | DeviceState::Pending)
                );
                if state.enrollment.is_some() && !known {
                    self.forget_device(local, state)?;
                    tracing::info!(transaction_id = %ctx.transaction_id, "device no longer known to the server; local enrollment cleared");
                }
                Ok(())
            }
            Err(CallError::Transport(_) | CallError::Unexpected(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn is_account_blocked(&self, ctx: &Ctx) -> Result<Value, Error> {
        let verdict = match self.call::<ep::Account>(ctx, &[], &Empty {}).await {
            Ok(s) if s.pin == PinState::Blocked => {
                self.events.observe(None, Some(true));
                "PinBlocked"
            }
            Ok(_) => {
                self.events.observe(None, Some(false));
                "NotBlocked"
            }
            Err(CallError::Transport(_) | CallError::Unexpected(_)) => "Unknown",
            Err(e) => return Err(e.into()),
        };
        Ok(json!({ "isAccountBlocked": verdict }))
    }

    pub(super) async fn trusted_phone_number(&self, ctx: &Ctx) -> Result<Value, Error> {
        match self.account_status(ctx).await?.phone_number {
            Some(number) => Ok(json!({ "phoneNumber": number })),
            None => Err(Error::Api(ApiError::NoPhoneNumber)),
        }
    }

    // ---- SMS codes -------------------------------------------------------------------------

    pub(super) async fn send_sms_code(
        &self,
        ctx: &Ctx,
        purpose: SmsPurpose,
        phone_number: Option<PhoneNumber>,
    ) -> Result<Value, Error> {
        let (phone_number, region) = match phone_number {
            Some(p) => (Some(p.number), p.region),
            None => (None, None),
        };
        self.call::<ep::SmsCodes>(
            ctx,
            &[],
            &SendSmsCode {
                purpose,
                phone_number,
                region,
            },
        )
        .await?;
        Ok(Value::Null)
    }

    pub(super) async fn check_enrollment_code(
        &self,
        ctx: &Ctx,
        sms_code: Secret,
    ) -> Result<Value, Error> {
        let checked = self
            .call::<ep::SmsCodeCheck>(
                ctx,
                &[],
                &CheckSmsCode {
                    purpose: SmsPurpose::Enrollment,
                    sms_code: sms_code.expose().to_owned(),
                },
            )
            .await?;
        let status = match checked.enrollment_status {
            EnrollmentStatus::NotEnrolled => "NotEnrolled",
            EnrollmentStatus::AlreadyEnrolled => "AlreadyEnrolled",
        };
        Ok(json!({ "status": status }))
    }

    pub(super) async fn add_phone_number(
        &self,
        ctx: &Ctx,
        phone_number: PhoneNumber,
        sms_code: Secret,
    ) -> Result<Value, Error> {
        self.call::<ep::PhoneNumberAdd>(
            ctx,
            &[],
            &AddPhoneNumber {
                phone_number: phone_number.number,
                region: phone_number.region,
                sms_code: sms_code.expose().to_owned(),
            },
        )
        .await?;
        Ok(Value::Null)
    }
}
