//! Steps racing another writer (another replica's step) that has written but not committed:
//! they must wait for it and decide on what it commits, never on what was there before.

use std::time::Duration;

use super::*;

db_suite!(an_otp_is_refused_once_a_revocation_in_flight_commits);

async fn an_otp_is_refused_once_a_revocation_in_flight_commits(db: &Db) {
    let store = &db.store;
    let device = enrolled(store, "alice").await;
    otp(store, "alice", &device, 2, OtpProof::WithoutPin, b"mac-1")
        .await
        .unwrap();
    // Another replica revokes the device: its row is written, the commit still to come.
    let revocation = Uncommitted::begin(
        &db.raw,
        &format!("UPDATE devices SET state = 'disabled' WHERE id = '{device}'"),
    )
    .await;
    let verification = tokio::spawn({
        let store = store.clone();
        async move { store.use_otp(b"mac-1", NOW, "rp").await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !verification.is_finished(),
        "the verification decided before the revocation committed"
    );
    revocation.commit().await;
    assert_eq!(verification.await.unwrap(), None);
}

/// Another writer's transaction, open until [`Uncommitted::commit`].
enum Uncommitted {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client, tokio::task::JoinHandle<()>),
}

impl Uncommitted {
    async fn begin(raw: &Raw, sql: &str) -> Uncommitted {
        match raw {
            Raw::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql};"))
                    .unwrap();
                Uncommitted::Sqlite(conn)
            }
            Raw::Postgres(url) => {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
                    .batch_execute(&format!("BEGIN; {sql};"))
                    .await
                    .unwrap();
                Uncommitted::Postgres(client, task)
            }
        }
    }

    async fn commit(self) {
        match self {
            Uncommitted::Sqlite(conn) => conn.execute_batch("COMMIT").unwrap(),
            Uncommitted::Postgres(client, task) => {
                client.batch_execute("COMMIT").await.unwrap();
                drop(client);
                let _ = task.await;
            }
        }
    }
}
