//! `pims audit verify --config FILE` on a SQLite database tampered with past the server.

use std::path::Path;
use std::process::{Command, Output};

use pims_server::keys::Keys;
use pims_server::store::sqlite::SqliteStore;
use pims_server::store::Store;

fn verify(config: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pims"))
        .args(["audit", "verify", "--config"])
        .arg(config)
        .args(extra)
        .env_remove("PIMS_SERVER_KEYS")
        .env_remove("PIMS_KEY_FILE")
        .env_remove("PIMS_DATABASE_URL")
        .env_remove("PIMS_DATABASE_PATH")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn write_config(path: &Path, dir: &Path, key_file: &str) {
    std::fs::write(
        path,
        format!(
            "database_path = \"{0}/db.sqlite3\"\nkey_file = \"{0}/{key_file}\"\nsms_outbox = \"{0}/outbox.jsonl\"\n",
            dir.display()
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn audit_verify_reports_the_head_then_the_first_broken_row() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    write_config(&config, dir.path(), "keys.json");
    std::fs::write(dir.path().join("keys.json"), Keys::generate_json()).unwrap();
    let keys = Keys::load(&dir.path().join("keys.json")).unwrap();
    let db = dir.path().join("db.sqlite3");
    let store = SqliteStore::open(&db, keys.audit.clone()).unwrap();
    for (i, account) in ["alice", "bob", "alice"].iter().enumerate() {
        store
            .remove_enrollments(account, 1_800_000_000 + i as i64)
            .await
            .unwrap();
    }
    store.close().await;

    let out = verify(&config, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let head = text
        .trim()
        .strip_prefix("3 rows verified, head ")
        .unwrap_or_else(|| panic!("unexpected output {text:?}"))
        .to_string();
    assert!(head.starts_with("id=3 mac=") && head.len() == "id=3 mac=".len() + 64);

    // Without the server's guards, a writer removes the newest row: every link still holds,
    // only the recorded head tells.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;
         DELETE FROM audit WHERE id = 3;",
    )
    .unwrap();
    let out = verify(&config, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).starts_with("2 rows verified, head id=2 mac="));
    let out = verify(&config, &["--expect-head", &head]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).starts_with(&format!(
            "audit trail does not contain the expected head {head} (found mac="
        )),
        "{out:?}"
    );

    conn.execute_batch("UPDATE audit SET detail = 'forged' WHERE id = 2;")
        .unwrap();
    let out = verify(&config, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stdout(&out),
        "audit trail broken at row id=2: MAC mismatch (row altered or forged)\n"
    );

    // Another key file (here: none) must not be invented: every row would look forged.
    let other = dir.path().join("other.toml");
    write_config(&other, dir.path(), "missing-keys.json");
    let out = verify(&other, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading key file"));
    assert!(!dir.path().join("missing-keys.json").exists());
}
