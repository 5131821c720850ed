//! `pims server --config FILE` serves the API and stops cleanly on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use pims_proto::endpoint::{DevTokens, Endpoint};

#[tokio::test]
async fn server_command_serves_and_shuts_down_on_interrupt() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_path = \"{0}/db.sqlite3\"\nkey_file = \"{0}/keys.json\"\nsms_outbox = \"{0}/outbox.jsonl\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pims"))
        .args(["server", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if let Some(rest) = line.split("url=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };

    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    // The development issuer is off unless the configuration asks for it.
    let token = reqwest::Client::new()
        .post(format!("{url}{}", DevTokens::ROUTE.path))
        .json(&serde_json::json!({"subject": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 404);

    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "server exited with {status}");
    assert!(dir.path().join("keys.json").exists());
}

#[test]
fn check_config_refuses_the_development_issuer_on_a_network_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "listen = \"0.0.0.0:8080\"\ndev_issuer = true\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pims"))
        .args(["server", "--check-config", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dev_issuer = true needs a loopback listen address"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("is valid"));
}
