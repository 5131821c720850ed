//! Steps racing another writer (another replica's step) that has written but not committed:
//! they must wait for it and decide on what it commits, never on what was there before.

use std::time::Duration;

use super::*;

db_suite!(
    an_otp_is_refused_once_a_revocation_in_flight_commits,
    an_otp_verified_while_its_device_gets_a_new_otp_waits_and_does_not_deadlock,
    a_restore_racing_a_number_change_gives_back_the_pre_hold_number,
);

/// The thief moved the number (a hold runs); another replica is writing a further change when
/// the helpdesk restores: the restore waits for it, and gives back the number trusted before
/// the hold, never the one being written nor the one it replaces.
async fn a_restore_racing_a_number_change_gives_back_the_pre_hold_number(db: &Db) {
    let device = enrolled(&db.store, "alice").await;
    change_number(&db.store, &device, 2, None, "+33699999999", b"n")
        .await
        .unwrap();
    let change = Uncommitted::holding_account(&db.raw, "alice")
        .await
        .then("UPDATE accounts SET phone_number = '+33677777777' WHERE subject = 'alice'")
        .await;
    let store = db.store.clone();
    let restore = tokio::spawn(async move {
        store
            .restore_phone_number(helpdesk_restore(NOW))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !restore.is_finished(),
        "the restore decided before the change committed"
    );
    change.commit().await;
    let restored = restore.await.unwrap();
    assert_eq!(
        (restored.phone_number.as_str(), restored.replaced.as_str()),
        (PHONE, "+33677777777")
    );
    assert_eq!(
        db.store
            .account("alice")
            .await
            .unwrap()
            .unwrap()
            .phone_number,
        Some(PHONE.into())
    );
}

async fn an_otp_is_refused_once_a_revocation_in_flight_commits(db: &Db) {
    let device = device_with_otp_mac_1(db).await;
    // Another replica revokes the device: its row is written, the commit still to come.
    let revocation = Uncommitted::holding_account(&db.raw, "alice")
        .await
        .then(&format!(
            "UPDATE devices SET state = 'disabled' WHERE id = '{device}'"
        ))
        .await;
    let verification = verify_otp_mac_1(db);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !verification.is_finished(),
        "the verification decided before the revocation committed"
    );
    revocation.commit().await;
    assert_eq!(verification.await.unwrap(), None);
}

async fn an_otp_verified_while_its_device_gets_a_new_otp_waits_and_does_not_deadlock(db: &Db) {
    let device = device_with_otp_mac_1(db).await;
    // Another replica issues the device's next OTP: it holds the account, and is about to
    // write the device's counter.
    let issue = Uncommitted::holding_account(&db.raw, "alice").await;
    let verification = verify_otp_mac_1(db);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The verification waits for the account; had it locked the device first, this write
    // would close a cycle and one of the two would be aborted.
    let issue = issue
        .then(&format!(
            "UPDATE devices SET counter = counter + 1 WHERE id = '{device}'"
        ))
        .await;
    assert!(!verification.is_finished());
    issue.commit().await;
    let verified = verification.await.unwrap().expect("the OTP verifies");
    assert_eq!(verified.device_id, device);
}

/// Alice's Active device with an unused OTP `mac-1` for `rp`; returns the device id.
async fn device_with_otp_mac_1(db: &Db) -> String {
    let device = enrolled(&db.store, "alice").await;
    otp(
        &db.store,
        "alice",
        &device,
        2,
        OtpProof::WithoutPin,
        b"mac-1",
    )
    .await
    .unwrap();
    device
}

/// The relying party verifies `mac-1`, in the background.
fn verify_otp_mac_1(db: &Db) -> tokio::task::JoinHandle<Option<VerifiedOtp>> {
    let store = db.store.clone();
    tokio::spawn(async move { store.use_otp(b"mac-1", NOW, "rp").await.unwrap() })
}

/// Another writer's transaction, open until [`Uncommitted::commit`].
pub(crate) enum Uncommitted {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client, tokio::task::JoinHandle<()>),
}

impl Uncommitted {
    /// Opens another replica's step: like every step, it first takes `account`'s row lock
    /// (SQLite: the database's write lock).
    pub(crate) async fn holding_account(raw: &Raw, account: &str) -> Uncommitted {
        match raw {
            Raw::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
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
                    .batch_execute(&format!(
                        "BEGIN; SELECT 1 FROM accounts WHERE subject = '{account}' FOR UPDATE"
                    ))
                    .await
                    .unwrap();
                Uncommitted::Postgres(client, task)
            }
        }
    }

    /// Runs `sql` in the open transaction; a PostgreSQL statement that waits for a lock
    /// answers once it has it.
    async fn then(self, sql: &str) -> Uncommitted {
        match &self {
            Uncommitted::Sqlite(conn) => conn.execute_batch(sql).unwrap(),
            Uncommitted::Postgres(client, _) => client.batch_execute(sql).await.unwrap(),
        }
        self
    }

    /// The PostgreSQL transaction's connection, for statements whose answer is read.
    pub(crate) fn postgres(&self) -> &tokio_postgres::Client {
        match self {
            Uncommitted::Postgres(client, _) => client,
            Uncommitted::Sqlite(_) => panic!("a SQLite transaction"),
        }
    }

    pub(crate) async fn commit(self) {
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

/// A PostgreSQL step abandoned while it waits for the account (its request dropped, say)
/// leaves nothing: its statements were already sent, and the connection rolls them back
/// before it serves the next step. (One connection, so the next step runs on the same one;
/// committed with the next step instead, the abandoned verification would spend the OTP.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_an_abandoned_step_is_rolled_back_before_its_connection_serves_again() {
    let Some(db) = super::postgres().await else {
        return;
    };
    let Raw::Postgres(url) = &db.raw else {
        unreachable!()
    };
    let device = device_with_otp_mac_1(&db).await;
    let store = PostgresStore::connect(url, 1, audit_key()).await.unwrap();
    let held = Uncommitted::holding_account(&db.raw, "alice").await;
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        store.use_otp(b"mac-1", NOW, "rp"),
    )
    .await;
    assert!(
        abandoned.is_err(),
        "the verification did not wait for the account"
    );
    held.commit().await;
    let verified = store
        .use_otp(b"mac-1", NOW, "rp")
        .await
        .unwrap()
        .expect("the abandoned verification spent the OTP");
    assert_eq!(verified.device_id, device);
    let used: Vec<_> = store
        .audit_trail(None, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "otp_used")
        .collect();
    assert_eq!(used.len(), 1);
    store.close().await;
    db.store.close().await;
}
