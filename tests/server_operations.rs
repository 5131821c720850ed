//! `pims server` for operators: `--check-config`, environment overrides, JSON logs carrying the
//! SDK's transaction id, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use pims_proto::endpoint::{Account, Endpoint};

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_path = \"{0}/db.sqlite3\"\nkey_file = \"{0}/keys.json\"\nsms_outbox = \"{0}/outbox.jsonl\"\n{extra}",
            dir.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn check_config_accepts_a_valid_file_and_explains_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_pims"))
        .args(["server", "--check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !dir.path().join("db.sqlite3").exists(),
        "checking starts nothing"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_pims"))
        .args(["server", "--check-config", "--config"])
        .arg(&good)
        .env("PIMS_LISTEN", "not an address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PIMS_LISTEN"));

    let bad = write_config(dir.path(), "[limits]\npin_attempts = 0\n");
    let out = Command::new(env!("CARGO_BIN_EXE_pims"))
        .args(["server", "--check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pin_attempts"));
}

#[tokio::test]
async fn json_logs_carry_the_transaction_id_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pims"))
        .args(["server", "--json-logs", "--config"])
        .arg(&config)
        .env("PIMS_LOG", "info,pims_server=debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        if let Some(url) = v["fields"]["url"].as_str() {
            break url.to_string();
        }
    };
    let r = reqwest::Client::new()
        .get(format!("{url}{}", Account::ROUTE.path))
        .header(pims_proto::PROTOCOL_HEADER, "1")
        .header(pims_proto::TRANSACTION_HEADER, "tx-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let line = loop {
        let line = lines.next().expect("the request was logged").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["span"]["transaction_id"] == "tx-42" {
            break v;
        }
    };
    assert_eq!(line["span"]["path"], "/v1/account");

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "server exited with {status}");
}
