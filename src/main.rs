//! `pims`: run the server, watch a full enrollment, or drive the facade from a terminal.

mod attestation;
mod bench;
mod demo;
mod vehicle;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pims", version, about = "PIMS strong authentication")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a server on loopback with SQLite in a temporary directory, then enroll two phones,
    /// get an OTP with the PIN and have a relying party verify it, showing every facade call.
    Demo,
    /// Run the server from a TOML configuration file (plus `PIMS_*` environment overrides).
    Server {
        #[arg(long, short)]
        config: PathBuf,
        /// Only read and validate the configuration, then exit (0 when it is valid).
        #[arg(long)]
        check_config: bool,
        /// Log as one JSON object per line (also `PIMS_LOG_FORMAT=json`).
        #[arg(long, env = "PIMS_LOG_JSON")]
        json_logs: bool,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Check a phone's key attestation (Android chain or App Attest object) offline.
    Attestation {
        #[command(subcommand)]
        command: attestation::AttestationCommand,
    },
    /// Drive many simulated devices against running servers and print throughput, latency
    /// percentiles and server CPU per operation.
    Bench(bench::BenchArgs),
    /// Run a simulated car on loopback that verifies every remote command itself (its own
    /// VIN, key, state and keychain in its own SQLite file) and prints its pairing code.
    Vehicle(vehicle::VehicleArgs),
    /// Mint an access token from a development server (one run with `dev_issuer = true`, e.g.
    /// `docs/server.dev.toml`) and print it alone on stdout: `TOKEN=$(pims dev-token alice)`.
    DevToken {
        /// The signed-in user the token is for (its `sub`): any name; a new one is a new account.
        subject: String,
        /// The development server's URL.
        #[arg(long, env = "PIMS_SERVER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Make one facade call as a device would, and print the message received.
    Call {
        /// SDK configuration (the JSON tree given to `initialize`).
        #[arg(long)]
        sdk_config: PathBuf,
        /// Access token of the signed-in user.
        #[arg(long, env = "PIMS_ACCESS_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// `get` or `set`.
        verb: String,
        /// API name, e.g. `pims.authentication.account`.
        api: String,
        /// Parameters as a JSON object.
        #[arg(default_value = "{}")]
        params: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the whole hash-chained trail with the server's configuration and key file: print
    /// the first broken link and exit 1, or the rows verified and the head (record it outside
    /// the database: a later `--expect-head` detects rows deleted up to it) and exit 0.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        /// A head printed by an earlier run (`id=N mac=HEX` or `N:HEX`).
        #[arg(long)]
        expect_head: Option<pims_server::audit::Head>,
    },
}

/// mimalloc instead of glibc's allocator: a request allocates and frees many small buffers
/// across threads; measured side by side it takes 8–11 % off a relying-party verification
/// (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Demo => {
            init_logs("warn");
            runtime.block_on(demo::run())
        }
        Command::Server {
            config,
            check_config,
            json_logs,
        } => {
            let json = json_logs || std::env::var("PIMS_LOG_FORMAT").is_ok_and(|v| v == "json");
            if json {
                init_json_logs("info");
            } else {
                init_logs("info");
            }
            let path = config;
            let config = pims_server::ServerConfig::load(&path)
                .with_context(|| format!("configuration {}", path.display()))?;
            if check_config {
                println!("configuration {} is valid", path.display());
                return Ok(());
            }
            runtime.block_on(serve(config))
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    expect_head,
                },
        } => {
            init_logs("warn");
            let config = pims_server::ServerConfig::load(&config)
                .with_context(|| format!("configuration {}", config.display()))?;
            let verification = runtime.block_on(verify_audit(config, expect_head))?;
            println!("{verification}");
            if !matches!(
                verification,
                pims_server::audit::Verification::Verified { .. }
            ) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Attestation { command } => attestation::run(command),
        Command::Vehicle(args) => {
            init_logs("info");
            runtime.block_on(vehicle::run(args))
        }
        Command::Bench(args) => {
            init_logs("warn");
            runtime.block_on(bench::run(args))
        }
        Command::DevToken { subject, url } => {
            init_logs("warn");
            println!("{}", runtime.block_on(dev_token(&url, &subject))?);
            Ok(())
        }
        Command::Call {
            sdk_config,
            token,
            verb,
            api,
            params,
        } => {
            init_logs("warn");
            runtime.block_on(call(sdk_config, token, verb, api, params))
        }
    }
}

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIMS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Structured logs: the request span (method, path, transaction id) rides on every line.
fn init_json_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIMS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(config: pims_server::ServerConfig) -> anyhow::Result<()> {
    let server = pims_server::start(config).await?;
    tracing::info!(url = %server.url(), "PIMS server listening");
    shutdown_signal().await?;
    // Stops accepting, lets requests in flight finish, then closes the database.
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn verify_audit(
    config: pims_server::ServerConfig,
    expected: Option<pims_server::audit::Head>,
) -> anyhow::Result<pims_server::audit::Verification> {
    // The existing key file only: a new one would make every row look forged.
    let keys = pims_server::keys::Keys::load(&config.key_file)?;
    let store = pims_server::open_store(&config, keys.audit.clone()).await?;
    let verification = pims_server::audit::verify(store.as_ref(), &keys.audit, expected.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("reading the audit trail: {e}"));
    store.close().await;
    verification
}

/// Ctrl-C or SIGTERM (what orchestrators send before killing a replica).
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Builds the facade with every component of this build.
pub fn facade(token: Option<String>) -> pims_core::Pims {
    let host =
        pims_strongauth::host::Host::new(Arc::new(pims_strongauth::host::StaticToken(token)));
    pims_core::Pims::builder()
        .component(pims_strongauth::StrongAuthFactory::new(host))
        .build()
}

/// `POST /v1/dev/tokens` of a development server: the token its issuer signs for `subject`.
async fn dev_token(url: &str, subject: &str) -> anyhow::Result<String> {
    use pims_proto::endpoint::{DevTokens, Endpoint};
    let url = url.trim_end_matches('/');
    // A development issuer listens on loopback only: never through a proxy of the environment.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let response = client
        .post(format!("{url}{}", DevTokens::ROUTE.path))
        .json(&pims_proto::DevTokenRequest {
            subject: subject.to_owned(),
        })
        .send()
        .await
        .with_context(|| {
            format!(
                "no answer from {url}: start a development server first \
                 (pims server --config docs/server.dev.toml)"
            )
        })?;
    match response.status() {
        status if status.is_success() => {
            let token: <DevTokens as Endpoint>::Response = response
                .json()
                .await
                .context("the development issuer's answer is not a token")?;
            Ok(token.access_token)
        }
        reqwest::StatusCode::NOT_FOUND => anyhow::bail!(
            "{url} mints no development tokens: its configuration must set dev_issuer = true \
             (as docs/server.dev.toml does; never in production)"
        ),
        status => anyhow::bail!("{url} refused to mint a development token ({status})"),
    }
}

async fn call(
    sdk_config: PathBuf,
    token: Option<String>,
    verb: String,
    api: String,
    params: String,
) -> anyhow::Result<()> {
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&sdk_config)
            .with_context(|| format!("reading {}", sdk_config.display()))?,
    )
    .context("SDK configuration is not JSON")?;
    let params: serde_json::Value =
        serde_json::from_str(&params).context("parameters are not JSON")?;
    let pims = facade(token);
    let init = pims.initialize_async(config).await;
    if init.error.is_some() {
        println!("{init}");
        std::process::exit(1);
    }
    let message = match verb.as_str() {
        "get" => pims.get_async(&api, params).await,
        "set" => pims.set_async(&api, params).await,
        other => anyhow::bail!("verb must be get or set, not {other}"),
    };
    println!("{}", serde_json::to_string_pretty(&message.to_json())?);
    if message.error.is_some() {
        std::process::exit(1);
    }
    Ok(())
}
