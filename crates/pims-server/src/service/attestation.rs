//! Device key attestation at enrollment: what the attestation the device sent proves
//! (`pims-attest`, the platform owners' rules), under the `[attestation]` configuration.
//!
//! The outcome is an [`Assurance`] and, when an attestation was refused, the rule that failed
//! (`challenge: …`): a refused attestation downgrades the device to `unattested`, and refuses
//! the enrollment only where `required_to_enroll` asks for more than what was proven. A device
//! that sends no attestation (software keys: desktop, tests, hosts without a keystore) is
//! `unattested`: the server has no evidence that its key is a software one rather than a hidden
//! hardware one, and records only what was proven.

use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use pims_attest::{
    verify_android, verify_app_attest, AndroidApp, AndroidExpectations, AppAttestEnvironment,
    AppAttestExpectations, Assurance, RevocationList, SecurityLevel,
};
use pims_proto::{transcript, ApiError, DeviceAttestation};

use crate::config::ServerConfig;

/// What an enrollment's attestation proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proven {
    pub assurance: Assurance,
    /// `rule: why` when an attestation was sent and refused.
    pub detail: Option<String>,
}

pub struct Attestation {
    android_apps: Vec<AndroidApp>,
    /// Team and bundle id, when the iOS app is configured.
    apple: Option<(String, String)>,
    apple_environment: AppAttestEnvironment,
    revoked: Arc<RwLock<Arc<RevocationList>>>,
    required_to_enroll: Option<Assurance>,
    /// Relying party id → the least assurance its OTPs need.
    required_by: Vec<(String, Assurance)>,
}

impl Attestation {
    /// Reads the revocation list (a configured list that cannot be read is a configuration
    /// error) and, inside a runtime, starts re-reading it every `revocation_refresh_seconds`.
    pub fn new(config: &ServerConfig) -> anyhow::Result<Attestation> {
        let a = &config.attestation;
        let revoked = match &a.revocation_list {
            Some(path) => read_list(path)?,
            None => RevocationList::empty(),
        };
        let revoked = Arc::new(RwLock::new(Arc::new(revoked)));
        if let (Some(path), Ok(runtime)) =
            (&a.revocation_list, tokio::runtime::Handle::try_current())
        {
            runtime.spawn(refresh(
                Arc::downgrade(&revoked),
                path.clone(),
                Duration::from_secs(a.revocation_refresh_seconds),
            ));
        }
        Ok(Attestation {
            android_apps: a.android_apps()?,
            apple: a.apple_team_id.clone().zip(a.apple_bundle_id.clone()),
            apple_environment: a.apple_environment()?,
            revoked,
            required_to_enroll: a.required_to_enroll,
            required_by: config
                .relying_parties
                .iter()
                .filter_map(|rp| rp.required_assurance.map(|r| (rp.id.clone(), r)))
                .collect(),
        })
    }

    /// The least assurance relying party `rp` requires of an OTP's device, if any.
    pub fn required_for(&self, rp: &str) -> Option<Assurance> {
        self.required_by
            .iter()
            .find(|(id, _)| id == rp)
            .map(|(_, required)| *required)
    }

    /// What `attestation` proves of `public_key` for the enrollment `(enrollment_id, nonce)`,
    /// checked at `now` (server time).
    pub fn verify(
        &self,
        attestation: Option<&DeviceAttestation>,
        enrollment_id: &str,
        nonce: &[u8],
        public_key: &[u8],
        now: i64,
    ) -> Proven {
        let at = UNIX_EPOCH + Duration::from_secs(now.max(0) as u64);
        let outcome = match attestation {
            None => {
                return Proven {
                    assurance: Assurance::Unattested,
                    detail: None,
                }
            }
            Some(DeviceAttestation::Android { chain }) => {
                self.android(chain, enrollment_id, nonce, public_key, at)
            }
            Some(DeviceAttestation::AppAttest { object, key_id }) => self.app_attest(
                object.as_slice(),
                key_id.as_slice(),
                enrollment_id,
                nonce,
                public_key,
                at,
            ),
        };
        match outcome {
            Ok(assurance) => Proven {
                assurance,
                detail: None,
            },
            Err(detail) => Proven {
                assurance: Assurance::Unattested,
                detail: Some(detail),
            },
        }
    }

    /// The refusal of an enrollment that proved `proven` where the policy requires more.
    pub fn refusal(&self, proven: &Proven) -> Option<ApiError> {
        let required = self.required_to_enroll?;
        (!proven.assurance.meets(required)).then(|| ApiError::AttestationRequired {
            required: required.as_str().into(),
            got: proven.assurance.as_str().into(),
            reason: proven
                .detail
                .as_deref()
                .map(|d| d.split(':').next().unwrap_or(d).to_string()),
        })
    }

    fn android(
        &self,
        chain: &[pims_proto::Bytes],
        enrollment_id: &str,
        nonce: &[u8],
        public_key: &[u8],
        at: SystemTime,
    ) -> Result<Assurance, String> {
        let chain: Vec<Vec<u8>> = chain.iter().map(|c| c.0.clone()).collect();
        // The hardware policy (a locked, verified boot, a key generated in the secure
        // hardware that is the EC P-256 signing key enrolled, one of the configured apps),
        // except that a chain ending at the AOSP software root is recorded as `software`
        // rather than refused: it proves nothing of the hardware, and says so.
        let mut policy = AndroidExpectations::strict(
            transcript::key_attestation_challenge(enrollment_id, nonce).to_vec(),
            self.android_apps.clone(),
        );
        policy.public_key = Some(public_key.to_vec());
        policy.allow_software_root = true;
        policy.min_security_level = SecurityLevel::Software;
        let revoked = self.revoked.read().expect("revocation list lock").clone();
        verify_android(&chain, &policy, &revoked, Some(at))
            .map(|verdict| verdict.assurance)
            .map_err(|fault| fault.to_string())
    }

    fn app_attest(
        &self,
        object: &[u8],
        key_id: &[u8],
        enrollment_id: &str,
        nonce: &[u8],
        public_key: &[u8],
        at: SystemTime,
    ) -> Result<Assurance, String> {
        let Some((team_id, bundle_id)) = &self.apple else {
            return Err("not-configured: no apple_team_id and apple_bundle_id".into());
        };
        let expected = AppAttestExpectations {
            team_id: team_id.clone(),
            bundle_id: bundle_id.clone(),
            environment: self.apple_environment,
            client_data_hash: transcript::attestation_challenge(enrollment_id, nonce, public_key)
                .to_vec(),
            key_id: Some(key_id.to_vec()),
        };
        verify_app_attest(object, &expected, Some(at))
            .map(|verdict| verdict.assurance)
            .map_err(|fault| fault.to_string())
    }
}

fn read_list(path: &PathBuf) -> anyhow::Result<RevocationList> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading attestation.revocation_list {}", path.display()))?;
    RevocationList::from_json(&bytes)
        .map_err(|e| anyhow::anyhow!("attestation.revocation_list {}: {e}", path.display()))
}

/// Re-reads the list every `period` while the service lives; a failed read keeps the last good
/// list (and says so in the log).
async fn refresh(list: Weak<RwLock<Arc<RevocationList>>>, path: PathBuf, period: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(list) = list.upgrade() else { return };
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_list(&path)).await
        };
        match read {
            Ok(Ok(fresh)) => {
                tracing::debug!(serials = fresh.len(), "attestation revocation list re-read");
                *list.write().expect("revocation list lock") = Arc::new(fresh);
            }
            Ok(Err(e)) => tracing::warn!(
                error = %format!("{e:#}"),
                "attestation revocation list not re-read: the last good list stays in use"
            ),
            Err(e) => tracing::warn!(error = %e, "attestation revocation list re-read failed"),
        }
    }
}
