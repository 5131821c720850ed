//! The StrongAuthentication component: enrolls this device as the account's second factor and
//! produces one-time proofs (OTPs) with or without the account PIN.
//!
//! - the PIN is registered and proven with OPAQUE ([`pin`]): it never leaves the device;
//! - each device holds its own P-256 key ([`signer`]): in the platform keystore through
//!   [`host::DeviceKeys`], or in software inside the encrypted [`vault`];
//! - enrollment is two-phase (Pending, then Active once the local state is safely written), and
//!   whatever was interrupted is finished on a later call ([`component`]).

mod client;
mod component;
mod config;
pub mod host;
mod pin;
mod signer;
pub mod vault;

pub use component::StrongAuthentication;
pub use config::StrongAuthConfig;

use std::sync::Arc;

use pims_core::{Component, ComponentFactory, PimsError};
use serde_json::Value;

/// Registers StrongAuthentication in a facade:
/// `Pims::builder().component(StrongAuthFactory::new(host)).build()`.
pub struct StrongAuthFactory {
    host: host::Host,
}

impl StrongAuthFactory {
    pub fn new(host: host::Host) -> Self {
        StrongAuthFactory { host }
    }
}

impl ComponentFactory for StrongAuthFactory {
    fn name(&self) -> &'static str {
        "StrongAuthentication"
    }

    fn config_key(&self) -> &'static str {
        "strongAuthentication"
    }

    fn owns(&self, api: &str) -> bool {
        // The remote-command component signs with this component's device key.
        api.starts_with("pims.authentication.") || api.starts_with("pims.vehicle.")
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn Component>, PimsError> {
        let config = StrongAuthConfig::parse(config)?;
        Ok(Arc::new(StrongAuthentication::new(
            config,
            self.host.clone(),
        )?))
    }
}
