//! Versioned schema migrations, applied in order at start; `PRAGMA user_version` is the
//! number of migrations applied.

/// After the migration holding this comment the server chains the rows already in the audit
/// table (it holds the key; SQL alone cannot), in the same transaction, before the update guard
/// comes back. Found by its text, so migrations merged before it keep it in place.
pub const CHAIN_EXISTING_AUDIT: &str = "-- then the server chains the existing audit rows";

/// The number of the migration marked [`CHAIN_EXISTING_AUDIT`].
pub fn chain_existing_audit_after() -> usize {
    MIGRATIONS
        .iter()
        .position(|sql| sql.contains(CHAIN_EXISTING_AUDIT))
        .expect("one migration chains the audit rows")
        + 1
}

/// A migration both dialects run as written (each store appends it to its own list), and may
/// run again over its own result (an upgrade test replays the migrations after the audit
/// chain's): steps that close an account's open sessions and challenges find them by account
/// instead of scanning every account's, and the per-address SMS limit counts sends by ordinal
/// ([`crate::store::check_address_sends`]) instead of counting every send of the hour. An
/// ordinal row goes with its send (purged with it).
pub const ACCOUNT_INDEXES_AND_ADDRESS_ORDINALS: &str = r#"
    CREATE INDEX IF NOT EXISTS enrollment_sessions_by_account
        ON enrollment_sessions(account, finished_at);
    CREATE INDEX IF NOT EXISTS otp_challenges_by_account ON otp_challenges(account, used_at);
    CREATE TABLE IF NOT EXISTS sms_address_sends (
        send_id        BIGINT PRIMARY KEY REFERENCES sms_sends(id) ON DELETE CASCADE,
        client_address TEXT NOT NULL,
        seq            BIGINT NOT NULL,
        sent_at        BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sms_address_sends_by_seq ON sms_address_sends(client_address, seq);
    CREATE INDEX IF NOT EXISTS sms_address_sends_by_time
        ON sms_address_sends(client_address, sent_at, seq);
    INSERT INTO sms_address_sends (send_id, client_address, seq, sent_at)
        SELECT id, client_address,
               ROW_NUMBER() OVER (PARTITION BY client_address ORDER BY id), sent_at
        FROM sms_sends
        WHERE client_address IS NOT NULL AND id NOT IN (SELECT send_id FROM sms_address_sends);
    DROP INDEX IF EXISTS sms_sends_by_address;
    "#;

pub const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    r#"
    CREATE TABLE accounts (
        subject      TEXT PRIMARY KEY,
        phone_number TEXT,
        pin_record   BLOB,
        pin_failures INTEGER NOT NULL DEFAULT 0,
        created_at   INTEGER NOT NULL
    );

    -- The code itself is never stored: it is derived from the nonce under a key kept outside.
    CREATE TABLE sms_codes (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        account      TEXT NOT NULL REFERENCES accounts(subject),
        purpose      TEXT NOT NULL,
        phone_number TEXT NOT NULL,
        nonce        BLOB NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        checks       INTEGER NOT NULL DEFAULT 0,
        state        TEXT NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'consumed', 'exhausted'))
    );
    CREATE INDEX sms_codes_by_target ON sms_codes(account, purpose, phone_number, id);
    CREATE INDEX sms_codes_by_purpose ON sms_codes(account, purpose, id);

    CREATE TABLE sms_sends (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        account      TEXT NOT NULL,
        phone_number TEXT NOT NULL,
        sent_at      INTEGER NOT NULL
    );
    CREATE INDEX sms_sends_by_account ON sms_sends(account, sent_at);
    CREATE INDEX sms_sends_by_number ON sms_sends(phone_number, sent_at);

    CREATE TABLE enrollment_sessions (
        id           TEXT PRIMARY KEY,
        account      TEXT NOT NULL REFERENCES accounts(subject),
        nonce        BLOB NOT NULL,
        login_state  BLOB,
        pin_ordinal  INTEGER,
        sms_code_id  INTEGER NOT NULL REFERENCES sms_codes(id),
        phone_number TEXT,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        finished_at  INTEGER
    );

    CREATE TABLE devices (
        id               TEXT PRIMARY KEY,
        account          TEXT NOT NULL REFERENCES accounts(subject),
        public_key       BLOB NOT NULL,
        name             TEXT NOT NULL,
        platform         TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('pending', 'active', 'disabled')),
        counter          INTEGER NOT NULL,
        activation_nonce BLOB NOT NULL,
        created_at       INTEGER NOT NULL,
        activated_at     INTEGER,
        last_used_at     INTEGER
    );
    CREATE INDEX devices_by_account ON devices(account);

    CREATE TABLE idempotency (
        account    TEXT NOT NULL REFERENCES accounts(subject),
        key        TEXT NOT NULL,
        scope      TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (account, key)
    );

    CREATE TABLE otp_challenges (
        id          TEXT PRIMARY KEY,
        account     TEXT NOT NULL REFERENCES accounts(subject),
        device_id   TEXT NOT NULL REFERENCES devices(id),
        nonce       BLOB NOT NULL,
        login_state BLOB,
        pin_ordinal INTEGER,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        used_at     INTEGER
    );

    -- Only a keyed MAC of each OTP is stored.
    CREATE TABLE otps (
        mac        BLOB PRIMARY KEY,
        account    TEXT NOT NULL REFERENCES accounts(subject),
        device_id  TEXT NOT NULL REFERENCES devices(id),
        with_pin   INTEGER NOT NULL,
        issued_at  INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER,
        used_by    TEXT
    );

    -- Append-only.
    CREATE TABLE audit (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        INTEGER NOT NULL,
        account   TEXT NOT NULL,
        event     TEXT NOT NULL,
        device_id TEXT,
        detail    TEXT
    );
    CREATE INDEX audit_by_account ON audit(account, id);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
    "#,
    // 2: SMS sends remember the client address (limit per address)
    r#"
    ALTER TABLE sms_sends ADD COLUMN client_address TEXT;
    CREATE INDEX sms_sends_by_address ON sms_sends(client_address, sent_at);
    "#,
    // 3: PIN records under fresh credential identifiers, how each PIN was set, the recovery
    // hold after a number change, OTP audiences, PIN-change challenges; login states sealed
    r#"
    ALTER TABLE accounts ADD COLUMN pin_credential_id TEXT;
    ALTER TABLE accounts ADD COLUMN pin_set_at INTEGER;
    ALTER TABLE accounts ADD COLUMN pin_set_by TEXT;
    ALTER TABLE accounts ADD COLUMN recovery_held_until INTEGER;
    ALTER TABLE accounts ADD COLUMN pin_recovered_at INTEGER;
    ALTER TABLE accounts ADD COLUMN previous_phone_number TEXT;
    -- Records registered before used the bare subject as their credential identifier
    -- ('legacy'); how they were set is unknown.
    UPDATE accounts SET pin_credential_id = 'legacy', pin_set_at = created_at
        WHERE pin_record IS NOT NULL;
    ALTER TABLE enrollment_sessions ADD COLUMN pin_credential_id TEXT;
    ALTER TABLE otp_challenges ADD COLUMN audience TEXT;
    ALTER TABLE otp_challenges ADD COLUMN pin_change TEXT;
    ALTER TABLE otp_challenges ADD COLUMN pin_credential_id TEXT;
    CREATE INDEX otp_challenges_by_device ON otp_challenges(device_id, used_at, expires_at);
    ALTER TABLE otps ADD COLUMN audience TEXT;
    -- Login states used to be stored in clear: close what is open and keep none of them.
    UPDATE enrollment_sessions SET finished_at = created_at WHERE finished_at IS NULL;
    UPDATE otp_challenges SET used_at = created_at WHERE used_at IS NULL;
    UPDATE enrollment_sessions SET login_state = NULL;
    UPDATE otp_challenges SET login_state = NULL;
    "#,
    // 4: audit rows are chained by a keyed MAC (see `audit.rs`); the update guard is lifted
    // only while the server chains the rows already there
    r#"
    ALTER TABLE audit ADD COLUMN prev_id INTEGER;
    ALTER TABLE audit ADD COLUMN mac BLOB;
    DROP TRIGGER audit_no_update;
    -- then the server chains the existing audit rows
    "#,
    // 5: the update guard again, and no replacing a row: `INSERT OR REPLACE` deletes the old row
    // without firing delete triggers (recursive_triggers is off)
    r#"
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
    CREATE TRIGGER audit_no_replace BEFORE INSERT ON audit
        WHEN EXISTS (SELECT 1 FROM audit WHERE id = NEW.id)
        BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
    "#,
    // 6: shared with PostgreSQL
    ACCOUNT_INDEXES_AND_ADDRESS_ORDINALS,
    // 7: the number trusted before a hold began is kept until it ends (it used to be
    // overwritten by every change), with the nonce the owner's restore code derives from.
    // A number kept before this version may be one a thief set during its hold: none is kept
    // (holds still block PIN recovery by SMS; the helpdesk decides from the audit trail).
    r#"
    ALTER TABLE accounts RENAME COLUMN previous_phone_number TO pre_hold_phone_number;
    ALTER TABLE accounts ADD COLUMN restore_nonce BLOB;
    UPDATE accounts SET pre_hold_phone_number = NULL;
    "#,
    // 8: who disabled a device, when an operator may undo it ('operator')
    r#"
    ALTER TABLE devices ADD COLUMN disabled_by TEXT;
    "#,
    // 9: shared with PostgreSQL
    DEVICE_ASSURANCE,
    // 10: shared with PostgreSQL
    CHALLENGE_INDEXES_UNCHANGED_BY_USE,
];

/// A migration both dialects run as written: what each device's enrollment proved of its key
/// (`pims_attest::Assurance` as text) and, when an attestation was refused, the rule and why.
/// Devices enrolled before attestation proved nothing: `unattested`.
pub const DEVICE_ASSURANCE: &str = r#"
    ALTER TABLE devices ADD COLUMN assurance TEXT NOT NULL DEFAULT 'unattested';
    ALTER TABLE devices ADD COLUMN assurance_detail TEXT;
    "#;

/// A migration both dialects run as written: a challenge's indexes hold what never changes
/// after its insert (its account, its device and expiry), not when it was used. Taking a
/// challenge then writes its row alone: on SQLite no index page joins the step's commit, and on
/// PostgreSQL the update can stay on the row's page (heap-only). Counting a device's open
/// challenges reaches only its unexpired ones; closing an account's reaches all it has (until
/// they are purged), as a step with a clock behind may still take one expired by the close's.
pub const CHALLENGE_INDEXES_UNCHANGED_BY_USE: &str = r#"
    DROP INDEX IF EXISTS otp_challenges_by_account;
    DROP INDEX IF EXISTS otp_challenges_by_device;
    CREATE INDEX IF NOT EXISTS otp_challenges_of_account ON otp_challenges(account);
    CREATE INDEX IF NOT EXISTS otp_challenges_by_device_expiry
        ON otp_challenges(device_id, expires_at);
    "#;
