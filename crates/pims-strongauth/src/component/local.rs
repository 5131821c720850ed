//! The vault and its cached state.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::Error;
use super::events::Events;
use crate::host::{FileVaultKey, Host, VaultKeyStore};
use crate::vault::{Vault, VaultError, VaultState};

/// The vault, opened on first use (so a failing key store is a 2311 on a call, not a crash at
/// `initialize`), and the last state read or written.
pub(super) struct Local {
    data_directory: PathBuf,
    host: Host,
    vault: Option<Vault>,
    state: Option<VaultState>,
    /// Told of every change of this device's activation.
    events: Arc<Events>,
}

impl Local {
    pub(super) fn new(data_directory: PathBuf, host: Host, events: Arc<Events>) -> Self {
        Local {
            data_directory,
            host,
            vault: None,
            state: None,
            events,
        }
    }

    pub(super) fn vault(&mut self) -> Result<&Vault, Error> {
        if self.vault.is_none() {
            let key = match &self.host.vault_key {
                Some(store) => store.load_or_create(),
                None => FileVaultKey::new(&self.data_directory).load_or_create(),
            }?;
            self.vault = Some(Vault::new(&self.data_directory, key));
        }
        Ok(self.vault.as_ref().expect("just set"))
    }

    pub(super) fn read(&mut self) -> Result<VaultState, Error> {
        if let Some(state) = &self.state {
            return Ok(state.clone());
        }
        let state = self.vault()?.read()?;
        self.state = Some(state.clone());
        Ok(state)
    }

    /// For `enroll` and `remove`, which replace the local state anyway: a vault that cannot
    /// be decrypted (vault key lost or changed) reads as empty, since its keys are unusable.
    /// It is not cached, so other calls keep reporting 2311 until it is replaced.
    pub(super) fn read_or_replace(&mut self) -> Result<VaultState, Error> {
        if let Some(state) = &self.state {
            return Ok(state.clone());
        }
        match self.vault()?.read() {
            Ok(state) => {
                self.state = Some(state.clone());
                Ok(state)
            }
            Err(VaultError::Unreadable) => {
                tracing::warn!("unreadable local enrollment state will be replaced");
                Ok(VaultState::default())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn write(&mut self, state: &VaultState) -> Result<(), Error> {
        self.vault()?.write(state)?;
        self.state = Some(state.clone());
        let activated = state.enrollment.as_ref().is_some_and(|e| e.activated);
        self.events.observe(Some(activated), None);
        Ok(())
    }
}
