//! Starting and stopping the server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::{DevIssuer, NoIssuer, TokenVerifier};
use crate::config::ServerConfig;
use crate::http::{router, AppState};
use crate::keys::Keys;
use crate::service::Service;
use crate::sms::FileOutbox;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

/// A server accepting requests until [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    store: Arc<dyn Store>,
}

impl RunningServer {
    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in flight finish, then closes the database, so a new
    /// [`start`] may reopen the same files (and port).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "server task failed"),
        }
        self.store.close().await;
        tracing::info!(addr = %self.addr, "server stopped");
    }
}

/// Builds the application state from the configuration (opens the database, loads the keys).
pub fn app_state(config: &ServerConfig) -> anyhow::Result<(AppState, Arc<dyn Store>)> {
    config.validate()?;
    let keys = Arc::new(Keys::load_or_create(&config.key_file)?);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.database_path)?);
    let sms = Arc::new(FileOutbox::new(config.sms_outbox.clone()));
    let (verifier, dev_issuer): (Box<dyn TokenVerifier>, _) = if config.dev_issuer {
        tracing::warn!("development token issuer enabled: never use this in production");
        (
            Box::new(DevIssuer::new(&keys.dev_token)),
            Some(DevIssuer::new(&keys.dev_token)),
        )
    } else {
        (Box::new(NoIssuer), None)
    };
    let service = Service::new(config, store.clone(), keys, sms);
    let state = AppState::new(
        service,
        verifier,
        dev_issuer,
        config.relying_parties.clone(),
        config.accepted_protocol_versions.clone(),
    );
    Ok((state, store))
}

/// Binds `config.listen`, migrates the database and serves until shut down.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    let prepared = config.clone();
    let (state, store) = tokio::task::spawn_blocking(move || app_state(&prepared))
        .await
        .context("server setup task failed")??;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(state);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    tracing::info!(%addr, "server listening");
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        task,
        store,
    })
}
