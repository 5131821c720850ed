//! The audit chain against a database writer without the key file: each scenario writes past
//! the store as such a writer would, and `verify` must name exactly the first broken row.

use pims_server::audit::{link_mac, verify, Break, Head, Link, Verification, Verifier};

use super::*;

db_suite!(
    an_untouched_trail_verifies_with_its_head,
    the_append_only_guards_refuse_a_writer,
    an_altered_row_is_named,
    a_deleted_middle_row_is_named,
    a_row_written_without_the_key_is_named,
    a_forged_mac_is_named,
    reordered_rows_are_named,
    deleting_the_newest_row_of_a_chain_is_caught_by_a_recorded_head,
    rows_written_before_the_chain_are_chained_at_upgrade,
    concurrent_steps_of_one_account_keep_one_chain,
    a_walk_reads_the_trail_as_it_was_when_it_started,
);

impl Raw {
    /// Runs `sql` directly on the database; the error is the database's message.
    async fn exec(&self, sql: &str) -> std::result::Result<(), String> {
        match self {
            Raw::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(10))
                    .unwrap();
                conn.execute_batch(sql).map_err(|e| e.to_string())
            }
            Raw::Postgres(url) => {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                let task = tokio::spawn(conn);
                let result = client.batch_execute(sql).await.map_err(|e| {
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_string())
                });
                drop(client);
                let _ = task.await;
                result
            }
        }
    }

    /// Removes every guard a table owner can remove, as an attacker with the database would.
    async fn drop_guards(&self) {
        let sql = match self {
            Raw::Sqlite(_) => {
                "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;
                 DROP TRIGGER audit_no_replace;"
            }
            Raw::Postgres(_) => {
                "DROP TRIGGER audit_no_update ON audit; DROP TRIGGER audit_no_truncate ON audit;
                 GRANT UPDATE, DELETE, TRUNCATE ON audit TO CURRENT_USER;"
            }
        };
        self.exec(sql).await.unwrap();
    }

    /// A store on the same database (a restart of the server).
    async fn reopen(&self) -> Arc<dyn Store> {
        match self {
            Raw::Sqlite(path) => Arc::new(SqliteStore::open(path, audit_key()).unwrap()),
            Raw::Postgres(url) => {
                Arc::new(PostgresStore::connect(url, 2, audit_key()).await.unwrap())
            }
        }
    }
}

/// Five audited actions over two accounts: ids 1, 3, 5 are alice's, 2 and 4 bob's.
async fn trail(store: &Arc<dyn Store>) {
    for (i, account) in ["alice", "bob", "alice", "bob", "alice"].iter().enumerate() {
        store
            .remove_enrollments(account, NOW + i as i64)
            .await
            .unwrap();
    }
    let rows: Vec<(i64, String)> = store
        .audit_trail(None, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.account))
        .collect();
    let expected: Vec<(i64, String)> = ["alice", "bob", "alice", "bob", "alice"]
        .iter()
        .enumerate()
        .map(|(i, a)| (i as i64 + 1, a.to_string()))
        .collect();
    assert_eq!(rows, expected);
}

async fn verified(store: &Arc<dyn Store>, expected: Option<&Head>) -> Verification {
    verify(store.as_ref(), &audit_key(), expected)
        .await
        .unwrap()
}

fn broken(id: i64, why: Break) -> Verification {
    Verification::Broken { id, why }
}

async fn head(store: &Arc<dyn Store>) -> Head {
    match verified(store, None).await {
        Verification::Verified { head, .. } => head,
        other => panic!("trail does not verify: {other}"),
    }
}

async fn an_untouched_trail_verifies_with_its_head(db: &Db) {
    trail(&db.store).await;
    let links: Vec<Option<i64>> = db
        .store
        .audit_chain(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.prev_id)
        .collect();
    assert_eq!(links, vec![None, None, Some(1), Some(2), Some(3)]);

    let head = head(&db.store).await;
    assert_eq!(head.id, 5);
    let verification = verified(&db.store, Some(&head)).await;
    assert_eq!(
        verification,
        Verification::Verified {
            rows: 5,
            head: head.clone()
        }
    );
    assert_eq!(
        verification.to_string(),
        format!("5 rows verified, head id=5 mac={}", head.mac_hex())
    );
    // A recorded head still holds once the trail grew.
    db.store.remove_enrollments("bob", NOW + 9).await.unwrap();
    assert!(matches!(
        verified(&db.store, Some(&head)).await,
        Verification::Verified { rows: 6, .. }
    ));
    let wrong = Head {
        id: 5,
        mac: [0; 32],
    };
    assert!(matches!(
        verified(&db.store, Some(&wrong)).await,
        Verification::HeadMismatch { expected, .. } if expected == wrong
    ));
}

async fn the_append_only_guards_refuse_a_writer(db: &Db) {
    trail(&db.store).await;
    let attempts: &[&str] = match db.raw {
        Raw::Sqlite(_) => &[
            "UPDATE audit SET detail = 'forged' WHERE id = 3",
            "DELETE FROM audit WHERE id = 3",
            // REPLACE deletes the old row without firing the delete trigger.
            "INSERT OR REPLACE INTO audit (id, at, account, event, device_id, detail, prev_id, mac)
             SELECT id, at, account, event, device_id, 'forged', prev_id, mac
             FROM audit WHERE id = 3",
        ],
        Raw::Postgres(_) => &[
            "UPDATE audit SET detail = 'forged' WHERE id = 3",
            "DELETE FROM audit WHERE id = 3",
            "TRUNCATE audit",
        ],
    };
    for sql in attempts {
        assert_eq!(
            db.raw.exec(sql).await,
            Err("audit rows are append-only".to_string()),
            "{sql}"
        );
    }
    assert!(matches!(
        verified(&db.store, None).await,
        Verification::Verified { rows: 5, .. }
    ));
}

async fn an_altered_row_is_named(db: &Db) {
    trail(&db.store).await;
    db.raw.drop_guards().await;
    let alter = match db.raw {
        // Both ways a SQLite writer rewrites a row: replacing row 3, updating row 4.
        Raw::Sqlite(_) => {
            "INSERT OR REPLACE INTO audit (id, at, account, event, device_id, detail, prev_id, mac)
             SELECT id, at, account, event, device_id, 'forged', prev_id, mac
             FROM audit WHERE id = 3;
             UPDATE audit SET detail = 'forged' WHERE id = 4;"
        }
        Raw::Postgres(_) => {
            "UPDATE audit SET detail = 'forged' WHERE id = 3;
             UPDATE audit SET at = at + 1 WHERE id = 4;"
        }
    };
    db.raw.exec(alter).await.unwrap();
    let verification = verified(&db.store, None).await;
    assert_eq!(verification, broken(3, Break::MacMismatch));
    assert_eq!(
        verification.to_string(),
        "audit trail broken at row id=3: MAC mismatch (row altered or forged)"
    );
}

async fn a_deleted_middle_row_is_named(db: &Db) {
    trail(&db.store).await;
    db.raw.drop_guards().await;
    db.raw.exec("DELETE FROM audit WHERE id = 3").await.unwrap();
    // Row 5 of alice links to the deleted row 3.
    assert_eq!(
        verified(&db.store, None).await,
        broken(5, Break::MissingPrevious { prev_id: Some(3) })
    );
}

async fn a_row_written_without_the_key_is_named(db: &Db) {
    trail(&db.store).await;
    db.raw
        .exec(
            "INSERT INTO audit (id, at, account, event, detail)
             VALUES (6, 1800000009, 'bob', 'account_unblocked', 'admin')",
        )
        .await
        .unwrap();
    assert_eq!(verified(&db.store, None).await, broken(6, Break::Unchained));
}

async fn a_forged_mac_is_named(db: &Db) {
    trail(&db.store).await;
    // Links correctly to alice's row 5 and borrows its MAC: without the key, no better forgery.
    db.raw
        .exec(
            "INSERT INTO audit (id, at, account, event, detail, prev_id, mac)
             SELECT 6, at + 1, account, event, 'forged', 5, mac FROM audit WHERE id = 5",
        )
        .await
        .unwrap();
    assert_eq!(
        verified(&db.store, None).await,
        broken(6, Break::MacMismatch)
    );
}

async fn reordered_rows_are_named(db: &Db) {
    trail(&db.store).await;
    db.raw.drop_guards().await;
    // Swaps alice's rows 3 and 5, links and MACs included.
    db.raw
        .exec(
            "CREATE TEMP TABLE swapped AS SELECT * FROM audit WHERE id IN (3, 5);
             UPDATE audit SET
                 at = (SELECT at FROM swapped s WHERE s.id = 8 - audit.id),
                 prev_id = (SELECT prev_id FROM swapped s WHERE s.id = 8 - audit.id),
                 mac = (SELECT mac FROM swapped s WHERE s.id = 8 - audit.id)
             WHERE id IN (3, 5);",
        )
        .await
        .unwrap();
    assert_eq!(
        verified(&db.store, None).await,
        broken(
            3,
            Break::Reordered {
                prev_id: Some(3),
                expected: Some(1)
            }
        )
    );
}

async fn deleting_the_newest_row_of_a_chain_is_caught_by_a_recorded_head(db: &Db) {
    trail(&db.store).await;
    let recorded = head(&db.store).await;
    db.raw.drop_guards().await;
    // Bob's newest row: no later row links to it, so only the recorded head can tell.
    db.raw.exec("DELETE FROM audit WHERE id = 4").await.unwrap();
    assert!(matches!(
        verified(&db.store, None).await,
        Verification::Verified { rows: 4, .. }
    ));
    match verified(&db.store, Some(&recorded)).await {
        Verification::HeadMismatch { expected, found } => {
            assert_eq!(expected, recorded);
            assert_eq!(found.id, 5);
            assert_ne!(found.mac, recorded.mac);
        }
        other => panic!("deletion not detected: {other}"),
    }
}

async fn rows_written_before_the_chain_are_chained_at_upgrade(db: &Db) {
    trail(&db.store).await;
    db.store.close().await;
    // Back to the schema before the chain, rows kept: what an upgraded database holds (the
    // later migrations undone too, as they run again).
    let later = "ALTER TABLE accounts RENAME COLUMN pre_hold_phone_number TO previous_phone_number;
                 ALTER TABLE accounts DROP COLUMN restore_nonce;
                 ALTER TABLE devices DROP COLUMN disabled_by;
                 ALTER TABLE devices DROP COLUMN assurance;
                 ALTER TABLE devices DROP COLUMN assurance_detail;";
    db.raw.exec(later).await.unwrap();
    let downgrade = match db.raw {
        Raw::Sqlite(_) => format!(
            "DROP TRIGGER audit_no_replace; DROP TRIGGER audit_no_update;
             ALTER TABLE audit DROP COLUMN prev_id; ALTER TABLE audit DROP COLUMN mac;
             CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
                 BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
             PRAGMA user_version = {};",
            SqliteStore::audit_chain_schema_version() - 1
        ),
        Raw::Postgres(_) => format!(
            "ALTER TABLE audit DROP COLUMN prev_id, DROP COLUMN mac;
             GRANT UPDATE ON audit TO CURRENT_USER;
             UPDATE pims_schema SET version = {};",
            PostgresStore::audit_chain_schema_version() - 1
        ),
    };
    db.raw.exec(&downgrade).await.unwrap();
    let store = db.raw.reopen().await;
    let links: Vec<Option<i64>> = store
        .audit_chain(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.prev_id)
        .collect();
    assert_eq!(links, vec![None, None, Some(1), Some(2), Some(3)]);
    // New rows continue the chains, and the guards are back.
    store.remove_enrollments("bob", NOW + 9).await.unwrap();
    assert!(matches!(
        verified(&store, None).await,
        Verification::Verified { rows: 6, .. }
    ));
    assert_eq!(
        db.raw
            .exec("UPDATE audit SET detail = 'forged' WHERE id = 3")
            .await,
        Err("audit rows are append-only".to_string())
    );
    store.close().await;
}

async fn concurrent_steps_of_one_account_keep_one_chain(db: &Db) {
    let store = &db.store;
    let device = enrolled(store, "alice").await;
    const N: u64 = 12;
    for i in 0..N {
        otp(
            store,
            "alice",
            &device,
            2 + i,
            OtpProof::WithoutPin,
            &i.to_be_bytes(),
        )
        .await
        .unwrap();
    }
    let before = store.audit_trail(None, 0, 1000).await.unwrap().len() as u64;
    // Using an OTP does not lock the account row first; starting a PIN login does (and
    // audits the attempt; the limit is set out of reach).
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (store, device) = (store.clone(), device.clone());
            tokio::spawn(async move {
                let used = store.use_otp(&i.to_be_bytes(), NOW, "rp").await.unwrap();
                assert!(used.is_some());
                store
                    .create_otp_challenge(ChallengeStep {
                        account: "alice".into(),
                        challenge_id: new_id(),
                        device_id: device,
                        nonce: b"n".to_vec(),
                        login: Some(login()),
                        audience: None,
                        now: NOW,
                        ttl: 120,
                        pin_attempts: 100,
                        max_open: 100,
                        login_counter: None,
                    })
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    match verified(store, None).await {
        Verification::Verified { rows, .. } => assert_eq!(rows, before + 2 * N),
        other => panic!("{other}"),
    }
}

/// Runs `work` to its end from inside a walk's (synchronous) visit.
fn meanwhile(work: impl std::future::Future<Output = ()>) {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(work));
}

async fn a_walk_reads_the_trail_as_it_was_when_it_started(db: &Db) {
    trail(&db.store).await;
    let mut seen = Vec::new();
    let store = db.store.clone();
    db.store
        .audit_walk(1, &mut |row| {
            if row.event.id == 1 {
                meanwhile(async {
                    store.remove_enrollments("bob", NOW + 10).await.unwrap();
                    store.remove_enrollments("alice", NOW + 11).await.unwrap();
                });
            }
            seen.push(row.event.id);
            std::ops::ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    assert!(matches!(
        verified(&db.store, None).await,
        Verification::Verified { rows: 7, .. }
    ));
}

/// On PostgreSQL a step takes its audit id when it locks its account, so another account's
/// later row can commit before it. A verification that read past that later row while the
/// step was in flight must not then meet the account's next row without the one in flight
/// (a false "missing previous row"): it reads the whole trail in one snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_verification_never_meets_a_row_whose_predecessor_was_in_flight() {
    let Some(db) = super::postgres().await else {
        return;
    };
    trail(&db.store).await;
    // Alice's step in flight, as the store writes it: her lock, her id (6), her row chained
    // after her row 5; not committed.
    let alice = super::races::Uncommitted::holding_account(&db.raw, "alice").await;
    let client = alice.postgres();
    let prev = client
        .query_one(
            "SELECT id, mac FROM audit WHERE account = 'alice' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (prev_id, prev_mac): (i64, Vec<u8>) = (prev.get(0), prev.get(1));
    let id: i64 = client
        .query_one("SELECT nextval('audit_id_seq')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((prev_id, id), (5, 6));
    let link = Link {
        id,
        prev_id: Some(prev_id),
        at: NOW + 10,
        account: "alice",
        event: "account_unblocked",
        device_id: None,
        detail: Some("admin"),
    };
    let mac = link_mac(&audit_key(), Some(&prev_mac), &link).to_vec();
    client
        .execute(
            "INSERT INTO audit (id, prev_id, at, account, event, device_id, detail, mac)
             VALUES ($1, $2, $3, 'alice', 'account_unblocked', NULL, 'admin', $4)",
            &[&id, &prev_id, &link.at, &mac],
        )
        .await
        .unwrap();
    // Meanwhile Bob's row 7 commits.
    db.store.remove_enrollments("bob", NOW + 11).await.unwrap();
    let committed: Vec<i64> = db
        .store
        .audit_trail(None, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(committed, vec![1, 2, 3, 4, 5, 7]);

    // A verification one row a page: once it has read row 7, Alice's step commits, and her
    // next row (8, after 6) too.
    let key = audit_key();
    let mut verifier = Verifier::new(&key, None);
    let mut seen = Vec::new();
    let mut in_flight = Some(alice);
    let store = db.store.clone();
    db.store
        .audit_walk(1, &mut |row| {
            if row.event.id == 7 {
                if let Some(alice) = in_flight.take() {
                    meanwhile(async {
                        alice.commit().await;
                        store.remove_enrollments("alice", NOW + 12).await.unwrap();
                    });
                }
            }
            seen.push((row.event.id, row.prev_id));
            verifier.check(row)
        })
        .await
        .unwrap();
    assert!(in_flight.is_none(), "the walk never reached row 7");
    let verification = verifier.finish();
    assert!(
        matches!(verification, Verification::Verified { rows: 6, .. }),
        "{verification}; rows seen (id, prev_id): {seen:?}"
    );
    assert_eq!(
        seen,
        vec![
            (1, None),
            (2, None),
            (3, Some(1)),
            (4, Some(2)),
            (5, Some(3)),
            (7, Some(4))
        ]
    );
    // The next verification sees both of Alice's rows.
    assert!(matches!(
        verified(&db.store, None).await,
        Verification::Verified { rows: 8, .. }
    ));
}
