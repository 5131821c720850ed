//! Starting and stopping the server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::audit::AuditKey;
use crate::auth::{DevIssuer, NoIssuer, TokenVerifier};
use crate::config::ServerConfig;
use crate::http::{operations_router, public_router, AppState};
use crate::jwks::JwksVerifier;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::service::Service;
use crate::sms::{FileOutbox, SmsSender};
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

/// A server accepting requests until [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The `admin_listen` listener's address, when configured.
    pub admin_addr: Option<SocketAddr>,
    admin: Option<(oneshot::Sender<()>, JoinHandle<std::io::Result<()>>)>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    purge: Option<JoinHandle<()>>,
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
        if let Some((tx, task)) = self.admin.take() {
            let _ = tx.send(());
            let _ = task.await;
        }
        match (&mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "server task failed"),
        }
        if let Some(purge) = self.purge.take() {
            purge.abort();
            let _ = purge.await;
        }
        self.store.close().await;
        tracing::info!(addr = %self.addr, "server stopped");
    }
}

/// Opens the configured store: PostgreSQL when `database_url` is set, else SQLite. Either way
/// the schema is migrated before this returns; audit rows are chained under `audit_key`.
pub async fn open_store(
    config: &ServerConfig,
    audit_key: AuditKey,
) -> anyhow::Result<Arc<dyn Store>> {
    match &config.database_url {
        Some(url) => Ok(Arc::new(
            PostgresStore::connect(&url.0, config.database_pool_size, audit_key).await?,
        )),
        None => {
            let path = config.database_path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, audit_key))
                .await
                .context("database setup task failed")??;
            Ok(Arc::new(store))
        }
    }
}

/// Builds the application state from the configuration (opens the database, loads the keys).
pub async fn app_state(config: &ServerConfig) -> anyhow::Result<(AppState, Arc<dyn Store>)> {
    config.validate()?;
    let key_file = config.key_file.clone();
    let keys = tokio::task::spawn_blocking(move || Keys::load_or_create(&key_file))
        .await
        .context("key loading task failed")??;
    let keys = Arc::new(keys);
    let store = open_store(config, keys.audit.clone()).await?;
    let sms: Arc<dyn SmsSender> = match &config.sms_gateway {
        Some(gateway) => Arc::from(gateway.sender()?),
        None => Arc::new(FileOutbox::new(config.sms_outbox.clone())),
    };
    let (verifier, dev_issuer): (Box<dyn TokenVerifier>, _) = if config.dev_issuer {
        tracing::warn!("development token issuer enabled: never use this in production");
        (
            Box::new(DevIssuer::new(&keys.dev_token)),
            Some(DevIssuer::new(&keys.dev_token)),
        )
    } else if let Some(tokens) = &config.access_tokens {
        (Box::new(JwksVerifier::new(tokens.clone())?), None)
    } else {
        (Box::new(NoIssuer), None)
    };
    let console_cookie = keys.console_cookie;
    let service = Service::new(config, store.clone(), keys, sms, Arc::new(Metrics::new()))?;
    let state = AppState::new(
        service,
        verifier,
        dev_issuer,
        config.relying_parties.clone(),
        config.accepted_protocol_versions.clone(),
        config.admin_token.clone(),
        config.trust_forwarded_for,
    );
    let state = match &config.console {
        Some(console) => state.with_console(crate::console::Console::new(
            console.clone(),
            console_cookie,
        )?),
        None => state,
    };
    Ok((state, store))
}

/// Purges expired rows every `purge_interval_seconds` (the first run one interval after start).
/// Every replica runs it; the PostgreSQL store lets one replica purge at a time.
fn spawn_purge(config: &ServerConfig, store: Arc<dyn Store>) -> Option<JoinHandle<()>> {
    if config.purge_interval_seconds == 0 {
        return None;
    }
    let period = std::time::Duration::from_secs(config.purge_interval_seconds);
    let limits = config.limits.clone();
    let clock = config.clock.clone();
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match store.purge(limits.purge_step(clock.now())).await {
                Ok(n) if n.total() > 0 => tracing::info!(
                    sms_codes = n.sms_codes,
                    sms_sends = n.sms_sends,
                    enrollment_sessions = n.enrollment_sessions,
                    idempotency = n.idempotency,
                    otp_challenges = n.otp_challenges,
                    otps = n.otps,
                    pending_devices = n.pending_devices,
                    ended_holds = n.ended_holds,
                    "purged expired rows"
                ),
                Ok(_) => {}
                // Retried at the next interval.
                Err(e) => tracing::warn!(error = %e, "purging expired rows failed"),
            }
        }
    }))
}

/// Binds `config.listen`, migrates the database and serves until shut down.
/// Serves `app` on `listener` within the configured HTTP limits until the returned sender
/// fires (or is dropped).
fn spawn_listener(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    config: &ServerConfig,
) -> (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let (tx, rx) = oneshot::channel::<()>();
    let app = crate::net::bounded(app, &config.http);
    let task = tokio::spawn(crate::net::serve(
        listener,
        app,
        config.http.clone(),
        config.trust_forwarded_for,
        async {
            let _ = rx.await;
        },
    ));
    (tx, task)
}

pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    let (state, store) = app_state(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let admin = match config.admin_listen {
        Some(admin_listen) => {
            let listener = tokio::net::TcpListener::bind(admin_listen)
                .await
                .with_context(|| format!("binding {admin_listen}"))?;
            Some(listener)
        }
        None => None,
    };
    let console = state
        .inner
        .console
        .clone()
        .map(|console| crate::console::routes(state.clone(), console));
    let operations = operations_router(state.clone(), crate::admin::routes(), console);
    let app = public_router(state);
    let (app, admin) = match admin {
        Some(listener) => (app, Some((listener, operations))),
        None => (app.merge(operations), None),
    };
    let (admin_addr, admin_task) = match admin {
        Some((listener, app)) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "admin listener (metrics, admin API, console)");
            (Some(addr), Some(spawn_listener(listener, app, &config)))
        }
        None => (None, None),
    };
    let (tx, task) = spawn_listener(listener, app, &config);
    tracing::info!(%addr, "server listening");
    let purge = spawn_purge(&config, store.clone());
    Ok(RunningServer {
        addr,
        admin_addr,
        admin: admin_task,
        shutdown: Some(tx),
        task,
        purge,
        store,
    })
}
