//! `enroll` / `enrollWithPhoneNumber`, two-phase activation, and resuming what an earlier call
//! left half done.

use super::*;

impl Core {
    /// `enroll` (phone_number `None`) and `enrollWithPhoneNumber`. The first device of an
    /// account registers the PIN; a further device proves it; on a device already active it
    /// is a PIN validation (the tutorial's step 8 after step 7), which needs no SMS code.
    pub(super) async fn enroll(
        &self,
        ctx: &Ctx,
        pin: Secret,
        sms_code: Option<Secret>,
        phone_number: Option<PhoneNumber>,
    ) -> Result<Value, Error> {
        let sms_code = match sms_code {
            Some(code) => Some(code),
            None if phone_number.is_some() => return Err(Error::MissingParameter("smsCode")),
            // An active device's `enroll` validates the PIN and needs no code.
            None if self.activated_locally().await => None,
            // `enroll` goes to the trusted number, which the SMS reader watches.
            None => Some(self.sms_code_from_host().await?),
        };
        let mut local = self.local.lock().await;
        let mut state = local.read_or_replace()?;
        let had_enrollment = state.enrollment.is_some();
        let had_unconfirmed = state.unconfirmed.is_some();
        self.resume(ctx, &mut local, &mut state).await;
        match &state.enrollment {
            // An earlier enroll whose answer was lost has now completed: that is this request.
            Some(e) if e.activated && had_unconfirmed && !had_enrollment => return Ok(Value::Null),
            Some(e) if e.activated && phone_number.is_none() => {
                self.validate_pin(ctx, &mut local, &mut state, &pin).await?;
                return Ok(Value::Null);
            }
            Some(e) if e.activated => return Err(Error::AlreadyEnrolled),
            Some(_) => return Err(Error::ActivationPending),
            None if state.unconfirmed.is_some() => return Err(Error::FinishPending),
            None => {}
        }
        let Some(sms_code) = sms_code else {
            return Err(Error::MissingParameter("smsCode"));
        };

        let status = self.account_status(ctx).await?;
        if status.pin == PinState::Blocked {
            return Err(Error::Api(ApiError::AccountBlocked));
        }
        match (&phone_number, &status.phone_number) {
            (Some(_), Some(_)) => return Err(Error::Api(ApiError::PhoneNumberAlreadyRegistered)),
            (None, None) => return Err(Error::Api(ApiError::NoPhoneNumber)),
            _ => {}
        }

        let register = status.pin == PinState::NotSet;
        let (phone_number, region) = match phone_number {
            Some(p) => (Some(p.number), p.region),
            None => (None, None),
        };
        let (enrollment, start) = pims_device::start_enrollment(
            sms_code.expose().to_owned(),
            phone_number,
            region,
            pin.expose().as_bytes(),
            register,
        );
        let started = self.call::<ep::EnrollmentStart>(ctx, &[], &start).await?;

        let new_key = signer::generate(self.host.device_keys.as_ref())?;
        let device = NewDevice {
            public_key: new_key.public_key.clone().into(),
            name: self.config.device_name.clone(),
            platform: self.config.platform,
        };
        let enrollment_id = started.enrollment_id.clone();
        let idempotency_key = uuid::Uuid::new_v4().to_string();
        let finish = pin::off_runtime(move || {
            enrollment.finish(
                pin.expose().as_bytes(),
                &started,
                device,
                idempotency_key,
                Stretching::Standard,
            )
        })
        .await;
        let finish = match finish {
            Ok(finish) => finish,
            Err(malformed) => {
                signer::discard(&new_key.key, self.host.device_keys.as_ref());
                return Err(malformed.into());
            }
        };
        let signature = signer::sign(
            &new_key.key,
            self.host.device_keys.as_ref(),
            &finish.transcript,
        )?;
        state.unconfirmed = Some(UnconfirmedEnrollment {
            enrollment_id,
            request: finish.signed(signature),
            key: new_key.key,
        });
        // Written before sending: if the answer is lost, the next call can resend it.
        local.write(&state)?;
        self.confirm_enrollment(ctx, &mut local, &mut state, FINISH_ATTEMPTS)
            .await
    }

    /// Sends the stored enrollment finish (retrying on a lost answer, with the same idempotency
    /// key), records the device, then activates it.
    pub(super) async fn confirm_enrollment(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
        attempts: u32,
    ) -> Result<Value, Error> {
        let Some(unconfirmed) = state.unconfirmed.clone() else {
            return Ok(Value::Null);
        };
        let mut outcome = Err(CallError::Transport(String::new()));
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
            outcome = self
                .call::<ep::EnrollmentFinish>(
                    ctx,
                    &[&unconfirmed.enrollment_id],
                    &unconfirmed.request,
                )
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
                Err(Error::Api(error))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Pending → Active. The server has committed the device; if we cannot tell it the local
    /// state is written, that is 2316 and a later call finishes it.
    pub(super) async fn activate(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
    ) -> Result<Value, Error> {
        let Some(device_id) = state.enrollment.as_ref().map(|e| e.device_id.clone()) else {
            return Err(Error::NoLocalEnrollment);
        };
        let request = self.sign_next(local, state, |e| {
            pims_device::activation(&e.device_id, e.activation_nonce.as_slice(), e.counter)
        })?;
        let outcome = self
            .device_call::<ep::DeviceActivate>(ctx, local, state, &[&device_id], &request)
            .await;
        match outcome {
            Ok(Empty {}) => {
                if let Some(e) = state.enrollment.as_mut() {
                    e.activated = true;
                }
                local.write(state)?;
                tracing::info!(transaction_id = %ctx.transaction_id, "device activated");
                Ok(Value::Null)
            }
            // The device is committed; only its activation is not confirmed.
            Err(Error::Transport(_) | Error::Unexpected(_)) => Err(Error::ActivationPending),
            Err(e) => Err(e),
        }
    }

    /// Finishes whatever an earlier call left half done; failures only mean "still pending".
    pub(super) async fn resume(&self, ctx: &Ctx, local: &mut Local, state: &mut VaultState) {
        let outcome = if state.unconfirmed.is_some() {
            self.confirm_enrollment(ctx, local, state, 1).await
        } else if state.enrollment.as_ref().is_some_and(|e| !e.activated) {
            self.activate(ctx, local, state).await
        } else {
            return;
        };
        if let Err(error) = outcome {
            tracing::info!(transaction_id = %ctx.transaction_id, %error, "pending enrollment not completed yet");
        }
    }

    /// The server no longer knows this device (revoked, expired, disabled as a clone): clear
    /// the local enrollment so the device can enroll again.
    pub(super) fn forget_device(
        &self,
        local: &mut Local,
        state: &mut VaultState,
    ) -> Result<(), Error> {
        if let Some(enrollment) = state.enrollment.take() {
            signer::discard(&enrollment.key, self.host.device_keys.as_ref());
        }
        local.write(state)
    }

    /// Whether the vault holds an active enrollment (without asking the server).
    async fn activated_locally(&self) -> bool {
        let mut local = self.local.lock().await;
        local
            .read()
            .is_ok_and(|state| state.enrollment.is_some_and(|e| e.activated))
    }

    /// Android without `smsCode`: the host's SMS reader, for at most the configured timeout.
    async fn sms_code_from_host(&self) -> Result<Secret, Error> {
        let provider = match (&self.host.sms_codes, self.config.platform) {
            (Some(p), Platform::Android) => p.clone(),
            _ => return Err(Error::MissingParameter("smsCode")),
        };
        let timeout = self.config.sms_code_timeout;
        let read = tokio::task::spawn_blocking(move || provider.sms_code(timeout));
        let code = match tokio::time::timeout(timeout, read).await {
            Ok(Ok(Some(code))) => zeroize::Zeroizing::new(code),
            _ => {
                tracing::info!("no SMS code from the host's reader in time");
                return Err(Error::MissingParameter("smsCode"));
            }
        };
        let code = code.trim();
        if !SMS_DIGITS.contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidParameter("smsCode"));
        }
        Ok(Secret::new(code.to_owned()))
    }
}
