//! The remote-command service: between a device and a car. It checks a command proof with the
//! same verifier the car runs, takes it once (its challenge), applies the device's counter
//! rule and — for a command that needs the PIN — the counted PIN check, then co-signs the
//! envelope's digest and relays the proof. It never holds a device key, so it cannot make a
//! proof the car accepts; and it can ask a car to remove keys, never to add one.

use std::collections::HashMap;
use std::time::Duration;

use pims_command::{
    key_id, keychain_sync_message, pin_message, Fault, KeyEntry, PinCheck, Policy, Proof, Role,
    SyncedKey, Verifier, Window,
};
use pims_proto::{
    car, transcript, ApiError, Bytes, CommandSent, CommandServiceKeys, CommandVerified,
    DeviceState, KeychainRemovals, KeychainSync, PairVehicle, PinFinish, SendCommand,
    VehiclePaired, VehicleReceipt, VerifyCommand,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::accounts::check_id;
use super::{crypto, Service};
use crate::config::CommandsConfig;
use crate::error::{api, Result};
use crate::store::{DeviceOperation, DeviceOperationStep};

/// How far a device's clock may run ahead of the service's.
const CLOCK_SKEW_SECONDS: u64 = 10;
/// The most keys one keychain sync may ask about (a car asks in batches).
pub const MAX_SYNC_KEYS: usize = 64;
/// The largest answer read from a car.
const MAX_VEHICLE_ANSWER: usize = 64 * 1024;

pub(crate) struct CommandService {
    audience: String,
    policy: Policy,
    vehicles: HashMap<String, String>,
    http: reqwest::Client,
}

impl CommandService {
    pub(crate) fn new(config: &CommandsConfig) -> anyhow::Result<Self> {
        Ok(CommandService {
            audience: config.audience.clone(),
            policy: config.policy()?,
            vehicles: config
                .vehicles
                .iter()
                .map(|v| (v.vin.clone(), v.url.trim_end_matches('/').to_string()))
                .collect(),
            // Connections to cars are HTTP/1.1 kept alive and pooled (reqwest's defaults: idle
            // ones kept 90 s, no cap per car), so a command costs no new handshake; the test
            // the_service_relays_to_a_car_over_one_kept_connection holds this.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(config.vehicle_timeout_seconds))
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()?,
        })
    }

    pub(crate) fn audience(&self) -> &str {
        &self.audience
    }

    fn vehicle(&self, vin: &str) -> Result<&str> {
        match self.vehicles.get(vin) {
            Some(url) => Ok(url),
            None => api(ApiError::VehicleUnknown),
        }
    }

    /// One call to a car; it answers JSON, or an error status (the car's refusals of a
    /// pairing are 403).
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        url: &str,
        path: &str,
        body: &Req,
    ) -> Result<Resp> {
        let response = self
            .http
            .post(format!("{url}{path}"))
            .json(body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "vehicle unreachable");
                return api(ApiError::VehicleUnreachable);
            }
        };
        if response.status() == reqwest::StatusCode::FORBIDDEN {
            return api(ApiError::PairingRefused);
        }
        match response.error_for_status() {
            Ok(mut r) => {
                // A car's answer is small: whatever sits between the service and the car
                // cannot make the service buffer more.
                let mut body = Vec::new();
                while let Ok(Some(chunk)) = r.chunk().await {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_VEHICLE_ANSWER {
                        return api(ApiError::VehicleUnreachable);
                    }
                }
                match serde_json::from_slice(&body) {
                    Ok(v) => Ok(v),
                    Err(_) => api(ApiError::VehicleUnreachable),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "vehicle answered an error");
                api(ApiError::VehicleUnreachable)
            }
        }
    }
}

fn refused(fault: Fault) -> ApiError {
    ApiError::CommandRefused {
        fault: fault.as_str().into(),
    }
}

impl Service {
    /// `GET /v1/commands/keys`.
    pub fn command_keys(&self) -> CommandServiceKeys {
        CommandServiceKeys {
            audience: self.commands.audience.clone(),
            pin_cosign_key: self.pin_cosign_public_key().into(),
        }
    }

    fn pin_cosign_public_key(&self) -> Vec<u8> {
        self.keys.command_cosign.public_key().to_vec()
    }

    /// A low-S DER signature by the PIN co-signing key.
    fn cosign(&self, message: &[u8]) -> Result<Vec<u8>> {
        Ok(self
            .keys
            .command_cosign
            .sign(message)
            .map_err(anyhow::Error::from)?)
    }

    /// `POST /v1/commands`: verify as the car will, take the proof once under the device's
    /// counter rule and (when proven) the PIN, co-sign, relay; the car's signed receipt back.
    pub async fn send_command(&self, account: &str, req: SendCommand) -> Result<CommandSent> {
        check_id(&req.device_id, "deviceId")?;
        check_id(&req.challenge_id, "challengeId")?;
        let now = self.now();
        let mut proof = Proof::parse(req.proof.as_slice()).map_err(refused)?;
        let envelope = proof.envelope.clone();
        let url = self.commands.vehicle(&envelope.vin)?;
        let challenge = self.open_challenge(account, &req.challenge_id, now).await?;
        if challenge.device_id != req.device_id {
            return api(ApiError::InvalidParameter {
                name: "deviceId".into(),
            });
        }
        if envelope.challenge != challenge.nonce {
            return api(ApiError::InvalidParameter {
                name: "proof".into(),
            });
        }
        let verifier = Verifier {
            vin: envelope.vin.as_str(),
            audience: &self.commands.audience,
            policy: &self.commands.policy,
            pin: PinCheck::Issuer,
            clock_skew: CLOCK_SKEW_SECONDS,
        };
        let device_key = KeyEntry {
            public_key: challenge.device_public_key.clone(),
            // The car knows roles; here every device speaks for its own account.
            role: Role::Owner,
            active: true,
            // The device's counter rule is the store's, applied in the step.
            window: Window::default(),
        };
        let device_key_id = key_id(&challenge.device_public_key);
        let (signature_ok, needs_pin) =
            match verifier.verify(req.proof.as_slice(), now.max(0) as u64, |id| {
                (*id == device_key_id).then_some(device_key)
            }) {
                Ok(accepted) => (true, accepted.needs_pin),
                // The step takes the challenge and answers `BadSignature`.
                Err(Fault::BadSignature) => (false, false),
                Err(fault) => return Err(refused(fault).into()),
            };
        let login_state = self.challenge_login_state(account, &challenge)?;
        // The PIN evidence must be what the envelope binds, so it serves this envelope only.
        let bad_pin = || api(ApiError::InvalidParameter { name: "pin".into() });
        let pin_ok = match (&login_state, &req.pin, &req.pin_otp, &envelope.pin_binding) {
            (None, None, None, None) => None,
            (Some(state), Some(PinFinish::Login(finalization)), None, Some(binding)) => {
                if transcript::digest(finalization.as_slice()) != *binding {
                    return bad_pin();
                }
                Some(crypto::login_finish(state, finalization.as_slice()))
            }
            (Some(_), Some(PinFinish::LoginFailed), None, Some(binding))
                if transcript::digest(&[]) == *binding =>
            {
                Some(false)
            }
            (None, None, Some(otp), Some(binding))
                if transcript::digest(otp.as_bytes()) == *binding =>
            {
                None
            }
            _ => return bad_pin(),
        };
        if needs_pin && pin_ok.is_none() && req.pin_otp.is_none() {
            // Nothing was tried: the app asks the user for the PIN (2302) and sends again.
            return api(ApiError::PinRequired {
                command: envelope.command.kind().as_str().into(),
            });
        }
        let pin_otp = req.pin_otp.as_deref().map(|otp| {
            (
                crypto::otp_mac(&self.keys.otp, otp),
                self.commands.audience.clone(),
            )
        });
        let outcome = self
            .store
            .device_operation(DeviceOperationStep {
                account: account.to_string(),
                challenge_id: challenge.id.clone(),
                counter: envelope.counter,
                signature_ok,
                pin_ok,
                operation: DeviceOperation::AuthorizeCommand {
                    command: envelope.command.kind().as_str().into(),
                    vin: envelope.vin.clone(),
                    needs_pin,
                    pin_otp,
                },
                now,
                pin_attempts: self.limits.pin_attempts,
            })
            .await;
        if pin_ok.is_some() {
            self.metrics.pin_outcome(&outcome);
        }
        let with_pin = outcome?.command_with_pin == Some(true);
        // Only the service's own co-signature travels: whatever the client attached is dropped.
        proof.pin_cosignature = with_pin
            .then(|| self.cosign(&pin_message(&proof.envelope_bytes)))
            .transpose()?;
        let relayed = proof.encode();
        tracing::info!(
            device_id = %req.device_id,
            command = envelope.command.kind().as_str(),
            with_pin,
            "command relayed"
        );
        let receipt: VehicleReceipt = self
            .commands
            .call(
                url,
                car::COMMANDS,
                &car::Command {
                    proof: relayed.clone().into(),
                },
            )
            .await?;
        Ok(CommandSent {
            proof: relayed.into(),
            receipt,
        })
    }

    /// `POST /v1/commands/verify`, for an authenticated relying party: the proof as the car
    /// checks it (pinned co-signing key, policy, expiry), signed by the named device while it
    /// is Active. Replays are the car's and the service's to refuse: this answer is a check.
    pub async fn verify_command(&self, req: VerifyCommand) -> Result<CommandVerified> {
        check_id(&req.subject, "subject")?;
        check_id(&req.device_id, "deviceId")?;
        let proof = Proof::parse(req.proof.as_slice()).map_err(refused)?;
        let device = self.store.device(&req.subject, &req.device_id).await?;
        let Some(device) = device.filter(|d| d.state == DeviceState::Active) else {
            return api(ApiError::DeviceUnknown);
        };
        let cosign_key = self.pin_cosign_public_key();
        let verifier = Verifier {
            vin: &proof.envelope.vin,
            audience: &self.commands.audience,
            policy: &self.commands.policy,
            pin: PinCheck::Cosignature(&cosign_key),
            clock_skew: CLOCK_SKEW_SECONDS,
        };
        let device_key_id = key_id(&device.public_key);
        let assurance = device.assurance.clone();
        let entry = KeyEntry {
            public_key: device.public_key,
            role: Role::Owner,
            active: true,
            window: Window::default(),
        };
        let accepted = verifier
            .verify(req.proof.as_slice(), self.now().max(0) as u64, |id| {
                (*id == device_key_id).then_some(entry)
            })
            .map_err(refused)?;
        let facts = self
            .store
            .pin_facts(&req.subject)
            .await?
            .unwrap_or_default();
        let e = accepted.envelope;
        Ok(CommandVerified {
            subject: req.subject,
            device_id: req.device_id,
            vin: e.vin,
            command: e.command.kind().as_str().into(),
            with_pin: accepted.with_pin,
            pin_required: accepted.needs_pin,
            counter: e.counter,
            expires_at: e.expires_at,
            assurance,
            pin_set_at: facts.pin_set_at,
            pin_set_by: facts.pin_set_by,
            pin_recovered_at: facts.pin_recovered_at,
        })
    }

    /// `POST /v1/vehicles/{vin}/pair`: relays an Active device's key and its pairing MAC. The
    /// service does not know the code, so it can neither read it nor put another key in.
    pub async fn pair_vehicle(
        &self,
        account: &str,
        vin: &str,
        req: PairVehicle,
    ) -> Result<VehiclePaired> {
        check_id(&req.device_id, "deviceId")?;
        let url = self.commands.vehicle(vin)?;
        if req.mac.as_slice().len() != 32 {
            return api(ApiError::InvalidParameter { name: "mac".into() });
        }
        let device = self.store.device(account, &req.device_id).await?;
        let Some(device) = device.filter(|d| d.state == DeviceState::Active) else {
            return api(ApiError::DeviceUnknown);
        };
        let pair = car::Pair {
            public_key: device.public_key.into(),
            mac: req.mac,
            account: account.to_string(),
            device_id: req.device_id,
        };
        self.commands.call(url, car::PAIR, &pair).await
    }

    /// `POST /v1/vehicles/{vin}/keychain/sync`: the keys among those a car holds whose device
    /// is no longer Active (revoked, disabled, removed), signed for the car's nonce. Anyone
    /// may ask: the answer says only whether a device whose account, id and key the asker
    /// already knows is still active.
    pub async fn keychain_sync(&self, vin: &str, req: KeychainSync) -> Result<KeychainRemovals> {
        self.commands.vehicle(vin)?;
        let nonce = req.nonce.as_slice();
        if !(16..=64).contains(&nonce.len()) || req.keys.len() > MAX_SYNC_KEYS {
            return api(ApiError::InvalidParameter {
                name: "keys".into(),
            });
        }
        let mut remove = Vec::new();
        for key in &req.keys {
            let Ok(id) = <[u8; 32]>::try_from(key.key_id.as_slice()) else {
                return api(ApiError::InvalidParameter {
                    name: "keyId".into(),
                });
            };
            let active = match check_id(&key.device_id, "deviceId")
                .and_then(|_| check_id(&key.account, "account"))
            {
                Ok(()) => self
                    .store
                    .device(&key.account, &key.device_id)
                    .await?
                    .is_some_and(|d| d.state == DeviceState::Active && key_id(&d.public_key) == id),
                Err(_) => false,
            };
            if !active {
                remove.push(id);
            }
        }
        let asked: Vec<SyncedKey<'_>> = req
            .keys
            .iter()
            .map(|k| SyncedKey {
                account: &k.account,
                device_id: &k.device_id,
                key_id: k.key_id.as_slice(),
            })
            .collect();
        let signature = self.cosign(&keychain_sync_message(vin, nonce, &asked, &remove))?;
        Ok(KeychainRemovals {
            remove: remove.into_iter().map(|id| Bytes(id.to_vec())).collect(),
            signature: signature.into(),
        })
    }
}
