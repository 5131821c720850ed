//! Persistence at the level of the domain: each method is one atomic step of the security
//! design (one transaction), written once in `steps` over the row operations of `rows`
//! (statements in `sql`), which SQLite and PostgreSQL implement; both must give the same
//! answers under concurrency, including across server replicas.
//!
//! Methods return `Err(Error::Api(..))` for outcomes the client sees. Such an outcome still
//! commits what the step wrote before deciding it (a counted SMS check, a consumed session, a
//! disabled device); only `Error::Internal` rolls back.

use std::ops::ControlFlow;
use std::sync::Arc;

use pims_proto::{
    ApiError, DeviceState, EnrollmentFinished, NumberRefusal, PinOrigin, Platform, SmsPurpose,
};
use serde::{Deserialize, Serialize};

use crate::error::{api, Result};

mod pipeline;
pub mod postgres;
mod postgres_schema;
mod rows;
mod schema;
mod sql;
pub mod sqlite;
mod steps;

/// Whether a candidate SMS code matches the code derived for `(phone, nonce)`; the account and
/// purpose are bound by the caller. Lets the store check codes without holding the MAC key.
pub type CodeMatcher = Arc<dyn Fn(&str, &[u8]) -> bool + Send + Sync>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountRecord {
    pub phone_number: Option<String>,
    pub pin_record: Option<Vec<u8>>,
    /// OPAQUE credential identifier the record was registered under (fresh per record).
    pub pin_credential_id: Option<String>,
    pub pin_failures: u32,
    /// Until when (Unix seconds) a PIN may not be set by SMS alone: set by a number change.
    pub recovery_held_until: Option<i64>,
    /// Whether a PIN was ever set, even if removed since.
    pub pin_ever_set: bool,
    /// The number trusted before a change without the PIN, which a restore gives back while
    /// the hold that change began runs (see [`AccountRecord::running_hold`]).
    pub pre_hold_phone_number: Option<String>,
    /// What the owner's restore code derives from (under a key-file key): set with the
    /// pre-hold number, cleared with it.
    pub restore_nonce: Option<Vec<u8>>,
}

/// The trusted number's columns, which every change writes together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedNumber {
    pub phone_number: String,
    pub pre_hold_phone_number: Option<String>,
    pub recovery_held_until: Option<i64>,
    pub restore_nonce: Option<Vec<u8>>,
}

/// The restore window a change without the PIN opened, while its hold runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningHold<'a> {
    pub until: i64,
    /// The number trusted before the hold began: the only one a restore gives back.
    pub pre_hold_phone_number: &'a str,
}

/// The PIN of a login to start: the record and the identifier it was registered under.
pub struct CurrentPin {
    pub record: Vec<u8>,
    pub credential_id: String,
}

impl AccountRecord {
    /// The PIN to log in against, unless the account has none (`NoPin`) or is blocked.
    pub fn pin_for_login(&self, pin_attempts: u32) -> Result<CurrentPin> {
        let (Some(record), Some(credential_id)) = (&self.pin_record, &self.pin_credential_id)
        else {
            return api(ApiError::NoPin);
        };
        if pin_blocked(self.pin_failures, pin_attempts) {
            return api(ApiError::AccountBlocked);
        }
        Ok(CurrentPin {
            record: record.clone(),
            credential_id: credential_id.clone(),
        })
    }

    /// The rule for setting a PIN with an SMS code alone (a reset, or an enrollment that
    /// registers a PIN): refused while a recent number change holds recovery.
    pub fn check_recovery_allowed(&self, now: i64) -> Result<()> {
        match self.recovery_held_until {
            Some(until) if until > now => api(ApiError::RecoveryHeld {
                retry_after_seconds: (until - now) as u64,
            }),
            _ => Ok(()),
        }
    }

    /// The restore window, if one is open at `now`.
    pub fn running_hold(&self, now: i64) -> Option<RunningHold<'_>> {
        match (self.recovery_held_until, &self.pre_hold_phone_number) {
            (Some(until), Some(number)) if until > now => Some(RunningHold {
                until,
                pre_hold_phone_number: number,
            }),
            _ => None,
        }
    }

    /// The one rule for the trusted number's history. A change to the number already trusted
    /// is refused. Every change holds PIN recovery by SMS alone for `hold` seconds (or to the
    /// end of a hold already running).
    ///
    /// A change *without* the PIN may be someone else's (a phone thief's): it opens a restore
    /// window for as long as the hold, keeping the number trusted until now, with a fresh
    /// nonce for the code that gives it back. While that window is open the number of before
    /// it stays, whatever happens, and a further change needs the PIN proven in the same signed
    /// operation (a thief could otherwise move the number again and again, each move announced
    /// only to the previous thief number).
    ///
    /// A change *with* the PIN proven is the owner's: nothing can undo it, so whoever holds the
    /// number of before (a SIM swapper, a thief who moved it earlier) cannot take the number
    /// back; it closes a restore window that was open.
    pub fn number_change(
        &self,
        new_number: &str,
        pin_proven: bool,
        now: i64,
        hold: u64,
        fresh_nonce: Vec<u8>,
    ) -> Result<NumberChanged> {
        let Some(current) = &self.phone_number else {
            return api(ApiError::NoPhoneNumber);
        };
        if current == new_number {
            return api(ApiError::PhoneNumberRefused {
                reason: NumberRefusal::AlreadyTrusted,
            });
        }
        let new_hold = now.saturating_add(i64::try_from(hold).unwrap_or(i64::MAX));
        let window = self.running_hold(now);
        let (restorable, held_until) = match (window, pin_proven) {
            (Some(running), false) => {
                return api(ApiError::RecoveryHeld {
                    retry_after_seconds: (running.until - now) as u64,
                })
            }
            (None, false) => (Some((current.clone(), fresh_nonce)), new_hold),
            (_, true) => (
                None,
                self.recovery_held_until
                    .filter(|until| *until > now)
                    .unwrap_or(new_hold),
            ),
        };
        Ok(NumberChanged {
            phone_number: new_number.to_string(),
            replaced: current.clone(),
            restorable,
            closed_window_of: window.map(|w| w.pre_hold_phone_number.to_string()),
            held_until,
        })
    }

    /// What a restore writes: the number of before the restore window trusted again, the
    /// window closed with its nonce, and the hold ended — every device is disabled with it,
    /// so the number is the owner's again and the owner may start over at once (a hold left
    /// running would let whoever holds the token remove everything and keep the owner from a
    /// new PIN for days). `NothingToRestore` when no window is open.
    pub fn restoration(&self, now: i64) -> Result<TrustedNumber> {
        match self.running_hold(now) {
            Some(running)
                if self.phone_number.as_deref() != Some(running.pre_hold_phone_number) =>
            {
                Ok(TrustedNumber {
                    phone_number: running.pre_hold_phone_number.to_string(),
                    pre_hold_phone_number: None,
                    recovery_held_until: None,
                    restore_nonce: None,
                })
            }
            _ => api(ApiError::NothingToRestore),
        }
    }

    /// The rules an enrollment start checks before its SMS code, the same in every store: the
    /// code to check (certification of a number the account will trust, or enrollment on its
    /// trusted number), and the PIN state the device chose register or login from still holds.
    pub fn enrollment_code(&self, step: &StartEnrollmentStep) -> Result<(SmsPurpose, CodeTarget)> {
        let code = match &step.phone_number {
            Some(_) if self.phone_number.is_some() => {
                return api(ApiError::PhoneNumberAlreadyRegistered)
            }
            Some(number) => (
                SmsPurpose::PhoneCertification,
                CodeTarget::Number(number.clone()),
            ),
            None if self.phone_number.is_none() => return api(ApiError::NoPhoneNumber),
            None => (SmsPurpose::Enrollment, CodeTarget::TrustedNumber),
        };
        let pin_matches = match &step.login {
            None => self.pin_record.is_none(),
            Some(login) => self.pin_record.as_deref() == Some(login.pin_record.as_slice()),
        };
        if !pin_matches {
            return api(ApiError::PinStateChanged);
        }
        if step.login.is_none() {
            self.check_recovery_allowed(step.now)?;
        }
        Ok(code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: String,
    pub public_key: Vec<u8>,
    pub state: DeviceState,
    pub counter: u64,
    pub activation_nonce: Vec<u8>,
    pub created_at: i64,
    /// What its enrollment proved of its key (`pims_attest::Assurance`'s text).
    pub assurance: String,
}

impl DeviceRecord {
    /// Pending devices that never confirmed are treated as unknown after `pending_ttl`.
    pub fn live_state(&self, now: i64, pending_ttl: u64) -> Option<DeviceState> {
        match self.state {
            DeviceState::Pending if now >= self.created_at.saturating_add(pending_ttl as i64) => {
                None
            }
            s => Some(s),
        }
    }
}

impl DeviceRecord {
    /// The counter rule, one for every path that verifies a device signature: the signed
    /// counter must be above the last one seen. One that is not is a clone or a replay: the
    /// store disables the device (audited as [`COUNTER_REPLAYED`]) and answers `DeviceUnknown`.
    pub fn counter_advances(&self, presented: u64) -> bool {
        presented > self.counter
    }
}

/// Why a device whose counter did not grow was disabled (audit detail).
pub const COUNTER_REPLAYED: &str = "counter did not increase";

/// Which stored code a check is against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTarget {
    /// The account's trusted number (`NoPhoneNumber` when it has none).
    TrustedNumber,
    Number(String),
    /// The latest code of the purpose, whatever its number.
    Latest,
}

/// Limits a step needs; copied from the configuration.
#[derive(Debug, Clone)]
pub struct StepLimits {
    pub pin_attempts: u32,
    pub sms_code_max_checks: u32,
    pub max_devices: u32,
    pub pending_device_ttl: u64,
}

pub struct SmsSendRequest {
    pub account: String,
    pub purpose: SmsPurpose,
    /// `Number` for certification, `TrustedNumber` for enrollment.
    pub target: CodeTarget,
    pub now: i64,
    pub ttl: u64,
    pub max_checks: u32,
    pub per_account_per_hour: u32,
    pub per_number_per_hour: u32,
    /// The caller's network address, when known: sends from one address are limited too.
    pub client_address: Option<String>,
    pub per_address_per_hour: u32,
    /// Nonce of a new code, used only when no live code can be resent.
    pub new_nonce: Vec<u8>,
}

/// The code to (re)send: derive it from `nonce`.
pub struct SmsToSend {
    pub phone_number: String,
    pub nonce: Vec<u8>,
    pub expires_at: i64,
    pub resend: bool,
}

pub struct CodeCheck {
    pub account: String,
    pub purpose: SmsPurpose,
    pub target: CodeTarget,
    pub matcher: CodeMatcher,
    pub now: i64,
    pub max_checks: u32,
}

/// OPAQUE login started outside the transaction against `pin_record`.
pub struct LoginStart {
    pub pin_record: Vec<u8>,
    /// The server login state, sealed for its row (`crypto::seal_login_state`).
    pub state: Vec<u8>,
}

pub struct StartEnrollmentStep {
    pub account: String,
    pub session_id: String,
    pub nonce: Vec<u8>,
    /// `enrollWithPhoneNumber`: the certified number that becomes the trusted one.
    pub phone_number: Option<String>,
    pub sms_code: CodeMatcher,
    /// `None` registers a PIN (under `credential_id`), `Some` checks the existing one.
    pub login: Option<LoginStart>,
    /// Credential identifier of the PIN registered by this session, when it registers one.
    pub credential_id: Option<String>,
    pub now: i64,
    pub ttl: u64,
    pub limits: StepLimits,
}

#[derive(Debug, Clone)]
pub struct EnrollmentSession {
    pub id: String,
    pub nonce: Vec<u8>,
    /// Sealed serialized `ServerLogin`; `None` for a registration.
    pub login_state: Option<Vec<u8>>,
}

/// What the device proved at the end of an enrollment, established outside the transaction.
pub enum EnrollmentProof {
    BadSignature,
    /// Serialized `ServerRegistration` to keep as the PIN record.
    Register {
        pin_record: Vec<u8>,
    },
    Login {
        pin_ok: bool,
    },
}

pub struct NewDeviceRecord {
    pub id: String,
    pub public_key: Vec<u8>,
    pub name: String,
    pub platform: Platform,
    pub activation_nonce: Vec<u8>,
    /// What the attestation proved (`pims_attest::Assurance`'s text) and, when it was refused,
    /// the rule and why (`challenge: …`).
    pub assurance: String,
    pub assurance_detail: Option<String>,
}

pub struct FinishEnrollmentStep {
    pub account: String,
    pub enrollment_id: String,
    pub idempotency_key: String,
    pub proof: EnrollmentProof,
    pub device: NewDeviceRecord,
    /// The service's policy refuses this device's attestation (`AttestationRequired`): the
    /// step answers it once the signature and PIN are checked (a wrong PIN still counts), with
    /// the session used and the SMS code kept.
    pub attestation_refusal: Option<ApiError>,
    pub now: i64,
    pub limits: StepLimits,
}

/// First outcome of an idempotent request, replayed for retries with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredOutcome {
    Ok(EnrollmentFinished),
    Error(ApiError),
}

pub struct ActivateStep {
    pub account: String,
    pub device_id: String,
    /// Counter of a verified signature.
    pub counter: u64,
    pub now: i64,
    pub pending_device_ttl: u64,
}

pub struct ChallengeStep {
    pub account: String,
    pub challenge_id: String,
    pub device_id: String,
    pub nonce: Vec<u8>,
    pub login: Option<LoginStart>,
    /// The relying party an OTP answering this challenge is for.
    pub audience: Option<String>,
    /// Counter of the verified device signature that started the login (with `login`): it
    /// must increase like every counter.
    pub login_counter: Option<u64>,
    pub now: i64,
    pub ttl: u64,
    pub pin_attempts: u32,
    /// Unsigned open challenges a device may hold at once; one more is `RateLimited`. Signed
    /// ones (with a login) are bounded by the PIN lockout instead, so an access token alone
    /// cannot crowd the device out.
    pub max_open: u32,
}

#[derive(Debug, Clone)]
pub struct OtpChallengeRecord {
    pub id: String,
    pub device_id: String,
    pub nonce: Vec<u8>,
    /// Sealed serialized `ServerLogin`.
    pub login_state: Option<Vec<u8>>,
    pub device_public_key: Vec<u8>,
}

/// The rule on open challenges, the same in every store: a device holds at most `max_open`.
pub fn check_open_challenges(open: u32, max_open: u32, ttl: u64) -> Result<()> {
    if open >= max_open {
        return api(ApiError::RateLimited {
            retry_after_seconds: ttl,
        });
    }
    Ok(())
}

pub enum OtpProof {
    BadSignature,
    WithoutPin,
    Pin { ok: bool },
}

pub struct IssueOtpStep {
    pub account: String,
    pub challenge_id: String,
    pub counter: u64,
    pub proof: OtpProof,
    /// MAC of the OTP to issue; the OTP itself is never stored.
    pub otp_mac: Vec<u8>,
    pub now: i64,
    pub otp_ttl: u64,
    pub pin_attempts: u32,
}

/// When and how an account's PIN was set, as relying parties are told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinFacts {
    pub pin_set_at: Option<i64>,
    pub pin_set_by: Option<PinOrigin>,
    pub pin_recovered_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOtp {
    pub subject: String,
    pub device_id: String,
    pub with_pin: bool,
    pub issued_at: i64,
    pub pin_set_at: Option<i64>,
    pub pin_set_by: Option<PinOrigin>,
    pub pin_recovered_at: Option<i64>,
    /// The device's assurance (`pims_attest::Assurance`'s text).
    pub assurance: String,
}

/// A device of the account as listed to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    pub id: String,
    pub name: String,
    pub platform: Platform,
    pub state: DeviceState,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub assurance: String,
}

/// The challenge a PIN change continues with, created once the change is authorized.
pub struct PinChangeChallenge {
    pub challenge_id: String,
    pub nonce: Vec<u8>,
    /// Identifier of the new record: the registration response was computed under it.
    pub credential_id: String,
    pub ttl: u64,
}

/// What an Active device, proven by a signed challenge, asks to change.
pub enum DeviceOperation {
    /// Proves the current PIN (the challenge carried a login) and, with `next`, opens a PIN
    /// update.
    StartPinUpdate { next: Option<PinChangeChallenge> },
    /// Checks and consumes a `ResetPin` code (refused while recovery is held) and opens a reset.
    StartPinReset {
        code: CodeCheck,
        next: PinChangeChallenge,
    },
    /// Over a challenge opened by a start: the new PIN record, under that start's identifier.
    /// A reset also clears the failure count.
    FinishPinChange { pin_record: Vec<u8> },
    /// Checks and consumes a certification code for the new number and makes it the trusted
    /// one under [`AccountRecord::number_change`] (proving the PIN too when the challenge
    /// carried a login): a hold of `recovery_hold` seconds begins, with `restore_nonce`, unless
    /// one runs.
    ModifyPhoneNumber {
        code: CodeCheck,
        phone_number: String,
        recovery_hold: u64,
        restore_nonce: Vec<u8>,
    },
    /// A signed remote command (`command` on `vin`) the device asks the command service to
    /// relay: proven with the PIN by the challenge's login, or by an unused OTP with PIN this
    /// device obtained (`pin_otp`: its MAC and the command service's audience), used up here.
    /// `needs_pin` without either is `PinRequired`.
    AuthorizeCommand {
        command: String,
        vin: String,
        needs_pin: bool,
        pin_otp: Option<(Vec<u8>, String)>,
    },
}

/// What an applied operation changed that the account's owner must be told of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationOutcome {
    /// A number change.
    pub number_change: Option<NumberChanged>,
    /// A PIN change finished: how the new PIN was set.
    pub pin_set_by: Option<PinOrigin>,
    /// A command authorized: whether the PIN was proven for it.
    pub command_with_pin: Option<bool>,
}

/// A number change as [`AccountRecord::number_change`] decided it, for its write and notices.
#[derive(Clone, PartialEq, Eq)]
pub struct NumberChanged {
    /// The trusted number from now on.
    pub phone_number: String,
    /// The number trusted until this change.
    pub replaced: String,
    /// A change without the PIN: the number a restore gives back (`replaced`) and the nonce of
    /// its code, which the notice to that number carries.
    pub restorable: Option<(String, Vec<u8>)>,
    /// A change with the PIN during an open restore window: the number of before that window,
    /// told of this change too.
    pub closed_window_of: Option<String>,
    pub held_until: i64,
}

impl NumberChanged {
    pub fn trusted_number(&self) -> TrustedNumber {
        TrustedNumber {
            phone_number: self.phone_number.clone(),
            pre_hold_phone_number: self.restorable.as_ref().map(|(n, _)| n.clone()),
            recovery_held_until: Some(self.held_until),
            restore_nonce: self.restorable.as_ref().map(|(_, nonce)| nonce.clone()),
        }
    }
}

// Numbers and the restore nonce stay out of logs.
impl std::fmt::Debug for NumberChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberChanged")
            .field("restorable", &self.restorable.is_some())
            .field("held_until", &self.held_until)
            .finish_non_exhaustive()
    }
}

/// Who gives the pre-hold number back.
pub enum RestoreBy {
    /// The owner, from any phone with their login, with the code sent to the pre-hold number.
    /// `code` matches the candidate against the code derived for `(pre-hold number, nonce)`.
    Owner { code: CodeMatcher },
    /// An administrator (`admin` for the admin API, the operator for the console).
    Helpdesk { by: String },
}

pub struct RestoreStep {
    pub account: String,
    pub by: RestoreBy,
    pub now: i64,
}

/// What a restore did, for its answer and its notices.
#[derive(Clone, PartialEq, Eq)]
pub struct Restored {
    /// The trusted number again.
    pub phone_number: String,
    /// The number it replaced (set during the window).
    pub replaced: String,
    pub devices_disabled: u64,
}

impl std::fmt::Debug for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restored")
            .field("devices_disabled", &self.devices_disabled)
            .finish_non_exhaustive()
    }
}

impl DeviceOperation {
    /// The challenge kind the operation answers.
    pub fn challenge_kind(&self) -> ChallengeKind {
        match self {
            DeviceOperation::FinishPinChange { .. } => ChallengeKind::PinChange,
            _ => ChallengeKind::Device,
        }
    }

    /// The rule on PIN proofs per operation: an update proves the PIN (its challenge carried a
    /// login); a reset and a PIN-change finish never carry one; a number change may.
    pub fn check_pin_proof(&self, proven: bool) -> Result<()> {
        let ok = match self {
            DeviceOperation::StartPinUpdate { .. } => proven,
            DeviceOperation::StartPinReset { .. } | DeviceOperation::FinishPinChange { .. } => {
                !proven
            }
            DeviceOperation::ModifyPhoneNumber { .. }
            | DeviceOperation::AuthorizeCommand { .. } => true,
        };
        if !ok {
            return api(ApiError::InvalidParameter {
                name: "login".into(),
            });
        }
        Ok(())
    }
}

/// How a PIN set by a PIN-change finish came about (`reset` or `update`, as stored).
pub fn pin_change_origin(change: &str) -> Result<PinOrigin> {
    match change {
        "reset" => Ok(PinOrigin::SmsRecovery),
        "update" => Ok(PinOrigin::Update),
        other => Err(anyhow::anyhow!("unknown PIN change {other}").into()),
    }
}

/// The audit detail of a PIN attempt as it starts.
pub fn pin_attempt_detail(ordinal: u32, limit: u32) -> String {
    format!("attempt {ordinal} of {limit}")
}

/// Replays the stored first outcome of an idempotency key, only for the session it belongs to:
/// a key reused on another session is refused, never answered with the other's outcome.
pub fn replay_scoped(
    expected_scope: &str,
    scope: &str,
    outcome: StoredOutcome,
) -> Result<EnrollmentFinished> {
    if scope != expected_scope {
        return api(ApiError::InvalidParameter {
            name: "idempotencyKey".into(),
        });
    }
    match outcome {
        StoredOutcome::Ok(v) => Ok(v),
        StoredOutcome::Error(e) => api(e),
    }
}

/// Which challenges a step may use: each kind only answers its own step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// Created by `POST /v1/otp/challenges` or `/v1/devices/{id}/challenges`.
    Device,
    /// Created by an authorized PIN change start, for its finish.
    PinChange,
}

pub struct DeviceOperationStep {
    pub account: String,
    pub challenge_id: String,
    pub counter: u64,
    /// Whether the device signature verified (checked outside the transaction).
    pub signature_ok: bool,
    /// Outcome of the PIN login of the challenge, when it had one.
    pub pin_ok: Option<bool>,
    pub operation: DeviceOperation,
    pub now: i64,
    pub pin_attempts: u32,
}

/// A device as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminDeviceSummary {
    pub id: String,
    pub name: String,
    pub platform: String,
    pub state: DeviceState,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// Disabled by an operator after it was active, with nothing account-wide since (a
    /// removal, a restore): an operator may enable it again.
    pub re_enablable: bool,
    /// What its enrollment proved of its key, and why an attestation was refused.
    pub assurance: String,
    pub assurance_detail: Option<String>,
}

/// One row of the append-only audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: i64,
    pub at: i64,
    pub account: String,
    pub event: String,
    pub device_id: Option<String>,
    pub detail: Option<String>,
}

/// What the helpdesk asks of the audit trail. Pages come newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub account: Option<String>,
    pub event: Option<String>,
    /// The start of the detail, where an action's operator is named (`admin`, `console
    /// operator <subject>`).
    pub by: Option<String>,
    /// Unix seconds, from included, to excluded.
    pub from: i64,
    pub to: i64,
    pub page: AuditPageAt,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditPageAt {
    /// The newest rows, or those older than an id.
    OlderThan(i64),
    /// The rows just newer than an id.
    NewerThan(i64),
}

/// An audit row with its chain link (see [`crate::audit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedAuditRow {
    pub event: AuditEvent,
    pub prev_id: Option<i64>,
    pub mac: Option<Vec<u8>>,
}

/// What [`Store::audit_walk`] hands each row to; it breaks to end the walk early. It runs
/// inside the walk's read: on SQLite a read of the same store from it waits for the reader the
/// walk holds, forever; on PostgreSQL it takes a second pooled connection (writes go through).
pub type AuditVisit<'a> = dyn FnMut(&ChainedAuditRow) -> ControlFlow<()> + Send + 'a;

/// The SMS send limits count sends of the last hour.
pub const SMS_SEND_WINDOW_SECONDS: u64 = 3600;

/// Where the send window of `now` starts (exclusive).
pub fn send_window_start(now: i64) -> i64 {
    now - SMS_SEND_WINDOW_SECONDS as i64
}

/// The rule of every SMS send limit: `RateLimited` once the `count` sends of the window
/// reached `limit`, to retry when the `oldest` of them leaves it.
pub fn check_sends(count: i64, oldest: Option<i64>, now: i64, limit: u32) -> Result<()> {
    if count >= i64::from(limit) {
        let window = SMS_SEND_WINDOW_SECONDS as i64;
        let retry = oldest.map_or(window, |t| t + window - now).max(1);
        return api(ApiError::RateLimited {
            retry_after_seconds: retry as u64,
        });
    }
    Ok(())
}

/// The per-address limit without counting rows: sends of one address carry consecutive
/// ordinals (`address_seq`, given under the store's lock for the address), so the window holds
/// `last - first + 1` of them, where `last` is the address's newest ordinal and `first` (with
/// its time) is the ordinal of its oldest send still in the window. Two index look-ups
/// whatever the traffic; exact while the clocks of the servers writing do not run backwards.
/// Returns the ordinal of this send.
pub fn check_address_sends(
    last: Option<i64>,
    first_in_window: Option<(i64, i64)>,
    now: i64,
    limit: u32,
) -> Result<i64> {
    let last = last.unwrap_or(0);
    let count = first_in_window.map_or(0, |(first, _)| last - first + 1);
    check_sends(count, first_in_window.map(|(_, at)| at), now, limit)?;
    Ok(last + 1)
}

/// What a purge removes: only rows nothing can use any more. The audit trail, Active and
/// Disabled devices, and anything live are never purged.
#[derive(Debug, Clone)]
pub struct PurgeStep {
    pub now: i64,
    /// SMS codes, enrollment sessions, challenges and OTPs stay this long past their expiry,
    /// so a late check still reads "expired" rather than unknown.
    pub expired_grace: u64,
    /// Idempotency outcomes live this long: a finish may be retried while its session or its
    /// Pending device may still be used.
    pub idempotency_ttl: u64,
    /// Pending devices older than this never confirmed (as [`DeviceRecord::live_state`]).
    pub pending_device_ttl: u64,
    /// SMS sends older than this no longer count towards any limit.
    pub sms_send_window: u64,
}

impl PurgeStep {
    /// One statement per kind with its bound (`?1`, `$1` on PostgreSQL), in an order that
    /// respects the foreign keys; the same text on both stores. Counts come back in this order
    /// ([`PurgeCounts::from_statement_counts`]).
    pub fn statements(&self) -> [(&'static str, i64); 8] {
        let before = |secs: u64| self.now.saturating_sub(secs as i64);
        let expired = before(self.expired_grace);
        [
            ("DELETE FROM otps WHERE expires_at <= ?1", expired),
            ("DELETE FROM otp_challenges WHERE expires_at <= ?1", expired),
            (
                "DELETE FROM enrollment_sessions WHERE expires_at <= ?1",
                expired,
            ),
            // A code stays while a session still refers to it.
            (
                "DELETE FROM sms_codes WHERE expires_at <= ?1 AND NOT EXISTS
                   (SELECT 1 FROM enrollment_sessions s WHERE s.sms_code_id = sms_codes.id)",
                expired,
            ),
            (
                "DELETE FROM idempotency WHERE created_at <= ?1",
                before(self.idempotency_ttl),
            ),
            (
                "DELETE FROM devices WHERE state = 'pending' AND created_at <= ?1
                   AND NOT EXISTS (SELECT 1 FROM otp_challenges c WHERE c.device_id = devices.id)
                   AND NOT EXISTS (SELECT 1 FROM otps o WHERE o.device_id = devices.id)",
                before(self.pending_device_ttl),
            ),
            (
                "DELETE FROM sms_sends WHERE sent_at <= ?1",
                before(self.sms_send_window),
            ),
            // A number a hold kept is nobody's business once the hold has ended.
            (
                "UPDATE accounts SET pre_hold_phone_number = NULL, restore_nonce = NULL
                 WHERE recovery_held_until <= ?1
                   AND (pre_hold_phone_number IS NOT NULL OR restore_nonce IS NOT NULL)",
                self.now,
            ),
        ]
    }
}

/// Rows deleted by one purge, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub sms_codes: u64,
    pub sms_sends: u64,
    pub enrollment_sessions: u64,
    pub idempotency: u64,
    pub otp_challenges: u64,
    pub otps: u64,
    pub pending_devices: u64,
    /// Accounts whose ended hold still kept the number of before it.
    pub ended_holds: u64,
}

impl PurgeCounts {
    /// Counts in the order of [`PurgeStep::statements`].
    pub fn from_statement_counts(n: [u64; 8]) -> Self {
        PurgeCounts {
            otps: n[0],
            otp_challenges: n[1],
            enrollment_sessions: n[2],
            sms_codes: n[3],
            idempotency: n[4],
            pending_devices: n[5],
            sms_sends: n[6],
            ended_holds: n[7],
        }
    }

    pub fn total(&self) -> u64 {
        self.sms_codes
            + self.sms_sends
            + self.enrollment_sessions
            + self.idempotency
            + self.otp_challenges
            + self.otps
            + self.pending_devices
            + self.ended_holds
    }
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// `None` when the account was never seen (accounts are created lazily by writes).
    async fn account(&self, account: &str) -> Result<Option<AccountRecord>>;

    /// When and how the account's PIN was set (`None`: account never seen).
    async fn pin_facts(&self, account: &str) -> Result<Option<PinFacts>>;

    /// The accounts whose trusted number is `phone_number` (E.164), in subject order (the
    /// helpdesk's search).
    async fn accounts_with_phone_number(&self, phone_number: &str) -> Result<Vec<String>>;

    /// At most `limit` accounts whose subject starts with `prefix`, in subject order.
    async fn accounts_with_subject_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<String>>;

    /// The account's device with this id, in any state; another account's device is `None`.
    async fn device(&self, account: &str, device_id: &str) -> Result<Option<DeviceRecord>>;

    /// Applies the send rate limits (counting this send) and returns the live code to resend
    /// or a new one. `NoPhoneNumber`, `RateLimited`.
    async fn prepare_sms_code(&self, req: SmsSendRequest) -> Result<SmsToSend>;

    /// Counts a check of the code without using it up; returns whether the account has a PIN.
    async fn check_sms_code(&self, check: CodeCheck) -> Result<bool>;

    /// Checks and consumes a certification code for `check.target` and makes that number the
    /// trusted one. `PhoneNumberAlreadyRegistered`, `SmsCodeInvalid`.
    async fn add_phone_number(&self, check: CodeCheck, phone_number: String) -> Result<()>;

    /// Checks the SMS code (counted, not consumed), the PIN state, the device limit and (for a
    /// login) the lockout, counting the PIN attempt, then records the session.
    async fn start_enrollment(&self, step: StartEnrollmentStep) -> Result<()>;

    /// An open (unfinished, unexpired) enrollment session of the account.
    async fn enrollment_session(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<EnrollmentSession>>;

    /// Stored outcome of an earlier finish with this key, with the session it belongs to.
    async fn idempotent_outcome(
        &self,
        account: &str,
        key: &str,
    ) -> Result<Option<(String, StoredOutcome)>>;

    /// Finishes a session once: applies the PIN outcome, consumes the SMS code, sets the phone
    /// number, creates the Pending device, and stores the outcome under the idempotency key.
    async fn finish_enrollment(&self, step: FinishEnrollmentStep) -> Result<EnrollmentFinished>;

    /// Pending/Active → Active if the counter increased; a counter that did not increase
    /// disables the device. `DeviceUnknown`. `true` when this call activated it.
    async fn activate_device(&self, step: ActivateStep) -> Result<bool>;

    /// Records an OTP challenge for an Active device; with a login, applies the lockout.
    async fn create_otp_challenge(&self, step: ChallengeStep) -> Result<()>;

    /// An open (unused, unexpired) challenge of the account.
    async fn otp_challenge(
        &self,
        account: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<OtpChallengeRecord>>;

    /// Uses the challenge up, checks the counter, applies the PIN outcome and stores the OTP MAC.
    async fn issue_otp(&self, step: IssueOtpStep) -> Result<()>;

    /// Marks a valid OTP used, exactly once, by the relying party it was issued for. `None`
    /// when unknown, expired, already used, for another relying party, or its device is no
    /// longer Active.
    async fn use_otp(
        &self,
        otp_mac: &[u8],
        now: i64,
        relying_party: &str,
    ) -> Result<Option<VerifiedOtp>>;

    /// The account's Pending (not expired) and Active devices, oldest first.
    async fn list_devices(
        &self,
        account: &str,
        now: i64,
        pending_ttl: u64,
    ) -> Result<Vec<DeviceSummary>>;

    /// Disables one Pending or Active device of the account. `DeviceUnknown` when the account
    /// has no such live device (another account's device is unknown too).
    async fn revoke_device(&self, account: &str, device_id: &str, now: i64) -> Result<()>;

    /// Disables every device of the account, deletes its PIN record and failure count, and
    /// closes its open enrollment sessions and challenges. The trusted number stays. `true`
    /// when there was something to remove (a device or a PIN).
    async fn remove_enrollments(&self, account: &str, now: i64) -> Result<bool>;

    /// Uses the challenge up, checks signature, device and counter (a replay disables the
    /// device), applies the PIN outcome, then the operation — all or, for `Internal`, nothing.
    async fn device_operation(&self, step: DeviceOperationStep) -> Result<OperationOutcome>;

    /// Every device of the account in any state, oldest first (admin API).
    async fn admin_list_devices(&self, account: &str) -> Result<Vec<AdminDeviceSummary>>;

    /// Disables a device for an administrator, audited as done `by` them (`admin` for the
    /// admin API, the operator for the console) with their `reason`. `false`, and nothing
    /// audited, when it was disabled already. `DeviceUnknown`.
    async fn admin_disable_device(
        &self,
        account: &str,
        device_id: &str,
        by: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool>;

    /// Enables again a device an operator disabled ([`AdminDeviceSummary::re_enablable`]),
    /// audited. `false`, and nothing audited, when it is not disabled. `DeviceUnknown`;
    /// `DeviceNotReEnablable` for a device disabled otherwise (the clone rule, its account, a
    /// restore or a removal).
    async fn admin_enable_device(
        &self,
        account: &str,
        device_id: &str,
        by: &str,
        now: i64,
    ) -> Result<bool>;

    /// The answer to a number change its owner did not make: under
    /// [`AccountRecord::restoration`], the number of before the restore window is the trusted
    /// one again, the hold ends, and every device is disabled (the one that moved the number
    /// among them) with its open challenges. The owner's code must match (`RestoreCodeInvalid`,
    /// not counted: it is too long to guess). Audited with who did it. `NothingToRestore`.
    async fn restore_phone_number(&self, step: RestoreStep) -> Result<Restored>;

    /// Clears the PIN failure count (lifting a PIN block), audited as done `by` the
    /// administrator. `false`, and nothing audited, when there was no failure to clear.
    /// `AccountUnknown` for an account never seen (none is created).
    async fn unblock_account(&self, account: &str, by: &str, now: i64) -> Result<bool>;

    /// Audit events after `after_id`, oldest first, of one account or of all.
    async fn audit_trail(
        &self,
        account: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>>;

    /// A page of the audit trail for the helpdesk, newest first.
    async fn audit_search(&self, query: AuditQuery) -> Result<Vec<AuditEvent>>;

    /// Audit rows with their chain links after `after_id`, oldest first (the store suite reads
    /// a trail with it). Each call reads the database as it is then: pages of several calls may
    /// miss a row committed between them with a lower id than the last one seen, which
    /// [`Store::audit_walk`] does not.
    async fn audit_chain(&self, after_id: i64, limit: u32) -> Result<Vec<ChainedAuditRow>>;

    /// Hands every audit row with its chain links to `visit`, oldest first, until it breaks
    /// (`pims audit verify`). The rows are read `page` at a time, all in one snapshot of the
    /// database: on PostgreSQL a step takes its audit id when it locks its account, so rows of
    /// different accounts can commit out of id order, and pages read as separate queries could
    /// skip a row committed after a later one was read, then meet its account's next row
    /// without it. One snapshot holds no row of an account without the earlier ones, as an
    /// account's rows commit in id order under its lock.
    async fn audit_walk(&self, page: u32, visit: &mut AuditVisit<'_>) -> Result<()>;

    /// Deletes what [`PurgeStep`] describes, in one transaction.
    async fn purge(&self, step: PurgeStep) -> Result<PurgeCounts>;

    /// Whether the database answers (readiness).
    async fn ping(&self) -> Result<()>;

    /// Closes the database; later calls fail.
    async fn close(&self);
}

/// The PIN origin a registration gets: the account's first PIN, or a PIN set again by SMS
/// after an earlier one was removed.
pub fn registered_pin_origin(had_pin_before: bool) -> PinOrigin {
    if had_pin_before {
        PinOrigin::SmsRecovery
    } else {
        PinOrigin::Enrollment
    }
}

/// The lockout rule: an account whose counted PIN attempts reached the limit is blocked (no
/// new attempt starts). Every step reads the count under the account's lock before it counts
/// one more (`steps`), so the check and the count cannot interleave with another step's.
pub fn pin_blocked(failures: u32, limit: u32) -> bool {
    failures >= limit
}

/// The PIN outcome of a failed login whose start was the `ordinal`-th counted attempt.
pub fn pin_failure(ordinal: u32, limit: u32) -> ApiError {
    if ordinal < limit {
        ApiError::WrongPin {
            attempts_remaining: limit - ordinal,
        }
    } else {
        ApiError::PinBlocked
    }
}
