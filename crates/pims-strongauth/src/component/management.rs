//! Account management: remove, PIN reset and update, phone number change, devices, and the
//! device-signed challenge those operations share.

use super::*;

impl Core {
    /// `enrollment remove`: every enrollment of the account and its PIN, on the server first,
    /// then here. Needs no enrolled device and works while PIN-blocked: it is the way out of
    /// 2317. An unreadable local vault is replaced too.
    pub(super) async fn remove(&self, ctx: &Ctx) -> Result<Value, Error> {
        let mut local = self.local.lock().await;
        let state = local.read_or_replace()?;
        self.call::<ep::EnrollmentsRemove>(ctx, &[], &Empty {})
            .await?;
        if let Some(e) = &state.enrollment {
            signer::discard(&e.key, self.host.device_keys.as_ref());
        }
        if let Some(u) = &state.unconfirmed {
            signer::discard(&u.key, self.host.device_keys.as_ref());
        }
        local.write(&VaultState::default())?;
        tracing::info!(transaction_id = %ctx.transaction_id, "every enrollment removed");
        Ok(Value::Null)
    }

    /// `pincode reset`: a new PIN, authorised by the `resetPIN` SMS code and this device. The
    /// server answers the new PIN's registration only once it has accepted the code.
    pub(super) async fn reset_pin(
        &self,
        ctx: &Ctx,
        pin: Secret,
        sms_code: Secret,
    ) -> Result<Value, Error> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        let device_id = self.active_device(ctx, &mut local, &mut state).await?;
        let challenge = self
            .device_challenge(ctx, &mut local, &mut state, &device_id, None)
            .await?;
        let authorization = PinAuthorization::SmsCode(sms_code.expose().to_owned());
        self.change_pin(ctx, &mut local, &mut state, &challenge, authorization, &pin)
            .await?;
        tracing::info!(transaction_id = %ctx.transaction_id, "PIN reset");
        Ok(Value::Null)
    }

    /// `pincode update`: proves the old PIN (OPAQUE login, counted by the server) and only then
    /// registers the new one. The PIN never leaves the device, so "new equals current" is
    /// decided here: once the server has accepted the old PIN as the current one, the new PIN
    /// equals the current one exactly when it equals the old one.
    pub(super) async fn update_pin(
        &self,
        ctx: &Ctx,
        old: Secret,
        new: Secret,
    ) -> Result<Value, Error> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        let device_id = self.active_device(ctx, &mut local, &mut state).await?;
        let same = old.expose() == new.expose();
        let (login, login_message) = pin::start(&old, false);
        let challenge = self
            .device_challenge(ctx, &mut local, &mut state, &device_id, Some(login_message))
            .await?;
        let Some(login_response) = challenge.login.clone() else {
            return Err(Error::Malformed);
        };
        let login = pin::finish(login, &old, login_response).await?;
        let proven = matches!(login, PinFinish::Login(_));
        if same || !proven {
            // A wrong old PIN is 2308/2310, a right one equal to the new PIN is 2315.
            self.prove_pin_only(ctx, &mut local, &mut state, &challenge, login)
                .await?;
            return Err(Error::SamePin);
        }
        let authorization = PinAuthorization::Pin(login);
        self.change_pin(ctx, &mut local, &mut state, &challenge, authorization, &new)
            .await?;
        tracing::info!(transaction_id = %ctx.transaction_id, "PIN updated");
        Ok(Value::Null)
    }

    /// `enroll` on an active device: proves `pin` through the PIN update's authorization
    /// step, counted by the server like any PIN check (2308/2310 when wrong); nothing changes.
    pub(super) async fn validate_pin(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
        pin: &Secret,
    ) -> Result<(), Error> {
        let device_id = self.active_device(ctx, local, state).await?;
        let (exchange, login_message) = pin::start(pin, false);
        let challenge = self
            .device_challenge(ctx, local, state, &device_id, Some(login_message))
            .await?;
        let Some(login_response) = challenge.login.clone() else {
            return Err(Error::Malformed);
        };
        let login = pin::finish(exchange, pin, login_response).await?;
        self.prove_pin_only(ctx, local, state, &challenge, login)
            .await?;
        tracing::info!(transaction_id = %ctx.transaction_id, "PIN validated");
        Ok(())
    }

    /// Sends a PIN-change start with only the PIN proof (device-signed, counted by the
    /// server): nothing is registered or changed.
    async fn prove_pin_only(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
        challenge: &DeviceChallenge,
        login: PinFinish,
    ) -> Result<(), Error> {
        let request = StartPinChange {
            proof: DeviceProof::default(),
            authorization: PinAuthorization::Pin(login),
            registration: None,
        };
        let _: PinChangeStarted = self
            .signed_pin_change_start(ctx, local, state, challenge, request)
            .await?;
        Ok(())
    }

    /// The two halves of a PIN change: the authorized start answers the new PIN's OPAQUE
    /// registration, the finish sends its upload over the challenge the start returned.
    async fn change_pin(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
        challenge: &DeviceChallenge,
        authorization: PinAuthorization,
        new_pin: &Secret,
    ) -> Result<(), Error> {
        let (exchange, registration) = pin::start(new_pin, true);
        let request = StartPinChange {
            proof: DeviceProof::default(),
            authorization,
            registration: Some(registration),
        };
        let started = self
            .signed_pin_change_start(ctx, local, state, challenge, request)
            .await?;
        let Some(next) = started.next else {
            return Err(Error::Malformed);
        };
        let Some(response) = next.register.clone() else {
            return Err(Error::Malformed);
        };
        let PinFinish::Register(upload) = pin::finish(exchange, new_pin, response).await? else {
            return Err(Error::Malformed);
        };
        let proof = self.sign_operation(
            local,
            state,
            transcript::PIN_CHANGE_FINISH,
            &next,
            upload.as_slice(),
        )?;
        let request = FinishPinChange {
            proof,
            registration: upload,
        };
        self.device_call::<ep::PinChangeFinish>(ctx, local, state, &[], &request)
            .await
            .map(|Empty {}| ())
    }

    /// Signs a PIN-change start over `challenge` and sends it.
    async fn signed_pin_change_start(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
        challenge: &DeviceChallenge,
        mut request: StartPinChange,
    ) -> Result<PinChangeStarted, Error> {
        request.proof = self.sign_operation(
            local,
            state,
            request.operation(),
            challenge,
            &request.signed_payload(),
        )?;
        self.device_call::<ep::PinChange>(ctx, local, state, &[], &request)
            .await
    }

    /// `smscode modifyPhoneNumber`: the number certified by a `phoneNumberCertification` code
    /// becomes the trusted one; this device signs the change and, when the app gives the
    /// current PIN, proves it in the same operation (counted like any PIN check).
    pub(super) async fn modify_phone_number(
        &self,
        ctx: &Ctx,
        phone_number: PhoneNumber,
        sms_code: Secret,
        pin: Option<Secret>,
    ) -> Result<Value, Error> {
        let mut local = self.local.lock().await;
        let mut state = local.read()?;
        let device_id = self.active_device(ctx, &mut local, &mut state).await?;
        let exchange = pin.as_ref().map(|p| pin::start(p, false));
        let login_message = exchange.as_ref().map(|(_, m)| m.clone());
        let challenge = self
            .device_challenge(ctx, &mut local, &mut state, &device_id, login_message)
            .await?;
        let login = match (exchange, &pin, challenge.login.clone()) {
            (Some((exchange, _)), Some(pin), Some(response)) => {
                Some(pin::finish(exchange, pin, response).await?)
            }
            (None, None, None) => None,
            _ => return Err(Error::Malformed),
        };
        let mut request = ModifyPhoneNumber {
            proof: DeviceProof::default(),
            phone_number: phone_number.number,
            region: phone_number.region,
            sms_code: sms_code.expose().to_owned(),
            login,
        };
        request.proof = self.sign_operation(
            &mut local,
            &mut state,
            transcript::PHONE_NUMBER_MODIFY,
            &challenge,
            &request.signed_payload(),
        )?;
        self.device_call::<ep::PhoneNumberModify>(ctx, &mut local, &mut state, &[], &request)
            .await?;
        tracing::info!(transaction_id = %ctx.transaction_id, "trusted phone number modified");
        Ok(Value::Null)
    }

    /// GET `pims.authentication.devices`.
    pub(super) async fn list_devices(&self, ctx: &Ctx) -> Result<Value, Error> {
        let this_device = {
            let mut local = self.local.lock().await;
            local
                .read()
                .ok()
                .and_then(|s| s.enrollment.map(|e| e.device_id))
        };
        let list = self.call::<ep::Devices>(ctx, &[], &Empty {}).await?;
        let devices: Vec<Value> = list
            .devices
            .into_iter()
            .map(|d| {
                json!({
                    "deviceId": d.device_id,
                    "name": d.name,
                    "platform": d.platform.as_str(),
                    "state": match d.state {
                        DeviceState::Pending => "Pending",
                        DeviceState::Active => "Active",
                        DeviceState::Disabled => "Disabled",
                    },
                    "createdAt": d.created_at,
                    "lastUsedAt": d.last_used_at,
                    "isThisDevice": this_device.as_deref() == Some(d.device_id.as_str()),
                })
            })
            .collect();
        Ok(json!({ "devices": devices }))
    }

    /// SET `pims.authentication.devices` `action=remove`: revokes one device of the account
    /// (this one included, which then forgets its enrollment).
    pub(super) async fn revoke_device(&self, ctx: &Ctx, device_id: &str) -> Result<Value, Error> {
        let mut local = self.local.lock().await;
        self.call::<ep::DeviceRevoke>(ctx, &[device_id], &Empty {})
            .await?;
        if let Ok(mut state) = local.read() {
            if state
                .enrollment
                .as_ref()
                .is_some_and(|e| e.device_id == device_id)
            {
                // Revoked on the server already; a vault that cannot be written is found
                // out, and cleared, by the next call.
                let _ = self.forget_device(&mut local, &mut state);
            }
        }
        tracing::info!(transaction_id = %ctx.transaction_id, "device revoked");
        Ok(Value::Null)
    }

    /// The id of this device's Active enrollment, which the account-management operations need.
    pub(super) async fn active_device(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
    ) -> Result<String, Error> {
        self.resume(ctx, local, state).await;
        match &state.enrollment {
            Some(e) if e.activated => Ok(e.device_id.clone()),
            Some(_) => Err(Error::ActivationPending),
            None => Err(Error::NotEnrolled),
        }
    }

    pub(super) async fn device_challenge(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
        device_id: &str,
        login: Option<Bytes>,
    ) -> Result<DeviceChallenge, Error> {
        let proof = login
            .as_ref()
            .map(|request| self.sign_login_start(local, state, request))
            .transpose()?;
        let request = DeviceChallengeRequest { login, proof };
        self.device_call::<ep::DeviceChallenges>(ctx, local, state, &[device_id], &request)
            .await
    }

    /// Signs the start of a PIN login (the OPAQUE credential request) with the next counter,
    /// written to the vault before use: only this device can spend the account's PIN attempts.
    pub(super) fn sign_login_start(
        &self,
        local: &mut Local,
        state: &mut VaultState,
        credential_request: &Bytes,
    ) -> Result<LoginProof, Error> {
        self.sign_next(local, state, |e| {
            pims_device::login_proof(&e.device_id, e.counter, credential_request.as_slice())
        })
    }

    /// A request on behalf of this device: a server that no longer knows it makes it forget
    /// its enrollment (2312), so it can enroll again.
    pub(super) async fn device_call<E: Endpoint>(
        &self,
        ctx: &Ctx,
        local: &mut Local,
        state: &mut VaultState,
        values: &[&str],
        body: &E::Request,
    ) -> Result<E::Response, Error> {
        match self.call::<E>(ctx, values, body).await {
            Ok(v) => Ok(v),
            Err(CallError::Api(ApiError::DeviceUnknown)) => {
                self.forget_device(local, state)?;
                Err(Error::Api(ApiError::DeviceUnknown))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Signs `operation` over a device challenge with the next counter, written to the vault
    /// before use so a counter is never reused.
    pub(super) fn sign_operation(
        &self,
        local: &mut Local,
        state: &mut VaultState,
        operation: &str,
        challenge: &DeviceChallenge,
        payload: &[u8],
    ) -> Result<DeviceProof, Error> {
        self.sign_next(local, state, |e| {
            pims_device::operation_proof(operation, challenge, &e.device_id, e.counter, payload)
        })
    }

    /// Signs a device ceremony with the next counter, written to the vault before use so a
    /// counter is never reused (the server disables a device whose counter does not grow).
    pub(super) fn sign_next<T>(
        &self,
        local: &mut Local,
        state: &mut VaultState,
        ceremony: impl FnOnce(&Enrollment) -> pims_device::ToSign<T>,
    ) -> Result<T, Error> {
        let Some(enrollment) = state.enrollment.as_mut() else {
            return Err(Error::NoLocalEnrollment);
        };
        enrollment.counter += 1;
        let to_sign = ceremony(enrollment);
        let key = enrollment.key.clone();
        local.write(state)?;
        let signature = signer::sign(&key, self.host.device_keys.as_ref(), &to_sign.transcript)?;
        Ok(to_sign.signed(signature))
    }
}
