//! Domain logic: what each API call means, independent of HTTP. Cryptography runs here, outside
//! database transactions; each state change is one [`Store`] step.

mod accounts;
pub mod attestation;
mod commands;
pub mod crypto;
mod enrollment;
mod management;
mod operators;
mod otp;
pub mod phone;
mod sms_codes;

use std::sync::Arc;

use pims_proto::{ApiError, SmsPurpose};

use crate::clock::Clock;
use crate::config::{Limits, ServerConfig};
use crate::error::{api, Result};
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::sms::{mask_number, Notice, SmsSender};
use crate::store::{CodeMatcher, StepLimits, Store};

pub use operators::{Operator, OperatorAccount, OperatorHold};

pub struct Service {
    /// Private: every door (the `/v1` API, the admin API, the console) goes through the
    /// service's methods, so each rule is applied the same way whoever asks.
    store: Arc<dyn Store>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) limits: Limits,
    pub(crate) clock: Clock,
    pub(crate) sms: Arc<dyn SmsSender>,
    pub(crate) metrics: Arc<Metrics>,
    sms_domain: String,
    sms_app_hash: String,
    relying_parties: Vec<String>,
    otp_default_audience: Option<String>,
    commands: commands::CommandService,
    attestation: attestation::Attestation,
}

impl Service {
    pub fn new(
        config: &ServerConfig,
        store: Arc<dyn Store>,
        keys: Arc<Keys>,
        sms: Arc<dyn SmsSender>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        Ok(Service {
            store,
            keys,
            metrics,
            limits: config.limits.clone(),
            clock: config.clock.clone(),
            sms,
            sms_domain: config.sms_domain.clone(),
            sms_app_hash: config.sms_app_hash.clone(),
            relying_parties: config
                .relying_parties
                .iter()
                .map(|rp| rp.id.clone())
                .collect(),
            otp_default_audience: config.otp_default_audience.clone(),
            commands: commands::CommandService::new(&config.commands)?,
            attestation: attestation::Attestation::new(config)?,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    fn step_limits(&self) -> StepLimits {
        StepLimits {
            pin_attempts: self.limits.pin_attempts,
            sms_code_max_checks: self.limits.sms_code_max_checks,
            max_devices: self.limits.max_devices_per_account,
            pending_device_ttl: self.limits.pending_device_ttl_seconds,
        }
    }

    /// The relying party an OTP is for: the one named (it must be configured), else the
    /// configured default, else the only relying party. With several and no default the app
    /// must name one; with none, no OTP could be verified anyway.
    fn otp_audience(&self, requested: Option<&str>) -> Result<Option<String>> {
        let invalid = || {
            api(ApiError::InvalidParameter {
                name: "audience".into(),
            })
        };
        match requested {
            Some(id) if self.relying_parties.iter().any(|rp| rp == id) => Ok(Some(id.to_string())),
            // An OTP with PIN that the device spends on its own command (after 2302).
            Some(id) if id == self.commands.audience() => Ok(Some(id.to_string())),
            Some(_) => invalid(),
            None => match (&self.otp_default_audience, self.relying_parties.as_slice()) {
                (Some(default), _) => Ok(Some(default.clone())),
                (None, [only]) => Ok(Some(only.clone())),
                (None, []) => Ok(None),
                (None, _) => invalid(),
            },
        }
    }

    /// Tells the owner of `number` about a change to their account. Delivery failure is logged,
    /// not returned: the change itself is committed and must be reported as done.
    async fn notify(&self, number: Option<&str>, notice: Notice) {
        self.notify_text(number, notice, &notice.text()).await
    }

    /// Sends `notice` with its own `text` (one that carries more than [`Notice::text`]).
    async fn notify_text(&self, number: Option<&str>, notice: Notice, text: &str) {
        let Some(number) = number else { return };
        match self.sms.send(number, text, self.now()).await {
            Ok(()) => {
                self.metrics
                    .notices_sent
                    .with_label_values(&[notice.as_str()])
                    .inc();
                tracing::info!(notice = notice.as_str(), to = %mask_number(number), "security notice sent");
            }
            Err(e) => tracing::warn!(
                notice = notice.as_str(),
                to = %mask_number(number),
                error = %format!("{e:#}"),
                "security notice not delivered"
            ),
        }
    }

    /// The account's trusted number, to send a notice to.
    async fn trusted_number(&self, account: &str) -> Option<String> {
        match self.store.account(account).await {
            Ok(record) => record.and_then(|r| r.phone_number),
            Err(e) => {
                tracing::warn!(error = %e, "reading the trusted number for a notice failed");
                None
            }
        }
    }

    /// Matches `candidate` against the code of `(account, purpose, number, nonce)`.
    fn code_matcher(&self, account: &str, purpose: SmsPurpose, candidate: &str) -> CodeMatcher {
        let key = self.keys.sms_code;
        let account = account.to_string();
        let candidate = candidate.trim().to_string();
        let digits = self.limits.sms_code_digits;
        Arc::new(move |phone: &str, nonce: &[u8]| {
            let expected = crypto::sms_code(&key, &account, purpose, phone, nonce, digits);
            crypto::code_matches(&candidate, &expected)
        })
    }
}
