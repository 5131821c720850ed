//! Every store step, written once over [`Rows`]: the rules of the security design (the counter,
//! the lockout, the SMS code checks, the send limits, what a PIN change closes) live here and
//! only here; each database supplies the rows. [`store_over_steps!`] makes the [`Store`] of a
//! database from these steps.
//!
//! Row operations awaited together (`try_join!`) run in the order they are written: on
//! PostgreSQL they share a round trip (a step is one pipeline, see `pipeline.rs`) and the server
//! runs them one after another, so a lock may be joined with the reads it guards; SQLite's are
//! ready at once. Decisions are taken before joined writes, which then only fail internally, and
//! an internal failure rolls the whole step back: a joined write never commits half a decision.
//! A PostgreSQL write whose result the step does not read may fail only at the commit — the
//! step then fails as a whole. (When `lock_account` finds no row and creates it, a read joined
//! with it ran before the lock; it found nothing, as nothing of an account exists before its
//! row.)
//!
//! [`Store`]: super::Store

use anyhow::anyhow;
use futures::try_join;
use pims_proto::{ApiError, DeviceState, EnrollmentFinished, PinOrigin};

use super::rows::{
    NewChallenge, NewOtp, Rows, SendsOf, UsedChallenge, CODE_CONSUMED, CODE_EXHAUSTED, CODE_LIVE,
    DEVICE_CHANGED,
};
use super::{
    check_address_sends, check_open_challenges, check_sends, pin_attempt_detail, pin_blocked,
    pin_change_origin, pin_failure, registered_pin_origin, replay_scoped, send_window_start,
    AccountRecord, ActivateStep, AuditVisit, ChainedAuditRow, ChallengeKind, ChallengeStep,
    CodeCheck, CodeTarget, DeviceOperation, DeviceOperationStep, DeviceRecord, EnrollmentProof,
    FinishEnrollmentStep, IssueOtpStep, OperationOutcome, OtpProof, PinChangeChallenge,
    PurgeCounts, PurgeStep, RestoreBy, RestoreStep, Restored, SmsSendRequest, SmsToSend,
    StartEnrollmentStep, StoredOutcome, VerifiedOtp, COUNTER_REPLAYED,
};
use crate::error::{api, Error, Result};

// ---- rules ---------------------------------------------------------------------------------

/// Walks the audit trail for [`Store::audit_walk`](super::Store::audit_walk): pages of `page`
/// rows, each read by `read_page(after_id, page)` in the database's one snapshot, handed to
/// `visit` in id order until it breaks or a page comes back short.
pub(super) async fn audit_walk<F, Fut>(
    page: u32,
    mut read_page: F,
    visit: &mut AuditVisit<'_>,
) -> Result<()>
where
    F: FnMut(i64, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<ChainedAuditRow>>>,
{
    let page = page.max(1);
    let mut after_id = 0;
    loop {
        let rows = read_page(after_id, page).await?;
        for row in &rows {
            if visit(row).is_break() {
                return Ok(());
            }
            after_id = row.event.id;
        }
        if rows.len() < page as usize {
            return Ok(());
        }
    }
}

fn counter_to_sql(counter: u64) -> Result<i64> {
    i64::try_from(counter).map_err(|_| {
        Error::Api(ApiError::InvalidParameter {
            name: "counter".into(),
        })
    })
}

/// Disables one device, audited with why.
async fn disable_device<R: Rows>(
    r: &R,
    account: &str,
    device_id: &str,
    now: i64,
    why: &str,
    by_operator: bool,
) -> Result<()> {
    r.disable_device(account, device_id, by_operator).await?;
    r.audit(now, account, "device_disabled", Some(device_id), Some(why))
        .await
}

/// The counter rule ([`DeviceRecord::counter_advances`]) of every step that verifies a device
/// signature: a counter that does not grow disables the device and the step answers
/// `DeviceUnknown`. Returns the counter to store.
async fn verified_counter<R: Rows>(
    r: &R,
    account: &str,
    device: &DeviceRecord,
    presented: u64,
    now: i64,
) -> Result<i64> {
    if !device.counter_advances(presented) {
        disable_device(r, account, &device.id, now, COUNTER_REPLAYED, false).await?;
        return api(ApiError::DeviceUnknown);
    }
    counter_to_sql(presented)
}

/// [`verified_counter`], then stores the counter (with the time of use when given).
async fn advance_counter<R: Rows>(
    r: &R,
    account: &str,
    device: &DeviceRecord,
    presented: u64,
    used_at: Option<i64>,
    now: i64,
) -> Result<()> {
    let counter = verified_counter(r, account, device, presented, now).await?;
    r.set_device_counter(&device.id, counter, used_at).await
}

/// [`DEVICE_CHANGED`] when a device write's guard refused it.
fn device_unchanged(stored: bool) -> Result<()> {
    match stored {
        true => Ok(()),
        false => Err(anyhow!(DEVICE_CHANGED).into()),
    }
}

/// The Active device a signed step names, else `DeviceUnknown`.
async fn active_device<R: Rows>(r: &R, account: &str, device_id: &str) -> Result<DeviceRecord> {
    active(r.device(account, device_id).await?)
}

fn active(device: Option<DeviceRecord>) -> Result<DeviceRecord> {
    match device {
        Some(d) if d.state == DeviceState::Active => Ok(d),
        _ => api(ApiError::DeviceUnknown),
    }
}

/// The lockout rule on a login's start: a blocked account (`record` as the step locked it)
/// starts none.
fn check_not_blocked(record: &AccountRecord, limit: u32) -> Result<()> {
    if pin_blocked(record.pin_failures, limit) {
        return api(ApiError::AccountBlocked);
    }
    Ok(())
}

/// Counts (and audits) a login's attempt from its start, so one never finished still counts;
/// after [`check_not_blocked`]. Returns the attempt's ordinal.
async fn count_pin_attempt<R: Rows>(r: &R, account: &str, limit: u32, now: i64) -> Result<u32> {
    let ordinal = r.add_pin_attempt(account).await?;
    let detail = pin_attempt_detail(ordinal, limit);
    r.audit(now, account, "pin_attempt", None, Some(&detail))
        .await?;
    Ok(ordinal)
}

/// Records a failed PIN proof whose start was the `ordinal`-th counted attempt; the error the
/// step answers.
async fn pin_failed<R: Rows>(
    r: &R,
    account: &str,
    ordinal: Option<u32>,
    limit: u32,
    now: i64,
) -> Result<Error> {
    let ordinal = ordinal.ok_or_else(|| anyhow!("a PIN proof without its attempt"))?;
    let outcome = pin_failure(ordinal, limit);
    let detail = format!("attempt {ordinal}");
    r.audit(now, account, "pin_failure", None, Some(&detail))
        .await?;
    if outcome == ApiError::PinBlocked {
        r.audit(now, account, "pin_blocked", None, None).await?;
    }
    Ok(outcome.into())
}

/// Makes `record` the account's PIN (clearing the failure count). Logins started against the
/// previous PIN and PIN changes authorized before this one must not finish over the new PIN.
async fn set_pin<R: Rows>(
    r: &R,
    account: &str,
    record: &[u8],
    credential_id: &str,
    origin: PinOrigin,
    now: i64,
) -> Result<()> {
    r.store_pin(account, record, credential_id, origin, now)
        .await?;
    r.close_challenges(account, now, true).await?;
    r.close_sessions(account, now, true).await
}

/// Disables every device of the account and closes its open enrollment sessions and
/// challenges (started against devices or a PIN that no longer count); the number disabled.
async fn disable_every_device<R: Rows>(r: &R, account: &str, now: i64) -> Result<u64> {
    let disabled = r.disable_devices(account).await?;
    // After an account-wide step no operator may bring a device back.
    r.forget_operator_disables(account).await?;
    r.close_sessions(account, now, false).await?;
    r.close_challenges(account, now, false).await?;
    Ok(disabled)
}

/// The number a code check is for, from the account as the step locked it.
fn code_number<'a>(record: &'a AccountRecord, target: &'a CodeTarget) -> Result<Option<&'a str>> {
    match target {
        CodeTarget::TrustedNumber => match &record.phone_number {
            Some(n) => Ok(Some(n)),
            None => api(ApiError::NoPhoneNumber),
        },
        CodeTarget::Number(n) => Ok(Some(n)),
        CodeTarget::Latest => Ok(None),
    }
}

fn invalid_code(expired: bool, attempts_remaining: u32) -> Error {
    Error::Api(ApiError::SmsCodeInvalid {
        expired,
        attempts_remaining,
    })
}

/// Counts one check of the latest code for the target; returns the code's id if it matched.
/// The last allowed check that fails exhausts the code. `record` is the account as locked.
async fn check_code<R: Rows>(r: &R, record: &AccountRecord, check: &CodeCheck) -> Result<i64> {
    let number = code_number(record, &check.target)?;
    let Some(code) = r.latest_code(&check.account, check.purpose, number).await? else {
        return Err(invalid_code(false, 0));
    };
    if code.state != CODE_LIVE {
        return Err(invalid_code(false, 0));
    }
    if check.now >= code.expires_at {
        return Err(invalid_code(true, 0));
    }
    if code.checks >= check.max_checks {
        return Err(invalid_code(false, 0));
    }
    let checks = code.checks + 1;
    r.set_code_checks(code.id, checks).await?;
    if (check.matcher)(&code.phone_number, &code.nonce) {
        return Ok(code.id);
    }
    if checks >= check.max_checks {
        r.set_code_state(code.id, CODE_EXHAUSTED).await?;
    }
    Err(invalid_code(false, check.max_checks - checks))
}

/// Uses up a code that an earlier check accepted, if it is still valid.
async fn consume_code<R: Rows>(r: &R, code_id: i64, now: i64) -> Result<()> {
    let code = r.code(code_id).await?;
    if code.state != CODE_LIVE {
        return Err(invalid_code(false, 0));
    }
    if now >= code.expires_at {
        return Err(invalid_code(true, 0));
    }
    r.set_code_state(code_id, CODE_CONSUMED).await
}

/// Checks and consumes a code in one go (a step that acts on it at once).
async fn use_code<R: Rows>(r: &R, record: &AccountRecord, check: &CodeCheck) -> Result<()> {
    let code_id = check_code(r, record, check).await?;
    consume_code(r, code_id, check.now).await
}

/// The live-device limit of an enrollment.
async fn check_device_limit<R: Rows>(
    r: &R,
    account: &str,
    now: i64,
    max_devices: u32,
    pending_ttl: u64,
) -> Result<()> {
    let live = r
        .live_device_count(account, now.saturating_sub(pending_ttl as i64))
        .await?;
    if live >= max_devices {
        return api(ApiError::DeviceLimitReached);
    }
    Ok(())
}

/// Records the challenge a PIN change finishes over, with what its start authorized.
async fn open_pin_change<R: Rows>(
    r: &R,
    account: &str,
    device_id: &str,
    change: &str,
    next: &PinChangeChallenge,
    now: i64,
) -> Result<()> {
    r.insert_challenge(&NewChallenge {
        id: &next.challenge_id,
        account,
        device_id,
        nonce: &next.nonce,
        login_state: None,
        pin_ordinal: None,
        pin_change: Some(change),
        pin_credential_id: Some(&next.credential_id),
        audience: None,
        created_at: now,
        expires_at: now + next.ttl as i64,
    })
    .await
}

// ---- steps -----------------------------------------------------------------------------------

pub async fn prepare_sms_code<R: Rows>(r: &R, req: &SmsSendRequest) -> Result<SmsToSend> {
    let now = req.now;
    let record = r.lock_account(&req.account, now).await?;
    let number = code_number(&record, &req.target)?
        .ok_or_else(|| anyhow!("an SMS needs a number"))?
        .to_string();
    // Sends to one number are counted across accounts, sends from one address across numbers:
    // both are serialised, always in this order.
    r.lock_number(&number).await?;
    let since = send_window_start(now);
    let (of_account, of_number) = try_join!(
        r.sends(SendsOf::Account(&req.account), since),
        r.sends(SendsOf::Number(&number), since)
    )?;
    check_sends(of_account.0, of_account.1, now, req.per_account_per_hour)?;
    check_sends(of_number.0, of_number.1, now, req.per_number_per_hour)?;
    let address = match &req.client_address {
        Some(address) => {
            r.lock_address(address).await?;
            let sends = r.address_sends(address, since).await?;
            let seq = check_address_sends(
                sends.last,
                sends.first_in_window,
                now,
                req.per_address_per_hour,
            )?;
            Some((address.as_str(), seq))
        }
        None => None,
    };
    r.record_send(&req.account, &number, now, address).await?;
    // A live code is resent as is: same code, same expiry.
    if let Some((nonce, expires_at)) = r
        .resendable_code(&req.account, req.purpose, &number, now, req.max_checks)
        .await?
    {
        return Ok(SmsToSend {
            phone_number: number,
            nonce,
            expires_at,
            resend: true,
        });
    }
    let expires_at = now + req.ttl as i64;
    r.insert_code(
        &req.account,
        req.purpose,
        &number,
        &req.new_nonce,
        now,
        expires_at,
    )
    .await?;
    Ok(SmsToSend {
        phone_number: number,
        nonce: req.new_nonce.clone(),
        expires_at,
        resend: false,
    })
}

pub async fn check_sms_code<R: Rows>(r: &R, check: &CodeCheck) -> Result<bool> {
    let record = r.lock_account(&check.account, check.now).await?;
    check_code(r, &record, check).await?;
    Ok(record.pin_record.is_some())
}

pub async fn add_phone_number<R: Rows>(r: &R, check: &CodeCheck, phone_number: &str) -> Result<()> {
    let record = r.lock_account(&check.account, check.now).await?;
    if record.phone_number.is_some() {
        return api(ApiError::PhoneNumberAlreadyRegistered);
    }
    use_code(r, &record, check).await?;
    r.set_phone_number(&check.account, phone_number).await?;
    r.audit(check.now, &check.account, "phone_number_added", None, None)
        .await
}

pub async fn start_enrollment<R: Rows>(r: &R, step: &StartEnrollmentStep) -> Result<()> {
    let account = step.account.as_str();
    let now = step.now;
    let record = r.lock_account(account, now).await?;
    let (purpose, target) = record.enrollment_code(step)?;
    let limits = &step.limits;
    check_device_limit(
        r,
        account,
        now,
        limits.max_devices,
        limits.pending_device_ttl,
    )
    .await?;
    // A blocked account is refused before its code is counted.
    if step.login.is_some() {
        check_not_blocked(&record, limits.pin_attempts)?;
    }
    let code_id = check_code(
        r,
        &record,
        &CodeCheck {
            account: step.account.clone(),
            purpose,
            target,
            matcher: step.sms_code.clone(),
            now,
            max_checks: limits.sms_code_max_checks,
        },
    )
    .await?;
    let ordinal = match &step.login {
        Some(_) => Some(count_pin_attempt(r, account, limits.pin_attempts, now).await?),
        None => None,
    };
    r.insert_session(step, ordinal, code_id).await
}

/// The first outcome of the key is replayed; a new finish stores its outcome under the key.
pub async fn finish_enrollment<R: Rows>(
    r: &R,
    step: &FinishEnrollmentStep,
) -> Result<EnrollmentFinished> {
    let record = r.lock_account(&step.account, step.now).await?;
    if let Some((scope, outcome)) =
        idempotent_outcome(r, &step.account, &step.idempotency_key).await?
    {
        return replay_scoped(&step.enrollment_id, &scope, outcome);
    }
    let result = finish_session(r, &record, step).await;
    let outcome = match &result {
        Ok(v) => StoredOutcome::Ok(v.clone()),
        Err(Error::Api(e)) => StoredOutcome::Error(e.clone()),
        Err(Error::Internal(_)) => return result,
    };
    let json = serde_json::to_string(&outcome).map_err(anyhow::Error::from)?;
    r.store_outcome(
        &step.account,
        &step.idempotency_key,
        &step.enrollment_id,
        &json,
        step.now,
    )
    .await?;
    result
}

pub async fn idempotent_outcome<R: Rows>(
    r: &R,
    account: &str,
    key: &str,
) -> Result<Option<(String, StoredOutcome)>> {
    match r.outcome(account, key).await? {
        None => Ok(None),
        Some((scope, json)) => {
            let outcome = serde_json::from_str(&json).map_err(anyhow::Error::from)?;
            Ok(Some((scope, outcome)))
        }
    }
}

/// `record` is the account as the step locked it.
async fn finish_session<R: Rows>(
    r: &R,
    record: &AccountRecord,
    step: &FinishEnrollmentStep,
) -> Result<EnrollmentFinished> {
    let account = step.account.as_str();
    let now = step.now;
    let limits = &step.limits;
    let Some(session) = r.take_session(account, &step.enrollment_id, now).await? else {
        return api(ApiError::SessionExpired);
    };
    match &step.proof {
        EnrollmentProof::BadSignature => return api(ApiError::BadSignature),
        // A PIN proof counts only over the attempt its session counted.
        EnrollmentProof::Login { .. } if session.pin_ordinal.is_none() => {
            return Err(anyhow!("a PIN proof over a session without a login").into())
        }
        EnrollmentProof::Login { pin_ok: false } => {
            let failed = pin_failed(r, account, session.pin_ordinal, limits.pin_attempts, now);
            return Err(failed.await?);
        }
        // A proven PIN resets the count even if a later check fails.
        EnrollmentProof::Login { pin_ok: true } => r.reset_pin_failures(account).await?,
        EnrollmentProof::Register { .. } => {}
    }

    if let Some(refusal) = &step.attestation_refusal {
        return api(refusal.clone());
    }
    if session.phone_number.is_some() && record.phone_number.is_some() {
        return api(ApiError::PhoneNumberAlreadyRegistered);
    }
    if let EnrollmentProof::Register { .. } = step.proof {
        if record.pin_record.is_some() {
            return api(ApiError::PinStateChanged);
        }
        record.check_recovery_allowed(now)?;
    }
    check_device_limit(
        r,
        account,
        now,
        limits.max_devices,
        limits.pending_device_ttl,
    )
    .await?;
    consume_code(r, session.sms_code_id, now).await?;

    if let EnrollmentProof::Register { pin_record } = &step.proof {
        let credential_id = session
            .pin_credential_id
            .ok_or_else(|| anyhow!("registration session without identifier"))?;
        let origin = registered_pin_origin(record.pin_ever_set);
        set_pin(r, account, pin_record, &credential_id, origin, now).await?;
        r.audit(now, account, "pin_registered", None, Some(origin.as_str()))
            .await?;
    }
    if let Some(number) = &session.phone_number {
        r.set_phone_number(account, number).await?;
        r.audit(now, account, "phone_number_added", None, None)
            .await?;
    }
    let d = &step.device;
    r.insert_device(account, d, now).await?;
    r.audit(
        now,
        account,
        "device_enrolled",
        Some(&d.id),
        Some(d.platform.as_str()),
    )
    .await?;
    Ok(EnrollmentFinished {
        device_id: d.id.clone(),
        activation_nonce: d.activation_nonce.clone().into(),
    })
}

pub async fn activate_device<R: Rows>(r: &R, step: &ActivateStep) -> Result<bool> {
    let (account, now) = (step.account.as_str(), step.now);
    r.lock_existing_account(account).await?;
    let Some(device) = r.device(account, &step.device_id).await? else {
        return api(ApiError::DeviceUnknown);
    };
    match device.live_state(now, step.pending_device_ttl) {
        Some(DeviceState::Pending | DeviceState::Active) => {}
        Some(DeviceState::Disabled) | None => return api(ApiError::DeviceUnknown),
    }
    let counter = verified_counter(r, account, &device, step.counter, now).await?;
    device_unchanged(r.activate_device(account, &device.id, counter, now).await?)?;
    let activated = device.state == DeviceState::Pending;
    if activated {
        r.audit(now, account, "device_activated", Some(&device.id), None)
            .await?;
    }
    Ok(activated)
}

pub async fn create_otp_challenge<R: Rows>(r: &R, step: &ChallengeStep) -> Result<()> {
    let (account, now) = (step.account.as_str(), step.now);
    // Without a login the account is only locked, never created: a challenge for a device
    // that does not exist leaves nothing behind.
    let (record, device) = match step.login {
        Some(_) => {
            let (record, device) = try_join!(
                r.lock_account(account, now),
                active_device(r, account, &step.device_id)
            )?;
            (Some(record), device)
        }
        None => {
            let ((), device) = try_join!(
                r.lock_existing_account(account),
                active_device(r, account, &step.device_id)
            )?;
            (None, device)
        }
    };
    let counter = match step.login_counter {
        Some(counter) => Some(verified_counter(r, account, &device, counter, now).await?),
        None => {
            let open = r.open_unsigned_challenges(&device.id, now).await?;
            check_open_challenges(open, step.max_open, step.ttl)?;
            None
        }
    };
    let store_counter = async {
        match counter {
            Some(counter) => r.set_device_counter(&device.id, counter, None).await,
            None => Ok(()),
        }
    };
    // The login's checks come after the counter's (a replay disables the device whatever
    // it asks) and are decided before any write, which then only fail internally.
    let login = match (&step.login, &record) {
        (Some(login), Some(record)) => match &record.pin_record {
            None => api(ApiError::NoPin),
            Some(current) if *current != login.pin_record => api(ApiError::PinStateChanged),
            Some(_) => check_not_blocked(record, step.pin_attempts).map(|()| true),
        },
        _ => Ok(false),
    };
    let with_login = match login {
        Ok(with_login) => with_login,
        Err(refused) => {
            store_counter.await?;
            return Err(refused);
        }
    };
    let attempt = async {
        match with_login {
            true => Ok(Some(
                count_pin_attempt(r, account, step.pin_attempts, now).await?,
            )),
            false => Ok(None),
        }
    };
    let (_, ordinal) = try_join!(store_counter, attempt)?;
    r.insert_challenge(&NewChallenge {
        id: &step.challenge_id,
        account,
        device_id: &step.device_id,
        nonce: &step.nonce,
        login_state: step.login.as_ref().map(|l| l.state.as_slice()),
        pin_ordinal: ordinal,
        pin_change: None,
        pin_credential_id: None,
        audience: step.audience.as_deref(),
        created_at: now,
        expires_at: now + step.ttl as i64,
    })
    .await
}

pub async fn issue_otp<R: Rows>(r: &R, step: &IssueOtpStep) -> Result<()> {
    let (account, now) = (step.account.as_str(), step.now);
    let ((), challenge) = try_join!(
        r.lock_existing_account(account),
        r.take_challenge(account, &step.challenge_id, now, ChallengeKind::Device)
    )?;
    let Some(UsedChallenge {
        device,
        ordinal,
        audience,
        ..
    }) = challenge
    else {
        return api(ApiError::SessionExpired);
    };
    let with_pin = match step.proof {
        OtpProof::BadSignature => return api(ApiError::BadSignature),
        OtpProof::WithoutPin => false,
        OtpProof::Pin { .. } if ordinal.is_none() => {
            return Err(anyhow!("a PIN proof over a challenge without a login").into())
        }
        OtpProof::Pin { .. } => true,
    };
    let device = active(Some(device))?;
    let device_id = device.id.as_str();
    let counter = verified_counter(r, account, &device, step.counter, now).await?;
    let store_counter = r.set_device_counter(device_id, counter, Some(now));
    if let OtpProof::Pin { ok: false } = step.proof {
        let failed = pin_failed(r, account, ordinal, step.pin_attempts, now);
        let (_, failed) = try_join!(store_counter, failed)?;
        return Err(failed);
    }
    let reset_failures = async {
        match with_pin {
            true => r.reset_pin_failures(account).await,
            false => Ok(()),
        }
    };
    let otp = NewOtp {
        mac: &step.otp_mac,
        account,
        device_id,
        with_pin,
        issued_at: now,
        expires_at: now + step.otp_ttl as i64,
        audience: audience.as_deref(),
    };
    let detail = if with_pin { "with_pin" } else { "without_pin" };
    try_join!(
        store_counter,
        reset_failures,
        r.insert_otp(&otp),
        r.audit(now, account, "otp_issued", Some(device_id), Some(detail))
    )?;
    Ok(())
}

pub async fn use_otp<R: Rows>(
    r: &R,
    mac: &[u8],
    now: i64,
    relying_party: &str,
) -> Result<Option<VerifiedOtp>> {
    // Under the account's lock, like every step that changes a device: a revocation
    // committing meanwhile (on another replica) is waited for and then seen, and the lock
    // order (account, then its rows) is every step's.
    let ((), used) = try_join!(
        r.lock_account_of_otp(mac),
        r.use_otp(mac, now, relying_party)
    )?;
    if let Some(v) = &used {
        r.audit(
            now,
            &v.subject,
            "otp_used",
            Some(&v.device_id),
            Some(relying_party),
        )
        .await?;
    }
    Ok(used)
}

pub async fn revoke_device<R: Rows>(r: &R, account: &str, device_id: &str, now: i64) -> Result<()> {
    r.lock_existing_account(account).await?;
    match r.device(account, device_id).await? {
        Some(d) if d.state != DeviceState::Disabled => {}
        _ => return api(ApiError::DeviceUnknown),
    }
    disable_device(r, account, device_id, now, "revoked by the account", false).await
}

pub async fn remove_enrollments<R: Rows>(r: &R, account: &str, now: i64) -> Result<bool> {
    let had_pin = r.lock_account(account, now).await?.pin_record.is_some();
    let disabled = disable_every_device(r, account, now).await?;
    r.clear_pin(account).await?;
    let detail = format!("{disabled} devices");
    r.audit(now, account, "enrollments_removed", None, Some(&detail))
        .await?;
    Ok(had_pin || disabled > 0)
}

pub async fn device_operation<R: Rows>(
    r: &R,
    step: &DeviceOperationStep,
) -> Result<OperationOutcome> {
    let (account, now) = (step.account.as_str(), step.now);
    let kind = step.operation.challenge_kind();
    let (record, challenge) = try_join!(
        r.lock_account(account, now),
        r.take_challenge(account, &step.challenge_id, now, kind)
    )?;
    let Some(challenge) = challenge else {
        return api(ApiError::SessionExpired);
    };
    if !step.signature_ok {
        return api(ApiError::BadSignature);
    }
    let device = active(Some(challenge.device.clone()))?;
    let device_id = device.id.as_str();
    advance_counter(r, account, &device, step.counter, Some(now), now).await?;
    match (challenge.ordinal, step.pin_ok) {
        (Some(_), Some(false)) => {
            return Err(pin_failed(r, account, challenge.ordinal, step.pin_attempts, now).await?)
        }
        (Some(_), Some(true)) => r.reset_pin_failures(account).await?,
        (None, None) => {}
        _ => {
            return api(ApiError::InvalidParameter {
                name: "login".into(),
            })
        }
    }
    step.operation
        .check_pin_proof(challenge.ordinal.is_some())?;
    let mut outcome = OperationOutcome::default();
    match &step.operation {
        DeviceOperation::StartPinUpdate { next } => {
            if let Some(next) = next {
                open_pin_change(r, account, device_id, "update", next, now).await?;
            }
        }
        DeviceOperation::StartPinReset { code, next } => {
            record.check_recovery_allowed(now)?;
            use_code(r, &record, code).await?;
            open_pin_change(r, account, device_id, "reset", next, now).await?;
        }
        DeviceOperation::FinishPinChange { pin_record } => {
            let (Some(change), Some(credential_id)) =
                (&challenge.pin_change, &challenge.credential_id)
            else {
                return Err(anyhow!("PIN-change challenge without its change").into());
            };
            let origin = pin_change_origin(change)?;
            if origin == PinOrigin::SmsRecovery {
                record.check_recovery_allowed(now)?;
            }
            set_pin(r, account, pin_record, credential_id, origin, now).await?;
            let event = if origin == PinOrigin::SmsRecovery {
                "pin_reset"
            } else {
                "pin_updated"
            };
            r.audit(now, account, event, Some(device_id), None).await?;
            outcome.pin_set_by = Some(origin);
        }
        DeviceOperation::ModifyPhoneNumber {
            code,
            phone_number,
            recovery_hold,
            restore_nonce,
        } => {
            let pin_proven = challenge.ordinal.is_some();
            let change = record.number_change(
                phone_number,
                pin_proven,
                now,
                *recovery_hold,
                restore_nonce.clone(),
            )?;
            use_code(r, &record, code).await?;
            r.set_trusted_number(account, &change.trusted_number())
                .await?;
            let detail = match (pin_proven, change.closed_window_of.is_some()) {
                (true, true) => "pin proven, restore window closed",
                (true, false) => "pin proven",
                (false, _) => "without pin",
            };
            r.audit(
                now,
                account,
                "phone_number_modified",
                Some(device_id),
                Some(detail),
            )
            .await?;
            outcome.number_change = Some(change);
        }
        DeviceOperation::AuthorizeCommand {
            command,
            vin,
            needs_pin,
            pin_otp,
        } => {
            // A failed login returned above: a login here was proven.
            let otp_proven = match pin_otp {
                None => false,
                Some((mac, audience)) => match r.use_otp(mac, now, audience).await? {
                    Some(v) if v.with_pin && v.subject == account && v.device_id == device_id => {
                        true
                    }
                    _ => return api(ApiError::OtpInvalid),
                },
            };
            let with_pin = challenge.ordinal.is_some() || otp_proven;
            if *needs_pin && !with_pin {
                return api(ApiError::PinRequired {
                    command: command.clone(),
                });
            }
            let detail = format!(
                "{command} {vin} {}",
                if with_pin { "with pin" } else { "without pin" }
            );
            r.audit(
                now,
                account,
                "command_authorized",
                Some(device_id),
                Some(&detail),
            )
            .await?;
            outcome.command_with_pin = Some(with_pin);
        }
    }
    Ok(outcome)
}

pub async fn admin_disable_device<R: Rows>(
    r: &R,
    account: &str,
    device_id: &str,
    by: &str,
    reason: &str,
    now: i64,
) -> Result<bool> {
    r.lock_existing_account(account).await?;
    match r.device(account, device_id).await? {
        None => api(ApiError::DeviceUnknown),
        Some(d) if d.state == DeviceState::Disabled => Ok(false),
        Some(_) => {
            let why = match reason.trim() {
                "" => by.to_string(),
                reason => format!("{by}: {reason}"),
            };
            disable_device(r, account, device_id, now, &why, true).await?;
            Ok(true)
        }
    }
}

pub async fn admin_enable_device<R: Rows>(
    r: &R,
    account: &str,
    device_id: &str,
    by: &str,
    now: i64,
) -> Result<bool> {
    r.lock_existing_account(account).await?;
    match r.device(account, device_id).await? {
        None => api(ApiError::DeviceUnknown),
        Some(d) if d.state != DeviceState::Disabled => Ok(false),
        Some(_) => {
            if !r.enable_device(account, device_id).await? {
                return api(ApiError::DeviceNotReEnablable);
            }
            r.audit(now, account, "device_enabled", Some(device_id), Some(by))
                .await?;
            Ok(true)
        }
    }
}

pub async fn restore_phone_number<R: Rows>(r: &R, step: &RestoreStep) -> Result<Restored> {
    let (account, now) = (step.account.as_str(), step.now);
    r.lock_existing_account(account).await?;
    let Some(record) = r.account(account).await? else {
        return api(ApiError::NothingToRestore);
    };
    let restored = record.restoration(now)?;
    let by = match &step.by {
        RestoreBy::Owner { code } => {
            let nonce = record.restore_nonce.as_deref();
            if !nonce.is_some_and(|nonce| code(&restored.phone_number, nonce)) {
                return api(ApiError::RestoreCodeInvalid);
            }
            "owner"
        }
        RestoreBy::Helpdesk { by } => by.as_str(),
    };
    r.set_trusted_number(account, &restored).await?;
    let devices_disabled = disable_every_device(r, account, now).await?;
    let detail = format!("{by}, {devices_disabled} devices disabled");
    r.audit(now, account, "phone_number_restored", None, Some(&detail))
        .await?;
    Ok(Restored {
        replaced: record.phone_number.unwrap_or_default(),
        phone_number: restored.phone_number,
        devices_disabled,
    })
}

pub async fn unblock_account<R: Rows>(r: &R, account: &str, by: &str, now: i64) -> Result<bool> {
    // An operator's action never creates the account it names.
    r.lock_existing_account(account).await?;
    let Some(record) = r.account(account).await? else {
        return api(ApiError::AccountUnknown);
    };
    if record.pin_failures == 0 {
        return Ok(false);
    }
    r.reset_pin_failures(account).await?;
    r.audit(now, account, "account_unblocked", None, Some(by))
        .await?;
    Ok(true)
}

pub async fn purge<R: Rows>(r: &R, step: &PurgeStep) -> Result<PurgeCounts> {
    // One replica purges at a time; the others skip this round.
    if !r.lock_purge().await? {
        return Ok(PurgeCounts::default());
    }
    let mut counts = [0u64; 8];
    for (n, (sql, bound)) in counts.iter_mut().zip(step.statements()) {
        *n = r.purge(sql, bound).await?;
    }
    Ok(PurgeCounts::from_statement_counts(counts))
}

/// The [`Store`](super::Store) of a database, every method one step or read of this module.
/// `$step!(self, r => future)` runs the future over the rows `r` of a new transaction, and
/// `$read!(self, r => future)` over rows outside one; the database type also has `ping_db` and
/// `close_db`.
macro_rules! store_over_steps {
    ($store:ty, step: $step:ident, read: $read:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn account(
                &self,
                account: &str,
            ) -> $crate::error::Result<Option<$crate::store::AccountRecord>> {
                $read!(self, r => r.account(account))
            }

            async fn pin_facts(
                &self,
                account: &str,
            ) -> $crate::error::Result<Option<$crate::store::PinFacts>> {
                $read!(self, r => r.pin_facts(account))
            }

            async fn accounts_with_phone_number(
                &self,
                phone_number: &str,
            ) -> $crate::error::Result<Vec<String>> {
                $read!(self, r => r.accounts_with_phone_number(phone_number))
            }

            async fn accounts_with_subject_prefix(
                &self,
                prefix: &str,
                limit: u32,
            ) -> $crate::error::Result<Vec<String>> {
                $read!(self, r => r.accounts_with_subject_prefix(prefix, limit))
            }

            async fn device(
                &self,
                account: &str,
                device_id: &str,
            ) -> $crate::error::Result<Option<$crate::store::DeviceRecord>> {
                $read!(self, r => r.device(account, device_id))
            }

            async fn prepare_sms_code(
                &self,
                req: $crate::store::SmsSendRequest,
            ) -> $crate::error::Result<$crate::store::SmsToSend> {
                $step!(self, r => $crate::store::steps::prepare_sms_code(r, &req))
            }

            async fn check_sms_code(
                &self,
                check: $crate::store::CodeCheck,
            ) -> $crate::error::Result<bool> {
                $step!(self, r => $crate::store::steps::check_sms_code(r, &check))
            }

            async fn add_phone_number(
                &self,
                check: $crate::store::CodeCheck,
                phone_number: String,
            ) -> $crate::error::Result<()> {
                $step!(self, r => $crate::store::steps::add_phone_number(r, &check, &phone_number))
            }

            async fn start_enrollment(
                &self,
                step: $crate::store::StartEnrollmentStep,
            ) -> $crate::error::Result<()> {
                $step!(self, r => $crate::store::steps::start_enrollment(r, &step))
            }

            async fn enrollment_session(
                &self,
                account: &str,
                id: &str,
                now: i64,
            ) -> $crate::error::Result<Option<$crate::store::EnrollmentSession>> {
                $read!(self, r => r.open_session(account, id, now))
            }

            async fn idempotent_outcome(
                &self,
                account: &str,
                key: &str,
            ) -> $crate::error::Result<Option<(String, $crate::store::StoredOutcome)>> {
                $read!(self, r => $crate::store::steps::idempotent_outcome(r, account, key))
            }

            async fn finish_enrollment(
                &self,
                step: $crate::store::FinishEnrollmentStep,
            ) -> $crate::error::Result<pims_proto::EnrollmentFinished> {
                $step!(self, r => $crate::store::steps::finish_enrollment(r, &step))
            }

            async fn activate_device(
                &self,
                step: $crate::store::ActivateStep,
            ) -> $crate::error::Result<bool> {
                $step!(self, r => $crate::store::steps::activate_device(r, &step))
            }

            async fn create_otp_challenge(
                &self,
                step: $crate::store::ChallengeStep,
            ) -> $crate::error::Result<()> {
                $step!(self, r => $crate::store::steps::create_otp_challenge(r, &step))
            }

            async fn otp_challenge(
                &self,
                account: &str,
                id: &str,
                now: i64,
            ) -> $crate::error::Result<Option<$crate::store::OtpChallengeRecord>> {
                $read!(self, r => r.open_challenge(account, id, now))
            }

            async fn issue_otp(
                &self,
                step: $crate::store::IssueOtpStep,
            ) -> $crate::error::Result<()> {
                $step!(self, r => $crate::store::steps::issue_otp(r, &step))
            }

            async fn use_otp(
                &self,
                otp_mac: &[u8],
                now: i64,
                relying_party: &str,
            ) -> $crate::error::Result<Option<$crate::store::VerifiedOtp>> {
                let (mac, rp) = (otp_mac.to_vec(), relying_party.to_string());
                $step!(self, r => $crate::store::steps::use_otp(r, &mac, now, &rp))
            }

            async fn list_devices(
                &self,
                account: &str,
                now: i64,
                pending_ttl: u64,
            ) -> $crate::error::Result<Vec<$crate::store::DeviceSummary>> {
                let since = now.saturating_sub(pending_ttl as i64);
                $read!(self, r => r.live_devices(account, since))
            }

            async fn revoke_device(
                &self,
                account: &str,
                device_id: &str,
                now: i64,
            ) -> $crate::error::Result<()> {
                let (account, device_id) = (account.to_string(), device_id.to_string());
                $step!(self, r => $crate::store::steps::revoke_device(r, &account, &device_id, now))
            }

            async fn remove_enrollments(
                &self,
                account: &str,
                now: i64,
            ) -> $crate::error::Result<bool> {
                let account = account.to_string();
                $step!(self, r => $crate::store::steps::remove_enrollments(r, &account, now))
            }

            async fn device_operation(
                &self,
                step: $crate::store::DeviceOperationStep,
            ) -> $crate::error::Result<$crate::store::OperationOutcome> {
                $step!(self, r => $crate::store::steps::device_operation(r, &step))
            }

            async fn admin_list_devices(
                &self,
                account: &str,
            ) -> $crate::error::Result<Vec<$crate::store::AdminDeviceSummary>> {
                $read!(self, r => r.all_devices(account))
            }

            async fn admin_disable_device(
                &self,
                account: &str,
                device_id: &str,
                by: &str,
                reason: &str,
                now: i64,
            ) -> $crate::error::Result<bool> {
                let (account, device_id, by, reason) = (
                    account.to_string(),
                    device_id.to_string(),
                    by.to_string(),
                    reason.to_string(),
                );
                $step!(self, r => $crate::store::steps::admin_disable_device(
                    r, &account, &device_id, &by, &reason, now
                ))
            }

            async fn admin_enable_device(
                &self,
                account: &str,
                device_id: &str,
                by: &str,
                now: i64,
            ) -> $crate::error::Result<bool> {
                let (account, device_id, by) =
                    (account.to_string(), device_id.to_string(), by.to_string());
                $step!(self, r => $crate::store::steps::admin_enable_device(
                    r, &account, &device_id, &by, now
                ))
            }

            async fn restore_phone_number(
                &self,
                step: $crate::store::RestoreStep,
            ) -> $crate::error::Result<$crate::store::Restored> {
                $step!(self, r => $crate::store::steps::restore_phone_number(r, &step))
            }

            async fn unblock_account(
                &self,
                account: &str,
                by: &str,
                now: i64,
            ) -> $crate::error::Result<bool> {
                let (account, by) = (account.to_string(), by.to_string());
                $step!(self, r => $crate::store::steps::unblock_account(r, &account, &by, now))
            }

            async fn audit_trail(
                &self,
                account: Option<&str>,
                after_id: i64,
                limit: u32,
            ) -> $crate::error::Result<Vec<$crate::store::AuditEvent>> {
                $read!(self, r => r.audit_trail(account, after_id, limit))
            }

            async fn audit_search(
                &self,
                query: $crate::store::AuditQuery,
            ) -> $crate::error::Result<Vec<$crate::store::AuditEvent>> {
                let mut rows = $read!(self, r => r.audit_search(&query))?;
                if matches!(query.page, $crate::store::AuditPageAt::NewerThan(_)) {
                    rows.reverse();
                }
                Ok(rows)
            }

            async fn audit_chain(
                &self,
                after_id: i64,
                limit: u32,
            ) -> $crate::error::Result<Vec<$crate::store::ChainedAuditRow>> {
                $read!(self, r => r.audit_chain(after_id, limit))
            }

            async fn audit_walk(
                &self,
                page: u32,
                visit: &mut $crate::store::AuditVisit<'_>,
            ) -> $crate::error::Result<()> {
                self.audit_walk_db(page, visit).await
            }

            async fn purge(
                &self,
                step: $crate::store::PurgeStep,
            ) -> $crate::error::Result<$crate::store::PurgeCounts> {
                $step!(self, r => $crate::store::steps::purge(r, &step))
            }

            async fn ping(&self) -> $crate::error::Result<()> {
                self.ping_db().await
            }

            async fn close(&self) {
                self.close_db().await
            }
        }
    };
}
pub(super) use store_over_steps;
