//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` into a temporary
//! directory, `pg_ctl start` on a free loopback port (its socket directory inside the temporary
//! directory too), stopped and removed on drop.
//!
//! Binaries come from `PIMS_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`. When they are
//! missing, [`TempCluster::start`] returns `None` after saying so on stderr, unless
//! `PIMS_REQUIRE_POSTGRES=1` (CI), which makes it an error. `initdb` refuses to run as root, so
//! as root the cluster runs as the unprivileged `nobody` user through `runuser`.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

use anyhow::{bail, Context};

/// Environment variable that turns "PostgreSQL binaries missing" into an error.
pub const REQUIRE_ENV: &str = "PIMS_REQUIRE_POSTGRES";

pub struct TempCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<String>,
    port: u16,
}

impl TempCluster {
    /// Where `initdb` and `pg_ctl` are, if anywhere.
    pub fn find_binaries() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("PIMS_PG_BIN") {
            let dir = PathBuf::from(dir);
            return dir.join("initdb").exists().then_some(dir);
        }
        let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        candidates.sort();
        candidates.pop().map(|(_, bin)| bin)
    }

    /// Starts a new cluster, or `Ok(None)` when PostgreSQL is not installed and not required.
    pub fn start() -> anyhow::Result<Option<TempCluster>> {
        let Some(bin) = Self::find_binaries() else {
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                bail!("{REQUIRE_ENV}=1 but no PostgreSQL binaries were found (set PIMS_PG_BIN)");
            }
            // Written past the test harness's capture so a skip is always visible; once.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "PostgreSQL suite SKIPPED: no initdb found (install postgresql or set PIMS_PG_BIN)"
                );
            });
            return Ok(None);
        };
        let dir = tempfile::Builder::new().prefix("pims-pg-").tempdir()?;
        let run_as = if is_root() {
            let user = "nobody".to_string();
            chown_to(dir.path(), &user)?;
            Some(user)
        } else {
            None
        };
        let mut cluster = TempCluster {
            dir,
            bin,
            run_as,
            port: 0,
        };
        cluster.init()?;
        // Another process may take the free port between probe and bind: try a few.
        let mut last = None;
        for _ in 0..3 {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(Some(cluster)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("pg_ctl start failed")))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn init(&self) -> anyhow::Result<()> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-A", "trust", "-U", "pims", "-E", "UTF8", "--no-sync"])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        // Durability is not what tests measure; commits still go through WAL.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("postgres.log"))
            .args(["-w", "-t", "30", "-o", &options, "start"])
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
            bail!(
                "pg_ctl start failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                log
            );
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `name` (which [`TempCluster::create_database`] makes).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://pims@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .context("connecting to the test cluster")?;
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        drop(client);
        let _ = task.await;
        Ok(self.url(name))
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// One cluster shared by the tests of a process that run at the same time; it stops when the
/// last of them drops its handle.
pub fn shared_cluster() -> anyhow::Result<Option<Arc<TempCluster>>> {
    static SHARED: Mutex<Weak<TempCluster>> = Mutex::new(Weak::new());
    let mut guard = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = guard.upgrade() {
        return Ok(Some(c));
    }
    let Some(cluster) = TempCluster::start()? else {
        return Ok(None);
    };
    let cluster = Arc::new(cluster);
    *guard = Arc::downgrade(&cluster);
    Ok(Some(cluster))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn chown_to(path: &Path, user: &str) -> anyhow::Result<()> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id").arg(flag).arg(user).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    std::os::unix::fs::chown(path, Some(id("-u")?), Some(id("-g")?))
        .with_context(|| format!("giving {} to {user}", path.display()))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
