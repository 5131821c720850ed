//! A real OpenID Connect provider for the tests: the npm package `oidc-provider` (pinned in
//! `tests/oidc/package-lock.json`) run by Node on a loopback port, with the test users below,
//! RS256 and ES256 keys, and key rotation on command (see `tests/oidc/provider.mjs`).
//!
//! Its packages are installed once with `npm ci` into `target/oidc-provider`. Without Node
//! (or npm's registry) the tests needing it print a notice and pass, unless
//! `PIMS_REQUIRE_BROWSER=1` (CI), which makes that a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Environment variable that turns "Node or Chromium missing" into a failure.
pub const REQUIRE_ENV: &str = "PIMS_REQUIRE_BROWSER";

/// An app user (no group).
pub const ALICE: (&str, &str) = ("alice", "alice-password");
/// A helpdesk operator (group `pims-operators`).
pub const OLGA: (&str, &str) = ("olga", "olga-password");
/// Staff, but no operator (group `staff`).
pub const NINA: (&str, &str) = ("nina", "nina-password");
/// In the console's read-only group: may look, not act.
pub const RITA: (&str, &str) = ("rita", "rita-password");
pub const READ_ONLY_GROUP: &str = "pims-auditors";

pub const OPERATOR_GROUP: &str = "pims-operators";
/// Resources the `app` client may ask tokens for, with audience `pims` (RS256 or ES256
/// signed) or `other`.
pub const PIMS_RS256: &str = "https://pims.test/rs256";
pub const PIMS_ES256: &str = "https://pims.test/es256";
pub const OTHER_AUDIENCE: &str = "https://other.test";
const APP_REDIRECT: &str = "http://127.0.0.1/app-callback";

/// Says why a test cannot run, or fails it when the environment requires it.
pub fn missing(what: &str) -> Option<std::convert::Infallible> {
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_ENV}=1 but {what}");
    }
    let _ = writeln!(std::io::stderr(), "browser/OIDC test SKIPPED: {what}");
    None
}

fn installed() -> &'static Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        // This file also serves the workspace's end-to-end tests: paths from the workspace root.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|dir| dir.join("Cargo.lock").exists())
            .expect("inside the workspace");
        let source = root.join("crates/pims-server/tests/oidc");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let dir = target.join("oidc-provider");
        std::fs::create_dir_all(&dir).unwrap();
        let lock = std::fs::read(source.join("package-lock.json")).unwrap();
        let current = std::fs::read(dir.join("package-lock.json")).ok();
        for file in ["package.json", "package-lock.json", "provider.mjs"] {
            std::fs::copy(source.join(file), dir.join(file)).unwrap();
        }
        if current.as_ref() != Some(&lock) || !dir.join("node_modules/oidc-provider").exists() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
                .current_dir(&dir)
                .stdout(Stdio::null())
                .status();
            if !status.is_ok_and(|s| s.success()) {
                // Next time, try again.
                let _ = std::fs::remove_file(dir.join("package-lock.json"));
                missing("`npm ci` of tests/oidc failed (is Node.js with npm installed?)")?;
            }
        }
        Some(dir)
    })
}

pub struct Provider {
    pub issuer: String,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    _dir: tempfile::TempDir,
}

impl Provider {
    /// A provider whose `console` client redirects to `console_redirect`; `None` when Node is
    /// missing and not required.
    pub async fn start(console_redirect: &str) -> Option<Provider> {
        let dir = installed().as_ref()?;
        let users = tempfile::tempdir().unwrap();
        let file = users.path().join("users.json");
        let entry = |(name, password): (&str, &str), groups: &[&str]| {
            let display = format!("{} (display name)", name.to_uppercase());
            (
                name.to_string(),
                serde_json::json!({ "password": password, "groups": groups, "name": display }),
            )
        };
        let map: serde_json::Map<_, _> = [
            entry(ALICE, &[]),
            entry(OLGA, &[OPERATOR_GROUP]),
            entry(NINA, &["staff"]),
            entry(RITA, &[READ_ONLY_GROUP]),
        ]
        .into_iter()
        .collect();
        std::fs::write(&file, serde_json::Value::Object(map).to_string()).unwrap();
        let port = free_port();
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg(port.to_string())
            .arg(&file)
            .env("CONSOLE_REDIRECT", console_redirect)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting node");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut provider = Provider {
            issuer: format!("http://127.0.0.1:{port}"),
            child,
            stdin,
            stdout,
            _dir: users,
        };
        let ready = provider.stdout.next_line().await.unwrap();
        assert_eq!(
            ready.as_deref(),
            Some(&*format!("ready {}", provider.issuer))
        );
        Some(provider)
    }

    /// `rotate` or `retire` (see `provider.mjs`).
    pub async fn command(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        let answer = self.stdout.next_line().await.unwrap();
        assert_eq!(answer.as_deref(), Some(&*format!("{command}d")));
    }

    /// A client with its own cookie jar that follows no redirect itself.
    pub fn browser() -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Follows redirects from `url`, signing in as `user` on the provider's login page, until
    /// a redirect leads to a URL starting with `stop`; returns that URL.
    pub async fn sign_in(
        &self,
        client: &reqwest::Client,
        url: &str,
        (user, password): (&str, &str),
        stop: &str,
    ) -> reqwest::Url {
        let mut url = reqwest::Url::parse(url).unwrap();
        for _ in 0..10 {
            if url.as_str().starts_with(stop) {
                return url;
            }
            let r = client.get(url.clone()).send().await.unwrap();
            let r = if r.status() == 200 && url.path().starts_with("/interaction/") {
                let action = format!("{}/login", url.as_str().trim_end_matches('/'));
                client
                    .post(action)
                    .form(&[("login", user), ("password", password)])
                    .send()
                    .await
                    .unwrap()
            } else {
                r
            };
            assert!(r.status().is_redirection(), "{} at {url}", r.status());
            let location = r.headers()["location"].to_str().unwrap();
            url = url.join(location).unwrap();
        }
        panic!("too many redirects");
    }

    /// An access token of the `app` client for `user`, for `resource`, through the
    /// authorization code flow with PKCE.
    pub async fn access_token(&self, user: (&str, &str), resource: &str) -> String {
        let client = Self::browser();
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let verifier = URL_SAFE_NO_PAD.encode(bytes);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut start = reqwest::Url::parse(&format!("{}/auth", self.issuer)).unwrap();
        start
            .query_pairs_mut()
            .append_pair("client_id", "app")
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", APP_REDIRECT)
            .append_pair("scope", "openid pims")
            .append_pair("resource", resource)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "app-state")
            .append_pair("nonce", "app-nonce");
        let back = self
            .sign_in(&client, start.as_str(), user, APP_REDIRECT)
            .await;
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap_or_else(|| panic!("no code in {back}"))
            .1
            .into_owned();
        let r = client
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", APP_REDIRECT),
                ("client_id", "app"),
                ("code_verifier", &verifier),
                ("resource", resource),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Moves a test server's manual clock to the real time: the provider's tokens carry real times.
pub fn to_real_time(clock: &pims_server::Clock) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    clock.advance(now - clock.now());
}

/// A free loopback port (for a listener whose address must be known before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
