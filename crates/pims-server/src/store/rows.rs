//! The row operations a database gives the store steps ([`super::steps`]): each reads or writes
//! rows and decides nothing. SQLite runs them synchronously under its one writer, PostgreSQL
//! over a READ COMMITTED transaction; locks that only PostgreSQL needs (SQLite serialises every
//! writer) are no-ops on SQLite.

use pims_proto::{PinOrigin, SmsPurpose};

use super::{
    AccountRecord, AdminDeviceSummary, AuditEvent, AuditQuery, ChainedAuditRow, ChallengeKind,
    DeviceRecord, DeviceSummary, EnrollmentSession, NewDeviceRecord, OtpChallengeRecord, PinFacts,
    StartEnrollmentStep, TrustedNumber, VerifiedOtp,
};
use crate::error::Result;

/// States of a stored SMS code.
pub const CODE_LIVE: &str = "live";
pub const CODE_EXHAUSTED: &str = "exhausted";
pub const CODE_CONSUMED: &str = "consumed";

/// An SMS code as stored.
pub struct CodeRow {
    pub id: i64,
    pub phone_number: String,
    pub nonce: Vec<u8>,
    pub expires_at: i64,
    pub checks: u32,
    pub state: String,
}

/// An enrollment session closed by its finish.
pub struct SessionRow {
    pub pin_ordinal: Option<u32>,
    pub sms_code_id: i64,
    pub phone_number: Option<String>,
    pub pin_credential_id: Option<String>,
}

/// A challenge used up by the step answering it.
pub struct UsedChallenge {
    /// The device it was issued to, as the step found it.
    pub device: DeviceRecord,
    /// The ordinal of the PIN attempt its login started.
    pub ordinal: Option<u32>,
    /// `reset` or `update` for a PIN-change challenge.
    pub pin_change: Option<String>,
    pub credential_id: Option<String>,
    pub audience: Option<String>,
}

/// A challenge to record: an OTP or device challenge, or the one a PIN change finishes over.
pub struct NewChallenge<'a> {
    pub id: &'a str,
    pub account: &'a str,
    pub device_id: &'a str,
    pub nonce: &'a [u8],
    pub login_state: Option<&'a [u8]>,
    pub pin_ordinal: Option<u32>,
    pub pin_change: Option<&'a str>,
    pub pin_credential_id: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// An OTP to record, by its MAC.
pub struct NewOtp<'a> {
    pub mac: &'a [u8],
    pub account: &'a str,
    pub device_id: &'a str,
    pub with_pin: bool,
    pub issued_at: i64,
    pub expires_at: i64,
    pub audience: Option<&'a str>,
}

/// Whose SMS sends a limit counts.
#[derive(Clone, Copy)]
pub enum SendsOf<'a> {
    Account(&'a str),
    Number(&'a str),
}

/// The sends of one client address in a window: its newest ordinal, and the ordinal and time of
/// its oldest send in the window (see [`super::check_address_sends`]).
pub struct AddressSends {
    pub last: Option<i64>,
    pub first_in_window: Option<(i64, i64)>,
}

/// A device write refused by its own guard (the device disabled, or its counter grown, since
/// it was read) means the step ran without the account lock: it must not count.
pub const DEVICE_CHANGED: &str = "the device changed under the account lock";

#[allow(async_fn_in_trait)] // used only with concrete stores, whose futures are checked there
pub trait Rows {
    // ---- accounts
    /// Creates the account if needed and locks its row until the step ends.
    async fn lock_account(&self, account: &str, now: i64) -> Result<AccountRecord>;
    /// Locks the account row if it exists (steps that never create an account).
    async fn lock_existing_account(&self, account: &str) -> Result<()>;
    /// Locks the row of the account the OTP `mac` belongs to, if both exist.
    async fn lock_account_of_otp(&self, mac: &[u8]) -> Result<()>;
    async fn account(&self, account: &str) -> Result<Option<AccountRecord>>;
    async fn pin_facts(&self, account: &str) -> Result<Option<PinFacts>>;
    async fn accounts_with_phone_number(&self, phone_number: &str) -> Result<Vec<String>>;
    async fn accounts_with_subject_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<String>>;
    /// The rows of `query` in the order its page is read (newest first for `OlderThan`,
    /// oldest first for `NewerThan`).
    async fn audit_search(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;
    /// Adds one to the PIN failure count; the new count.
    async fn add_pin_attempt(&self, account: &str) -> Result<u32>;
    async fn reset_pin_failures(&self, account: &str) -> Result<()>;
    /// Stores the PIN record and its origin, clearing the failure count.
    async fn store_pin(
        &self,
        account: &str,
        record: &[u8],
        credential_id: &str,
        origin: PinOrigin,
        now: i64,
    ) -> Result<()>;
    /// Deletes the PIN record and the failure count.
    async fn clear_pin(&self, account: &str) -> Result<()>;
    async fn set_phone_number(&self, account: &str, phone_number: &str) -> Result<()>;
    /// Writes the trusted number with its hold, as a rule of `AccountRecord` decided them.
    async fn set_trusted_number(&self, account: &str, number: &TrustedNumber) -> Result<()>;

    // ---- audit trail
    /// Appends a row to the account's chain.
    async fn audit(
        &self,
        now: i64,
        account: &str,
        event: &str,
        device_id: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()>;
    async fn audit_trail(
        &self,
        account: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>>;
    async fn audit_chain(&self, after_id: i64, limit: u32) -> Result<Vec<ChainedAuditRow>>;

    // ---- devices
    async fn device(&self, account: &str, device_id: &str) -> Result<Option<DeviceRecord>>;
    /// Active devices and Pending ones created after `pending_since`.
    async fn live_device_count(&self, account: &str, pending_since: i64) -> Result<u32>;
    async fn live_devices(&self, account: &str, pending_since: i64) -> Result<Vec<DeviceSummary>>;
    async fn all_devices(&self, account: &str) -> Result<Vec<AdminDeviceSummary>>;
    /// A new Pending device with counter 0.
    async fn insert_device(&self, account: &str, device: &NewDeviceRecord, now: i64) -> Result<()>;
    /// Makes a device that is not Disabled Active with a counter above its own; whether it
    /// did.
    async fn activate_device(
        &self,
        account: &str,
        device_id: &str,
        counter: i64,
        now: i64,
    ) -> Result<bool>;
    /// Stores a counter above the device's own and, with `used_at`, when the device was last
    /// used. Refused by its own guard (the device disabled, or its counter grown, since the
    /// step read it), it fails the step with [`DEVICE_CHANGED`] — possibly only when the step
    /// ends, as a PostgreSQL write answered at the commit.
    async fn set_device_counter(
        &self,
        device_id: &str,
        counter: i64,
        used_at: Option<i64>,
    ) -> Result<()>;
    /// Disables one device; `by_operator` when an operator may undo it.
    async fn disable_device(&self, account: &str, device_id: &str, by_operator: bool)
        -> Result<()>;
    /// Disables every device of the account not yet disabled; how many.
    async fn disable_devices(&self, account: &str) -> Result<u64>;
    /// No device of the account can be re-enabled any more.
    async fn forget_operator_disables(&self, account: &str) -> Result<()>;
    /// Re-enables a device an operator disabled after it was active; `false` for any other.
    async fn enable_device(&self, account: &str, device_id: &str) -> Result<bool>;

    // ---- enrollment sessions
    async fn insert_session(
        &self,
        step: &StartEnrollmentStep,
        pin_ordinal: Option<u32>,
        sms_code_id: i64,
    ) -> Result<()>;
    /// Closes an open session of the account and returns it.
    async fn take_session(&self, account: &str, id: &str, now: i64) -> Result<Option<SessionRow>>;
    async fn open_session(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<EnrollmentSession>>;
    /// Closes the account's open sessions (with `logins_only`, those that log in).
    async fn close_sessions(&self, account: &str, now: i64, logins_only: bool) -> Result<()>;

    // ---- challenges
    async fn insert_challenge(&self, challenge: &NewChallenge<'_>) -> Result<()>;
    /// Uses up an open challenge of the account of this kind, in one statement (of two racing
    /// uses only one gets it).
    async fn take_challenge(
        &self,
        account: &str,
        id: &str,
        now: i64,
        kind: ChallengeKind,
    ) -> Result<Option<UsedChallenge>>;
    async fn open_challenge(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<OtpChallengeRecord>>;
    /// Open challenges of the device that carry no login.
    async fn open_unsigned_challenges(&self, device_id: &str, now: i64) -> Result<u32>;
    /// Closes the account's open challenges (with `pin_only`, those that log in or change the
    /// PIN).
    async fn close_challenges(&self, account: &str, now: i64, pin_only: bool) -> Result<()>;

    // ---- SMS codes and sends
    /// The newest code of the purpose, for `phone_number` or any.
    async fn latest_code(
        &self,
        account: &str,
        purpose: SmsPurpose,
        phone_number: Option<&str>,
    ) -> Result<Option<CodeRow>>;
    async fn code(&self, id: i64) -> Result<CodeRow>;
    async fn set_code_checks(&self, id: i64, checks: u32) -> Result<()>;
    async fn set_code_state(&self, id: i64, state: &str) -> Result<()>;
    /// The newest live code that may still be resent: its nonce and expiry.
    async fn resendable_code(
        &self,
        account: &str,
        purpose: SmsPurpose,
        phone_number: &str,
        now: i64,
        max_checks: u32,
    ) -> Result<Option<(Vec<u8>, i64)>>;
    async fn insert_code(
        &self,
        account: &str,
        purpose: SmsPurpose,
        phone_number: &str,
        nonce: &[u8],
        now: i64,
        expires_at: i64,
    ) -> Result<()>;
    /// Serialises the sends to one number across accounts (and replicas).
    async fn lock_number(&self, phone_number: &str) -> Result<()>;
    /// Serialises the sends from one address, taken after the number's lock.
    async fn lock_address(&self, address: &str) -> Result<()>;
    /// The count of sends after `since`, and the time of the oldest.
    async fn sends(&self, of: SendsOf<'_>, since: i64) -> Result<(i64, Option<i64>)>;
    async fn address_sends(&self, address: &str, since: i64) -> Result<AddressSends>;
    /// Records a send, with its address and the address's ordinal when known.
    async fn record_send(
        &self,
        account: &str,
        phone_number: &str,
        now: i64,
        address: Option<(&str, i64)>,
    ) -> Result<()>;

    // ---- idempotency
    /// The scope and serialized outcome stored under the key.
    async fn outcome(&self, account: &str, key: &str) -> Result<Option<(String, String)>>;
    async fn store_outcome(
        &self,
        account: &str,
        key: &str,
        scope: &str,
        outcome: &str,
        now: i64,
    ) -> Result<()>;

    // ---- OTPs
    async fn insert_otp(&self, otp: &NewOtp<'_>) -> Result<()>;
    /// Marks an unused, unexpired OTP of `relying_party` whose device is Active used, in one
    /// statement, and returns it with the account's PIN history.
    async fn use_otp(
        &self,
        mac: &[u8],
        now: i64,
        relying_party: &str,
    ) -> Result<Option<VerifiedOtp>>;

    // ---- purge
    /// Whether this server may purge now (one replica at a time).
    async fn lock_purge(&self) -> Result<bool>;
    /// Runs one statement of [`super::PurgeStep::statements`]; the rows deleted.
    async fn purge(&self, sql: &str, bound: i64) -> Result<u64>;
}
