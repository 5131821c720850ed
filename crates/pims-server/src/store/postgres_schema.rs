//! PostgreSQL schema migrations, applied in order at start under an advisory lock (so replicas
//! starting together migrate once); `pims_schema.version` is the number applied. Same tables
//! and meaning as the SQLite schema.

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

pub const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    r#"
    CREATE TABLE accounts (
        subject      TEXT PRIMARY KEY,
        phone_number TEXT,
        pin_record   BYTEA,
        pin_failures INTEGER NOT NULL DEFAULT 0,
        created_at   BIGINT NOT NULL
    );

    -- The code itself is never stored: it is derived from the nonce under a key kept outside.
    CREATE TABLE sms_codes (
        id           BIGSERIAL PRIMARY KEY,
        account      TEXT NOT NULL REFERENCES accounts(subject),
        purpose      TEXT NOT NULL,
        phone_number TEXT NOT NULL,
        nonce        BYTEA NOT NULL,
        created_at   BIGINT NOT NULL,
        expires_at   BIGINT NOT NULL,
        checks       INTEGER NOT NULL DEFAULT 0,
        state        TEXT NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'consumed', 'exhausted'))
    );
    CREATE INDEX sms_codes_by_target ON sms_codes(account, purpose, phone_number, id);
    CREATE INDEX sms_codes_by_purpose ON sms_codes(account, purpose, id);

    CREATE TABLE sms_sends (
        id           BIGSERIAL PRIMARY KEY,
        account      TEXT NOT NULL,
        phone_number TEXT NOT NULL,
        sent_at      BIGINT NOT NULL
    );
    CREATE INDEX sms_sends_by_account ON sms_sends(account, sent_at);
    CREATE INDEX sms_sends_by_number ON sms_sends(phone_number, sent_at);

    CREATE TABLE enrollment_sessions (
        id           TEXT PRIMARY KEY,
        account      TEXT NOT NULL REFERENCES accounts(subject),
        nonce        BYTEA NOT NULL,
        login_state  BYTEA,
        pin_ordinal  INTEGER,
        sms_code_id  BIGINT NOT NULL REFERENCES sms_codes(id),
        phone_number TEXT,
        created_at   BIGINT NOT NULL,
        expires_at   BIGINT NOT NULL,
        finished_at  BIGINT
    );

    CREATE TABLE devices (
        id               TEXT PRIMARY KEY,
        account          TEXT NOT NULL REFERENCES accounts(subject),
        public_key       BYTEA NOT NULL,
        name             TEXT NOT NULL,
        platform         TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('pending', 'active', 'disabled')),
        counter          BIGINT NOT NULL,
        activation_nonce BYTEA NOT NULL,
        created_at       BIGINT NOT NULL,
        activated_at     BIGINT,
        last_used_at     BIGINT
    );
    CREATE INDEX devices_by_account ON devices(account);

    CREATE TABLE idempotency (
        account    TEXT NOT NULL REFERENCES accounts(subject),
        key        TEXT NOT NULL,
        scope      TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (account, key)
    );

    CREATE TABLE otp_challenges (
        id          TEXT PRIMARY KEY,
        account     TEXT NOT NULL REFERENCES accounts(subject),
        device_id   TEXT NOT NULL REFERENCES devices(id),
        nonce       BYTEA NOT NULL,
        login_state BYTEA,
        pin_ordinal INTEGER,
        created_at  BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL,
        used_at     BIGINT
    );

    -- Only a keyed MAC of each OTP is stored.
    CREATE TABLE otps (
        mac        BYTEA PRIMARY KEY,
        account    TEXT NOT NULL REFERENCES accounts(subject),
        device_id  TEXT NOT NULL REFERENCES devices(id),
        with_pin   BOOLEAN NOT NULL,
        issued_at  BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at    BIGINT,
        used_by    TEXT
    );

    -- Append-only.
    CREATE TABLE audit (
        id        BIGSERIAL PRIMARY KEY,
        at        BIGINT NOT NULL,
        account   TEXT NOT NULL,
        event     TEXT NOT NULL,
        device_id TEXT,
        detail    TEXT
    );
    CREATE INDEX audit_by_account ON audit(account, id);
    CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit rows are append-only'; END $$;
    CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    "#,
    // 2: SMS sends remember the client address (limit per address)
    r#"
    ALTER TABLE sms_sends ADD COLUMN client_address TEXT;
    CREATE INDEX sms_sends_by_address ON sms_sends(client_address, sent_at);
    "#,
    // 3: insertion order of devices (SQLite's rowid), to list same-second devices in order
    r#"
    ALTER TABLE devices ADD COLUMN seq BIGSERIAL;
    "#,
    // 4: PIN records under fresh credential identifiers, how each PIN was set, the recovery
    // hold after a number change, OTP audiences, PIN-change challenges; login states sealed
    r#"
    ALTER TABLE accounts ADD COLUMN pin_credential_id TEXT;
    ALTER TABLE accounts ADD COLUMN pin_set_at BIGINT;
    ALTER TABLE accounts ADD COLUMN pin_set_by TEXT;
    ALTER TABLE accounts ADD COLUMN recovery_held_until BIGINT;
    ALTER TABLE accounts ADD COLUMN pin_recovered_at BIGINT;
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
    // 5: audit rows are chained by a keyed MAC (see `audit.rs`); the update guard is lifted
    // only while the server chains the rows already there
    r#"
    ALTER TABLE audit ADD COLUMN prev_id BIGINT, ADD COLUMN mac BYTEA;
    ALTER TABLE audit DISABLE TRIGGER audit_no_update;
    -- then the server chains the existing audit rows
    "#,
    // 6: the guard again. The application role owns the table, so it could drop the triggers
    // or grant itself the privileges back: these only stop mistakes and casual writers; what
    // stops a database writer is the chain, whose MACs it cannot compute without the key file.
    r#"
    ALTER TABLE audit ENABLE TRIGGER audit_no_update;
    REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM PUBLIC, CURRENT_USER;
    "#,
    // 7: shared with SQLite
    super::schema::ACCOUNT_INDEXES_AND_ADDRESS_ORDINALS,
    // 8: the number trusted before a hold began is kept until it ends (it used to be
    // overwritten by every change), with the nonce the owner's restore code derives from.
    // A number kept before this version may be one a thief set during its hold: none is kept
    // (holds still block PIN recovery by SMS; the helpdesk decides from the audit trail).
    r#"
    ALTER TABLE accounts RENAME COLUMN previous_phone_number TO pre_hold_phone_number;
    ALTER TABLE accounts ADD COLUMN restore_nonce BYTEA;
    UPDATE accounts SET pre_hold_phone_number = NULL;
    "#,
    // 9: who disabled a device, when an operator may undo it ('operator')
    r#"
    ALTER TABLE devices ADD COLUMN disabled_by TEXT;
    "#,
    // 10: shared with SQLite: what each device's enrollment proved of its key
    super::schema::DEVICE_ASSURANCE,
    // 11: shared with SQLite: challenges indexed by what their use does not change
    super::schema::CHALLENGE_INDEXES_UNCHANGED_BY_USE,
];
