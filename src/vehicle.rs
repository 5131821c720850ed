//! `pims vehicle`: a simulated car on loopback that verifies every command itself
//! (`pims-vehicle`), for the demo, the binding tests and anyone trying the command path.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

#[derive(clap::Args)]
pub struct VehicleArgs {
    /// The car's VIN.
    #[arg(long)]
    pub vin: String,
    /// Where the car listens (the command service relays to it).
    #[arg(long, default_value = "127.0.0.1:8490")]
    pub listen: SocketAddr,
    /// The car's SQLite file (its key, state and keychain); created when absent.
    #[arg(long)]
    pub data: PathBuf,
    /// The command service (for the PIN co-signing key at first start and keychain syncs).
    #[arg(long, env = "PIMS_SERVER_URL")]
    pub server: Option<String>,
    /// The command service's PIN co-signing key to pin (hex SEC1, as `GET /v1/commands/keys`
    /// gives it in base64url); without it, the one pinned before, else fetched once from
    /// `--server` (over https or loopback only).
    #[arg(long)]
    pub pin_cosign_key: Option<String>,
    /// The command service's audience (`[commands] audience` of the server).
    #[arg(long, default_value = "pims-commands")]
    pub audience: String,
    /// Seconds between keychain syncs: the bound within which a revoked device's commands
    /// stop at the car too.
    #[arg(long, default_value_t = 60)]
    pub sync_seconds: u64,
    /// A TOML file of command rules, as the server's `[commands.policy]`:
    /// `"doors.unlock" = { pin = true, ttl_seconds = 30 }`.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Show a new pairing code even though the keychain has keys (as an owner would from
    /// inside the car).
    #[arg(long)]
    pub new_pairing_code: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    pin: bool,
    #[serde(default = "default_ttl")]
    ttl_seconds: u64,
}

fn default_ttl() -> u64 {
    30
}

fn policy(path: Option<&PathBuf>) -> anyhow::Result<pims_command::Policy> {
    let Some(path) = path else {
        return Ok(Default::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let rules: std::collections::BTreeMap<String, Rule> =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    pims_command::Policy::with_overrides(
        rules
            .iter()
            .map(|(k, r)| (k.as_str(), r.pin, r.ttl_seconds)),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn hex_key(text: &str) -> anyhow::Result<Vec<u8>> {
    text.trim()
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .filter(|pair| pair.len() == 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| anyhow::anyhow!("--pin-cosign-key is not hex"))
}

pub async fn run(args: VehicleArgs) -> anyhow::Result<()> {
    let car = pims_vehicle::Vehicle::open(pims_vehicle::VehicleConfig {
        vin: args.vin,
        audience: args.audience,
        data: args.data,
        pin_cosign_key: args.pin_cosign_key.as_deref().map(hex_key).transpose()?,
        server: args.server,
        policy: policy(args.policy.as_ref())?,
        clock: None,
    })
    .await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!(
        "car {} listening on http://{}",
        car.vin(),
        listener.local_addr()?
    );
    if args.new_pairing_code || !car.has_keys()? {
        // Standing for the car's screen: only someone inside sees it.
        println!("pairing code: {}", car.new_pairing_code()?);
    }
    let _sync = car.spawn_sync(Duration::from_secs(args.sync_seconds.max(1)));
    axum::serve(listener, car.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pims_command::CommandKind;

    fn written(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_policy_file_changes_the_rules_it_names_and_keeps_the_keychain_behind_the_pin() {
        let (_dir, path) = written(
            "\"doors.lock\" = { pin = true }\n\"horn\" = { pin = false, ttl_seconds = 10 }\n",
        );
        let p = policy(Some(&path)).unwrap();
        assert!(p.rule(CommandKind::LockDoors).needs_pin);
        assert_eq!(p.rule(CommandKind::Horn).max_ttl_seconds, 10);
        assert!(
            p.rule(CommandKind::UnlockDoors).needs_pin,
            "the default stays"
        );
        for refused in [
            "\"keys.add\" = { pin = false }\n",
            "\"horn\" = { pin = false, ttl_seconds = 301 }\n",
            "\"teleport\" = { pin = true }\n",
            "\"horn\" = { pin = false, extra = 1 }\n",
        ] {
            let (_dir, path) = written(refused);
            assert!(policy(Some(&path)).is_err(), "{refused}");
        }
    }
}
