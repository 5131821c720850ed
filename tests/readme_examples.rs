//! The README's terminal example, run as written: the development server of
//! `docs/server.dev.toml`, a token from `pims dev-token`, one facade call with `pims call`, and
//! the answer the README shows. The blocks are read from README.md itself (the three after the
//! marker comment), so the test fails when the README drifts from what works.
//!
//! Two substitutions only, both forced by running inside a test: `cargo run --release --` is the
//! `pims` binary cargo built for this test (a nested cargo would wait on the build lock), and the
//! port 8080 is a free one (the server listens on port 0 and the test reads the port it got), so
//! that a developer's own server or a parallel run is never hit. Everything runs in a temporary
//! directory holding a copy of `docs/server.dev.toml`; every file the example leaves there must be
//! at a path git ignores in this repository.
//!
//! The README's Python example is run the same way by `bindings/readme-python.sh`
//! (from `bindings/run-tests.sh`, which has the wheel and a live server).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

const README: &str = include_str!("../README.md");
const DEV_CONFIG: &str = include_str!("../docs/server.dev.toml");
const MARKER: &str =
    "<!-- tests/readme_examples.rs runs this block and the next two as written -->";
const CARGO_RUN: &str = "cargo run --release --";
const DEV_ADDRESS: &str = "127.0.0.1:8080";

/// The `count` fenced blocks after `marker`: (language, body).
fn blocks_after(marker: &str, count: usize) -> Vec<(String, String)> {
    let at = README
        .find(marker)
        .unwrap_or_else(|| panic!("README.md lost the marker {marker:?}"));
    let mut lines = README[at..].lines().skip(1);
    let mut blocks = Vec::new();
    while blocks.len() < count {
        let Some(line) = lines.next() else {
            panic!("README.md has fewer than {count} fenced blocks after {marker:?}")
        };
        if let Some(language) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((language.to_owned(), body.join("\n") + "\n"));
        }
    }
    blocks
}

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `block` with `cargo run --release --` replaced by the binary under test.
fn with_built_pims(block: &str) -> String {
    assert!(
        block.contains(CARGO_RUN),
        "the README block no longer runs `{CARGO_RUN}`:\n{block}"
    );
    block.replace(CARGO_RUN, &format!("'{}'", env!("CARGO_BIN_EXE_pims")))
}

/// A shell running `script` in `dir`, in its own process group (so that stopping it stops
/// whatever it started).
fn shell(script: &str, dir: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("sh");
    command
        .args(["-ec", script])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("PIMS_ACCESS_TOKEN")
        .env_remove("PIMS_SERVER_URL")
        .process_group(0);
    command
}

/// The server block running; stopped (its whole process group) when dropped.
struct Server {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(block: &str, dir: &Path) -> Server {
        let mut child = shell(block, dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh runs");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().unwrap();
                panic!(
                    "the README's server stopped ({status}) before listening:\n{}",
                    log.lock().unwrap().join("\n")
                );
            };
            log.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("url=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep reading its log, so that the server never blocks on a full pipe.
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Server { child, url, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// Whether git would ignore `path` (relative to the repository root); `None` without git.
fn git_ignores(path: &Path) -> Option<bool> {
    let status = Command::new("git")
        .arg("-C")
        .arg(repository())
        .args(["check-ignore", "-q", "--no-index", "--"])
        .arg(path)
        .stderr(Stdio::null())
        .status()
        .ok()?;
    match status.code() {
        Some(0) => Some(true),
        Some(1) => Some(false),
        _ => None, // not a git work tree (a source archive): nothing to check
    }
}

#[test]
fn the_readme_terminal_example_works_as_written() {
    let blocks = blocks_after(MARKER, 3);
    let [(server_lang, server_block), (client_lang, client_block), (answer_lang, answer)] =
        <[(String, String); 3]>::try_from(blocks).unwrap();
    assert_eq!(
        (
            server_lang.as_str(),
            client_lang.as_str(),
            answer_lang.as_str()
        ),
        ("sh", "sh", "json")
    );
    assert!(server_block.contains("--config docs/server.dev.toml"));

    // The example's working directory: the repository root, here a temporary one with the
    // development configuration in its place, listening on a port of its own.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    let listen = format!("listen = \"{DEV_ADDRESS}\"");
    assert!(
        DEV_CONFIG.contains(&listen),
        "docs/server.dev.toml: {listen}"
    );
    std::fs::write(
        dir.path().join("docs/server.dev.toml"),
        DEV_CONFIG.replace(&listen, "listen = \"127.0.0.1:0\""),
    )
    .unwrap();

    let server = Server::start(&with_built_pims(&server_block), dir.path());
    let address = server.url.trim_start_matches("http://").to_owned();

    assert!(
        client_block.contains(&format!("http://{DEV_ADDRESS}")),
        "the README's SDK configuration no longer names the development server:\n{client_block}"
    );
    let client = with_built_pims(&client_block).replace(DEV_ADDRESS, &address);
    // `pims dev-token` without --url asks http://127.0.0.1:8080 (dev_token_asks_the_development_
    // server_by_default): here, the port the server got.
    let output = shell(&client, dir.path())
        .env("PIMS_SERVER_URL", &server.url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the README's commands failed ({}):\n{stdout}\n{}\nserver log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );

    // The answer the README shows, but for the transaction id.
    let mut printed: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("`pims call` printed no JSON message ({e}):\n{stdout}"));
    let shown: Value = serde_json::from_str(&answer).expect("the README's answer is JSON");
    let id = printed["transactionId"].as_str().unwrap_or_default();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{printed}");
    printed["transactionId"] = shown["transactionId"].clone();
    assert_eq!(printed, shown, "the README shows another answer");
    drop(server);

    // Everything the example wrote is where git ignores it: the key file and database included.
    let written = files_under(dir.path());
    for expected in [
        "target/pims-dev/pims-keys.json",
        "target/pims-dev/pims.sqlite3",
        "target/pims-dev/sdk.json",
    ] {
        assert!(
            written.contains(&PathBuf::from(expected)),
            "{expected} not written: {written:?}"
        );
    }
    for path in written {
        if path == Path::new("docs/server.dev.toml") {
            continue; // the copy this test put there
        }
        if let Some(ignored) = git_ignores(&path) {
            assert!(
                ignored,
                "the README's example writes {path:?}, which git does not ignore"
            );
        }
    }
}

#[test]
fn dev_token_asks_the_development_server_by_default() {
    let help = Command::new(env!("CARGO_BIN_EXE_pims"))
        .args(["dev-token", "--help"])
        .env_remove("PIMS_SERVER_URL")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains(&format!("[default: http://{DEV_ADDRESS}]")),
        "{help}"
    );
    assert!(DEV_CONFIG.contains(&format!("listen = \"{DEV_ADDRESS}\"")));

    // No server there: the error says what to start.
    let refused = Command::new(env!("CARGO_BIN_EXE_pims"))
        .args(["dev-token", "someone", "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty(), "no token printed");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("pims server --config docs/server.dev.toml"),
        "{stderr}"
    );
}

#[test]
fn server_files_of_both_configurations_are_ignored_by_git() {
    for (name, relative_to) in [
        ("docs/server.example.toml", ""),
        ("docs/server.example.toml", "docs/"),
        ("docs/server.dev.toml", ""),
    ] {
        let config = pims_server::ServerConfig::from_toml_file(repository().join(name)).unwrap();
        let database = config.database_path.display().to_string();
        for path in [
            config.key_file.display().to_string(),
            database.clone(),
            format!("{database}-wal"),
            format!("{database}-shm"),
            config.sms_outbox.display().to_string(),
        ] {
            assert!(Path::new(&path).is_relative(), "{name}: {path}");
            let path = PathBuf::from(format!("{relative_to}{path}"));
            if let Some(ignored) = git_ignores(&path) {
                assert!(
                    ignored,
                    "{name} run from ./{relative_to} writes {path:?}, which git does not ignore"
                );
            }
        }
    }
}
