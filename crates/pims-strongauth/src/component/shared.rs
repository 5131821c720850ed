//! What every call of the component shares ([`Core`]) and what it knows of its caller ([`Ctx`]).

use std::sync::Arc;

use pims_proto::endpoint::{self as ep, Empty, Endpoint};
use pims_proto::AccountStatus;
use tokio::sync::Mutex;

use super::error::Error;
use super::events::Events;
use super::local::Local;
use crate::client::{CallError, ServerClient};
use crate::host::Host;
use crate::StrongAuthConfig;

/// The component's state, shared by its calls and the subscription's poll task.
pub(super) struct Core {
    pub config: StrongAuthConfig,
    pub host: Host,
    pub client: ServerClient,
    /// The vault and its cached state. Held for the whole of any call that reads or changes the
    /// enrollment, so one device never runs two enrollment steps at once.
    pub local: Mutex<Local>,
    pub events: Arc<Events>,
    /// The remote-command component's selected car, kept OTP and signal subscriptions.
    pub vehicle: std::sync::Mutex<super::vehicle::Session>,
}

/// Per-call context: who is calling and how to join logs.
pub(super) struct Ctx {
    pub token: String,
    pub transaction_id: String,
}

impl Core {
    pub(super) fn new(config: StrongAuthConfig, host: Host) -> Self {
        let client = ServerClient::new(&config.server_url, config.request_timeout);
        let events = Arc::new(Events::default());
        Core {
            local: Mutex::new(Local::new(
                config.data_directory.clone(),
                host.clone(),
                events.clone(),
            )),
            config,
            host,
            client,
            events,
            vehicle: Default::default(),
        }
    }

    /// The caller, with the access token the host gives now.
    pub(super) fn ctx(&self, transaction_id: &str) -> Result<Ctx, Error> {
        let token = self
            .host
            .tokens
            .access_token()
            .filter(|t| !t.trim().is_empty())
            .ok_or(Error::NoAccessToken)?;
        Ok(Ctx {
            token,
            transaction_id: transaction_id.to_owned(),
        })
    }

    /// Operation `E` of the endpoint table, its path parameters filled by `values`.
    pub(super) async fn call<E: Endpoint>(
        &self,
        ctx: &Ctx,
        values: &[&str],
        body: &E::Request,
    ) -> Result<E::Response, CallError> {
        self.client
            .call::<E>(values, None, &ctx.token, &ctx.transaction_id, body)
            .await
    }

    pub(super) async fn account_status(&self, ctx: &Ctx) -> Result<AccountStatus, Error> {
        Ok(self.call::<ep::Account>(ctx, &[], &Empty {}).await?)
    }
}
