//! Domain logic: what each API call means, independent of HTTP. Cryptography runs here, outside
//! database transactions; each state change is one [`Store`] step.

mod accounts;
pub mod crypto;
mod enrollment;
mod management;
mod otp;
pub mod phone;
mod sms_codes;

use std::sync::Arc;

use pims_proto::SmsPurpose;

use crate::clock::Clock;
use crate::config::{Limits, ServerConfig};
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::sms::SmsSender;
use crate::store::{CodeMatcher, StepLimits, Store};

pub struct Service {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) limits: Limits,
    pub(crate) clock: Clock,
    pub(crate) sms: Arc<dyn SmsSender>,
    pub(crate) metrics: Arc<Metrics>,
    sms_domain: String,
    sms_app_hash: String,
}

impl Service {
    pub fn new(
        config: &ServerConfig,
        store: Arc<dyn Store>,
        keys: Arc<Keys>,
        sms: Arc<dyn SmsSender>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Service {
            store,
            keys,
            metrics,
            limits: config.limits.clone(),
            clock: config.clock.clone(),
            sms,
            sms_domain: config.sms_domain.clone(),
            sms_app_hash: config.sms_app_hash.clone(),
        }
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
