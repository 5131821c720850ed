//! The statements of the row operations ([`super::rows`]), written once in the SQL both
//! databases speak, with PostgreSQL's `$N` placeholders; [`sqlite`] holds the same texts with
//! SQLite's `?N`, converted at compile time. The predicates that carry a rule of the design
//! (what counts as a live device, an open challenge or session, a usable OTP or code) are
//! therefore one text for both. Statements only one database needs (PostgreSQL's row and
//! advisory locks, SQLite's audit append through its SQL function) stay with that database.

/// `$N` → `?N`: the only difference between the two dialects in these texts.
pub const fn sqlite_placeholders<const N: usize>(sql: &str) -> [u8; N] {
    let bytes = sql.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = if bytes[i] == b'$' { b'?' } else { bytes[i] };
        i += 1;
    }
    out
}

/// `NAME = "text";`, or `NAME = "text", sqlite = "text";` where a word differs.
macro_rules! statements {
    ($($(#[$doc:meta])* $name:ident = $sql:expr $(, sqlite = $lite:expr)?;)*) => {
        /// The statements as PostgreSQL takes them.
        pub mod pg {
            $($(#[$doc])* pub const $name: &str = $sql;)*
        }
        /// The statements as SQLite takes them.
        pub mod sqlite {
            $(pub const $name: &str = {
                const TEXT: &str = statements!(@sqlite $sql $(, $lite)?);
                const BYTES: [u8; TEXT.len()] = super::sqlite_placeholders(TEXT);
                match core::str::from_utf8(&BYTES) {
                    Ok(sql) => sql,
                    Err(_) => panic!("a statement that is not UTF-8"),
                }
            };)*
        }
    };
    (@sqlite $sql:expr) => { $sql };
    (@sqlite $sql:expr, $lite:expr) => { $lite };
}

/// A Pending device counts until it is older than the pending time-to-live (`$2`: the
/// creation time after which it still counts); see [`super::DeviceRecord::live_state`].
macro_rules! live_device {
    () => {
        "(state = 'active' OR (state = 'pending' AND created_at > $2))"
    };
}

macro_rules! live_devices_by {
    ($tie:literal) => {
        concat!(
            "SELECT id, name, platform, state, created_at, last_used_at, assurance FROM devices
             WHERE account = $1 AND ",
            live_device!(),
            " ORDER BY created_at, ",
            $tie
        )
    };
}

macro_rules! audit_search {
    () => {
        "SELECT id, at, account, event, device_id, detail FROM audit
         WHERE (CAST($1 AS TEXT) IS NULL OR account = CAST($1 AS TEXT))
           AND (CAST($2 AS TEXT) IS NULL OR event = CAST($2 AS TEXT))
           AND (CAST($3 AS TEXT) IS NULL
                OR substr(COALESCE(detail, ''), 1, length(CAST($3 AS TEXT))) = CAST($3 AS TEXT))
           AND at >= $4 AND at < $5"
    };
}

macro_rules! all_devices_by {
    ($tie:literal) => {
        concat!(
            "SELECT id, name, platform, state, created_at, activated_at, last_used_at,
                    COALESCE(state = 'disabled' AND disabled_by = 'operator'
                             AND activated_at IS NOT NULL, FALSE),
                    assurance, assurance_detail
             FROM devices WHERE account = $1 ORDER BY created_at, ",
            $tie
        )
    };
}

statements! {
    INSERT_ACCOUNT =
        "INSERT INTO accounts (subject, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING";
    /// The columns the stores map to an `AccountRecord`, in this order.
    ACCOUNT = "SELECT phone_number, pin_record, pin_credential_id, pin_failures,
                      recovery_held_until, pin_set_at IS NOT NULL, pre_hold_phone_number,
                      restore_nonce
               FROM accounts WHERE subject = $1";
    ACCOUNTS_WITH_PHONE_NUMBER =
        "SELECT subject FROM accounts WHERE phone_number = $1 ORDER BY subject";
    /// Exact on both databases (SQLite's LIKE ignores ASCII case, PostgreSQL's does not).
    ACCOUNTS_WITH_SUBJECT_PREFIX =
        "SELECT subject FROM accounts
         WHERE substr(subject, 1, length(CAST($1 AS TEXT))) = CAST($1 AS TEXT)
         ORDER BY subject LIMIT $2";
    ADD_PIN_ATTEMPT = "UPDATE accounts SET pin_failures = pin_failures + 1 WHERE subject = $1
                       RETURNING pin_failures";
    RESET_PIN_FAILURES = "UPDATE accounts SET pin_failures = 0 WHERE subject = $1";
    STORE_PIN = "UPDATE accounts SET pin_record = $2, pin_credential_id = $3, pin_failures = 0,
                        pin_set_at = $4, pin_set_by = $5,
                        pin_recovered_at = CASE WHEN $5 = 'sms_recovery' THEN $4
                                                ELSE pin_recovered_at END
                 WHERE subject = $1";
    CLEAR_PIN = "UPDATE accounts SET pin_record = NULL, pin_credential_id = NULL, pin_failures = 0
                 WHERE subject = $1";
    SET_PHONE_NUMBER = "UPDATE accounts SET phone_number = $2 WHERE subject = $1";
    SET_TRUSTED_NUMBER = "UPDATE accounts SET phone_number = $2, pre_hold_phone_number = $3,
                                 recovery_held_until = $4, restore_nonce = $5
                          WHERE subject = $1";

    /// The columns the stores map to an `AuditEvent`, in this order.
    /// What a relying party is told of the account's PIN beside a command.
    PIN_FACTS = "SELECT pin_set_at, pin_set_by, pin_recovered_at FROM accounts WHERE subject = $1";
    AUDIT_ROWS = "SELECT id, at, account, event, device_id, detail FROM audit ORDER BY id";
    SET_AUDIT_LINK = "UPDATE audit SET prev_id = $2, mac = $3 WHERE id = $1";
    AUDIT_TRAIL = "SELECT id, at, account, event, device_id, detail FROM audit
                   WHERE (CAST($1 AS TEXT) IS NULL OR account = $1) AND id > $2
                   ORDER BY id LIMIT $3";
    /// The helpdesk's view: optional account, event and actor (the start of the detail, where
    /// operators are named), a time range, newest first from below an id…
    AUDIT_OLDER = concat!(audit_search!(), " AND id < $6 ORDER BY id DESC LIMIT $7");
    /// …or oldest first from above one (the page is then turned around).
    AUDIT_NEWER = concat!(audit_search!(), " AND id > $6 ORDER BY id LIMIT $7");
    AUDIT_CHAIN = "SELECT id, at, account, event, device_id, detail, prev_id, mac FROM audit
                   WHERE id > $1 ORDER BY id LIMIT $2";

    DEVICE = "SELECT id, public_key, state, counter, activation_nonce, created_at, assurance
              FROM devices WHERE id = $1 AND account = $2";
    LIVE_DEVICE_COUNT =
        concat!("SELECT COUNT(*) FROM devices WHERE account = $1 AND ", live_device!());
    /// In creation order (`seq` on PostgreSQL, the row id on SQLite, breaks ties).
    LIVE_DEVICES = live_devices_by!("seq"), sqlite = live_devices_by!("rowid");
    ALL_DEVICES = all_devices_by!("seq"), sqlite = all_devices_by!("rowid");
    INSERT_DEVICE = "INSERT INTO devices (id, account, public_key, name, platform, state, counter,
                                          activation_nonce, created_at, assurance,
                                          assurance_detail)
                     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $8, $9)";
    /// Guarded like every counter write: the step checked both under the account lock, so a
    /// write the guard refuses is an internal error, never a counted step.
    ACTIVATE_DEVICE = "UPDATE devices SET state = 'active', counter = $3,
                              activated_at = COALESCE(activated_at, $4)
                       WHERE id = $1 AND account = $2 AND state != 'disabled' AND counter < $3";
    SET_DEVICE_COUNTER = "UPDATE devices SET counter = $2, last_used_at = COALESCE($3, last_used_at)
                          WHERE id = $1 AND state = 'active' AND counter < $2";
    DISABLE_DEVICE = "UPDATE devices SET state = 'disabled', disabled_by = $3
                      WHERE id = $1 AND account = $2";
    /// Only what an operator disabled, once activated, and nothing account-wide since.
    ENABLE_DEVICE = "UPDATE devices SET state = 'active', disabled_by = NULL
                     WHERE id = $1 AND account = $2 AND state = 'disabled'
                       AND disabled_by = 'operator' AND activated_at IS NOT NULL";
    FORGET_OPERATOR_DISABLES =
        "UPDATE devices SET disabled_by = NULL WHERE account = $1 AND disabled_by IS NOT NULL";
    DISABLE_DEVICES =
        "UPDATE devices SET state = 'disabled' WHERE account = $1 AND state != 'disabled'";

    INSERT_SESSION = "INSERT INTO enrollment_sessions (id, account, nonce, login_state,
                          pin_ordinal, sms_code_id, phone_number, created_at, expires_at,
                          pin_credential_id)
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    TAKE_SESSION = "UPDATE enrollment_sessions SET finished_at = $3
                    WHERE id = $1 AND account = $2 AND finished_at IS NULL AND expires_at > $3
                    RETURNING pin_ordinal, sms_code_id, phone_number, pin_credential_id";
    OPEN_SESSION = "SELECT id, nonce, login_state FROM enrollment_sessions
                    WHERE id = $1 AND account = $2 AND finished_at IS NULL AND expires_at > $3";
    CLOSE_SESSIONS = "UPDATE enrollment_sessions SET finished_at = $2
                      WHERE account = $1 AND finished_at IS NULL
                        AND (NOT $3 OR login_state IS NOT NULL)";

    INSERT_CHALLENGE = "INSERT INTO otp_challenges (id, account, device_id, nonce, login_state,
                            pin_ordinal, pin_change, pin_credential_id, audience, created_at,
                            expires_at)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
    /// A challenge answers only its own kind of step (`$4`: a PIN-change finish).
    TAKE_CHALLENGE = "UPDATE otp_challenges SET used_at = $3
                      WHERE id = $1 AND account = $2 AND used_at IS NULL AND expires_at > $3
                        AND (pin_change IS NOT NULL) = $4
                      RETURNING device_id, pin_ordinal, pin_change, pin_credential_id, audience";
    OPEN_CHALLENGE = "SELECT c.id, c.device_id, c.nonce, c.login_state, d.public_key
                      FROM otp_challenges c JOIN devices d ON d.id = c.device_id
                      WHERE c.id = $1 AND c.account = $2 AND c.used_at IS NULL
                        AND c.expires_at > $3";
    OPEN_UNSIGNED_CHALLENGES = "SELECT COUNT(*) FROM otp_challenges
                                WHERE device_id = $1 AND used_at IS NULL AND expires_at > $2
                                  AND pin_ordinal IS NULL";
    /// Every unused one, expired or not by this step's clock: a step whose clock is behind
    /// (another replica's, or one that read its time before waiting for the lock) still finds
    /// the challenge unexpired, so only `used_at` closes it.
    CLOSE_CHALLENGES = "UPDATE otp_challenges SET used_at = $2
                        WHERE account = $1 AND used_at IS NULL
                          AND (NOT $3 OR pin_ordinal IS NOT NULL OR pin_change IS NOT NULL)";

    /// The columns the stores map to a `CodeRow`, in this order.
    LATEST_CODE = "SELECT id, phone_number, nonce, expires_at, checks, state FROM sms_codes
                   WHERE account = $1 AND purpose = $2
                     AND (CAST($3 AS TEXT) IS NULL OR phone_number = $3)
                   ORDER BY id DESC LIMIT 1";
    CODE = "SELECT id, phone_number, nonce, expires_at, checks, state FROM sms_codes
            WHERE id = $1";
    SET_CODE_CHECKS = "UPDATE sms_codes SET checks = $2 WHERE id = $1";
    SET_CODE_STATE = "UPDATE sms_codes SET state = $2 WHERE id = $1";
    RESENDABLE_CODE = "SELECT nonce, expires_at FROM sms_codes
                       WHERE account = $1 AND purpose = $2 AND phone_number = $3
                         AND state = 'live' AND expires_at > $4 AND checks < $5
                       ORDER BY id DESC LIMIT 1";
    INSERT_CODE = "INSERT INTO sms_codes (account, purpose, phone_number, nonce, created_at,
                                          expires_at)
                   VALUES ($1, $2, $3, $4, $5, $6)";
    SENDS_OF_ACCOUNT =
        "SELECT COUNT(*), MIN(sent_at) FROM sms_sends WHERE account = $1 AND sent_at > $2";
    SENDS_TO_NUMBER =
        "SELECT COUNT(*), MIN(sent_at) FROM sms_sends WHERE phone_number = $1 AND sent_at > $2";
    LAST_ADDRESS_SEND = "SELECT seq FROM sms_address_sends WHERE client_address = $1
                         ORDER BY seq DESC LIMIT 1";
    FIRST_ADDRESS_SEND_IN_WINDOW = "SELECT seq, sent_at FROM sms_address_sends
                                    WHERE client_address = $1 AND sent_at > $2
                                    ORDER BY sent_at, seq LIMIT 1";

    OUTCOME = "SELECT scope, outcome FROM idempotency WHERE account = $1 AND key = $2";
    STORE_OUTCOME = "INSERT INTO idempotency (account, key, scope, outcome, created_at)
                     VALUES ($1, $2, $3, $4, $5)";

    INSERT_OTP = "INSERT INTO otps (mac, account, device_id, with_pin, issued_at, expires_at,
                                    audience)
                  VALUES ($1, $2, $3, $4, $5, $6, $7)";
    /// Usable once, before it expires, by the relying party it was issued for, while its
    /// device is Active. (SQLite's RETURNING cannot read a joined table: the account's PIN
    /// history comes from subqueries.)
    USE_OTP = "UPDATE otps SET used_at = $2, used_by = $3
               WHERE mac = $1 AND used_at IS NULL AND expires_at > $2 AND audience = $3
                 AND EXISTS (SELECT 1 FROM devices d
                             WHERE d.id = otps.device_id AND d.state = 'active')
                 AND EXISTS (SELECT 1 FROM accounts a WHERE a.subject = otps.account)
               RETURNING account, device_id, with_pin, issued_at,
                 (SELECT pin_set_at FROM accounts a WHERE a.subject = otps.account),
                 (SELECT pin_set_by FROM accounts a WHERE a.subject = otps.account),
                 (SELECT pin_recovered_at FROM accounts a WHERE a.subject = otps.account),
                 (SELECT assurance FROM devices d WHERE d.id = otps.device_id)";
}
