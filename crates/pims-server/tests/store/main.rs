//! The shared store suite: every behaviour of the [`Store`] contract, run against SQLite and
//! against PostgreSQL (a throwaway cluster; skipped with a message when PostgreSQL is not
//! installed, unless `PIMS_REQUIRE_POSTGRES=1`). Cryptography is outside the store, so proofs
//! are stand-ins here: a matcher that says yes or no, opaque PIN record bytes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use pims_proto::{
    ApiError, DeviceState, EnrollmentFinished, NumberRefusal, PinOrigin, Platform, SmsPurpose,
};
use pims_server::audit::AuditKey;
use pims_server::store::postgres::PostgresStore;
use pims_server::store::sqlite::SqliteStore;
use pims_server::store::*;
use pims_server::testing::{shared_cluster, TempCluster};

const NOW: i64 = 1_800_000_000;
const PHONE: &str = "+33612345678";
const PIN_RECORD: &[u8] = b"opaque registration record";

fn audit_key() -> AuditKey {
    AuditKey::new([0x5a; 32])
}

/// A store and whatever must outlive it (its directory or cluster).
struct Db {
    store: Arc<dyn Store>,
    /// The database itself, for writing as an attacker would, past the store.
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
    _cluster: Option<Arc<TempCluster>>,
}

enum Raw {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pims.sqlite3");
    let store = SqliteStore::open(&path, audit_key()).unwrap();
    Db {
        store: Arc::new(store),
        raw: Raw::Sqlite(path),
        _dir: Some(dir),
        _cluster: None,
    }
}

async fn postgres() -> Option<Db> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let cluster = shared_cluster().expect("starting PostgreSQL")?;
    let name = format!("store_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let url = cluster.create_database(&name).await.unwrap();
    let store = PostgresStore::connect(&url, 8, audit_key()).await.unwrap();
    Some(Db {
        store: Arc::new(store),
        raw: Raw::Postgres(url),
        _dir: None,
        _cluster: Some(cluster),
    })
}

/// Declares each scenario once and runs it on both stores.
macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::sqlite();
                    super::$name(db.store.clone()).await;
                    db.store.close().await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::postgres().await else { return };
                    super::$name(db.store.clone()).await;
                    db.store.close().await;
                }
            )*
        }
    };
}

store_suite!(
    accounts_are_created_by_writes_only,
    a_live_code_is_resent_not_replaced,
    sends_per_account_are_limited_with_the_time_to_wait,
    sends_per_number_are_counted_across_accounts,
    concurrent_sends_never_exceed_the_number_limit,
    a_code_survives_its_check_limit_and_no_more,
    adding_a_number_consumes_the_code_once,
    enrollment_creates_a_pending_device_that_activation_makes_active,
    a_retried_finish_replays_the_first_outcome,
    a_finished_session_cannot_finish_again,
    a_counter_that_does_not_increase_disables_the_device,
    an_otp_is_used_exactly_once,
    wrong_pins_block_the_account_at_the_limit,
    a_right_pin_resets_the_failure_count,
    concurrent_wrong_pins_are_counted_exactly,
    the_device_limit_is_enforced,
    admin_actions_change_state_and_are_audited,
    only_an_operator_s_disable_is_undone,
    sends_per_client_address_are_counted_across_accounts,
    live_devices_are_listed_in_order_and_revoked_once,
    removing_enrollments_disables_devices_and_forgets_the_pin,
    a_device_operation_needs_the_pin_and_a_fresh_counter,
    a_device_operation_moves_the_trusted_number,
    a_pin_reset_consumes_its_code_and_unblocks_at_the_finish,
    recovery_by_sms_is_held_after_a_number_change,
    an_otp_verifies_only_for_its_audience_and_while_its_device_lives,
    a_device_holds_a_bounded_number_of_open_challenges,
    every_pin_attempt_is_audited_when_it_starts,
    the_number_trusted_before_a_hold_is_the_only_one_restored,
    a_change_with_the_pin_cannot_be_restored,
    nothing_is_restored_after_the_hold,
    the_owner_restores_with_the_code_of_the_hold,
    the_audit_trail_pages_in_order,
    accounts_are_found_by_their_trusted_number,
    accounts_are_found_by_a_subject_prefix,
    an_internal_failure_undoes_its_own_step_only,
    a_revoked_device_stays_revoked_under_racing_activations,
    a_pin_proof_without_its_counted_attempt_enrolls_nothing,
    a_new_pin_closes_logins_a_clock_behind_would_still_take,
);

/// Declares each scenario once and runs it on both stores, with access to the raw database.
macro_rules! db_suite {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::super::sqlite();
                    super::$name(&db).await;
                    db.store.close().await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::super::postgres().await else { return };
                    super::$name(&db).await;
                    db.store.close().await;
                }
            )*
        }
    };
}

mod audit_chain;
mod purge;
mod races;

// ---- helpers ---------------------------------------------------------------------------------

fn limits() -> StepLimits {
    StepLimits {
        pin_attempts: 5,
        sms_code_max_checks: 5,
        max_devices: 3,
        pending_device_ttl: 86_400,
    }
}

fn matcher(accept: bool) -> CodeMatcher {
    Arc::new(move |_phone: &str, _nonce: &[u8]| accept)
}

fn send_request(
    account: &str,
    purpose: SmsPurpose,
    target: CodeTarget,
    now: i64,
) -> SmsSendRequest {
    SmsSendRequest {
        account: account.into(),
        purpose,
        target,
        now,
        ttl: 600,
        max_checks: 5,
        per_account_per_hour: 10,
        per_number_per_hour: 10,
        client_address: None,
        per_address_per_hour: 10,
        new_nonce: uuid::Uuid::new_v4().as_bytes().to_vec(),
    }
}

fn check(account: &str, purpose: SmsPurpose, target: CodeTarget, accept: bool) -> CodeCheck {
    CodeCheck {
        account: account.into(),
        purpose,
        target,
        matcher: matcher(accept),
        now: NOW,
        max_checks: 5,
    }
}

/// A challenge without a login, for the relying party `rp`.
fn challenge_step(account: &str, device: &str, id: &str, now: i64) -> ChallengeStep {
    ChallengeStep {
        account: account.into(),
        challenge_id: id.into(),
        device_id: device.into(),
        nonce: b"challenge nonce".to_vec(),
        login: None,
        audience: Some("rp".into()),
        now,
        ttl: 120,
        pin_attempts: 5,
        max_open: 10,
        login_counter: None,
    }
}

fn login() -> LoginStart {
    LoginStart {
        pin_record: PIN_RECORD.to_vec(),
        state: b"server login state".to_vec(),
    }
}

async fn certify(store: &Arc<dyn Store>, account: &str) {
    let number = CodeTarget::Number(PHONE.into());
    store
        .prepare_sms_code(send_request(
            account,
            SmsPurpose::PhoneCertification,
            number.clone(),
            NOW,
        ))
        .await
        .unwrap();
    store
        .add_phone_number(
            check(account, SmsPurpose::PhoneCertification, number, true),
            PHONE.into(),
        )
        .await
        .unwrap();
}

async fn send_enrollment_code(store: &Arc<dyn Store>, account: &str) {
    store
        .prepare_sms_code(send_request(
            account,
            SmsPurpose::Enrollment,
            CodeTarget::TrustedNumber,
            NOW,
        ))
        .await
        .unwrap();
}

fn start_step(account: &str, session: &str, login: Option<LoginStart>) -> StartEnrollmentStep {
    StartEnrollmentStep {
        account: account.into(),
        session_id: session.into(),
        nonce: b"enrollment nonce".to_vec(),
        phone_number: None,
        sms_code: matcher(true),
        credential_id: login.is_none().then(|| format!("credential-of-{session}")),
        login,
        now: NOW,
        ttl: 600,
        limits: limits(),
    }
}

fn finish_step(
    account: &str,
    session: &str,
    key: &str,
    proof: EnrollmentProof,
) -> FinishEnrollmentStep {
    FinishEnrollmentStep {
        account: account.into(),
        enrollment_id: session.into(),
        idempotency_key: key.into(),
        proof,
        device: NewDeviceRecord {
            id: format!("device-of-{session}"),
            public_key: b"public key".to_vec(),
            name: "phone".into(),
            platform: Platform::Android,
            activation_nonce: b"activation nonce".to_vec(),
            assurance: "tee".into(),
            assurance_detail: None,
        },
        attestation_refusal: None,
        now: NOW,
        limits: limits(),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A trusted number and an enrollment session started without a login (the account has no
/// PIN yet); returns the session id.
async fn first_enrollment_started(store: &Arc<dyn Store>, account: &str) -> String {
    certify(store, account).await;
    send_enrollment_code(store, account).await;
    let session = new_id();
    store
        .start_enrollment(start_step(account, &session, None))
        .await
        .unwrap();
    session
}

/// A trusted number, a PIN and one Active device (counter 1); returns the device id.
async fn enrolled(store: &Arc<dyn Store>, account: &str) -> String {
    let session = first_enrollment_started(store, account).await;
    let finished = store
        .finish_enrollment(finish_step(
            account,
            &session,
            &new_id(),
            EnrollmentProof::Register {
                pin_record: PIN_RECORD.to_vec(),
            },
        ))
        .await
        .unwrap();
    activate(store, account, &finished.device_id, 1)
        .await
        .unwrap();
    finished.device_id
}

/// Enrolls one more device on an enrolled account with a PIN proof.
async fn enroll_another(
    store: &Arc<dyn Store>,
    account: &str,
) -> Result<EnrollmentFinished, ApiError> {
    send_enrollment_code(store, account).await;
    let session = new_id();
    store
        .start_enrollment(start_step(account, &session, Some(login())))
        .await
        .map_err(api_error)?;
    store
        .finish_enrollment(finish_step(
            account,
            &session,
            &new_id(),
            EnrollmentProof::Login { pin_ok: true },
        ))
        .await
        .map_err(api_error)
}

async fn activate(
    store: &Arc<dyn Store>,
    account: &str,
    device: &str,
    counter: u64,
) -> Result<bool, ApiError> {
    store
        .activate_device(ActivateStep {
            account: account.into(),
            device_id: device.into(),
            counter,
            now: NOW,
            pending_device_ttl: 86_400,
        })
        .await
        .map_err(api_error)
}

/// Challenge then OTP; the OTP's MAC is `mac`.
async fn otp(
    store: &Arc<dyn Store>,
    account: &str,
    device: &str,
    counter: u64,
    proof: OtpProof,
    mac: &[u8],
) -> Result<(), ApiError> {
    let challenge = new_id();
    let with_pin = matches!(proof, OtpProof::Pin { .. });
    store
        .create_otp_challenge(ChallengeStep {
            account: account.into(),
            challenge_id: challenge.clone(),
            device_id: device.into(),
            nonce: b"challenge nonce".to_vec(),
            login: with_pin.then(login),
            audience: Some("rp".into()),
            now: NOW,
            ttl: 120,
            pin_attempts: 5,
            max_open: 10,
            login_counter: None,
        })
        .await
        .map_err(api_error)?;
    store
        .issue_otp(IssueOtpStep {
            account: account.into(),
            challenge_id: challenge,
            counter,
            proof,
            otp_mac: mac.to_vec(),
            now: NOW,
            otp_ttl: 120,
            pin_attempts: 5,
        })
        .await
        .map_err(api_error)
}

async fn send_code(store: &Arc<dyn Store>, account: &str, purpose: SmsPurpose) {
    store
        .prepare_sms_code(send_request(
            account,
            purpose,
            CodeTarget::TrustedNumber,
            NOW,
        ))
        .await
        .unwrap();
}

fn api_error(e: pims_server::error::Error) -> ApiError {
    match e {
        pims_server::error::Error::Api(e) => e,
        other => panic!("internal error: {other}"),
    }
}

async fn failures(store: &Arc<dyn Store>, account: &str) -> u32 {
    store.account(account).await.unwrap().unwrap().pin_failures
}

// ---- scenarios -------------------------------------------------------------------------------

async fn accounts_are_created_by_writes_only(store: Arc<dyn Store>) {
    assert_eq!(store.account("alice").await.unwrap(), None);
    assert_eq!(store.device("alice", "nope").await.unwrap(), None);
    // A challenge without a login for a device that does not exist writes nothing.
    let refused = store
        .create_otp_challenge(challenge_step("alice", "nope", &new_id(), NOW))
        .await
        .map_err(api_error);
    assert_eq!(refused, Err(ApiError::DeviceUnknown));
    assert_eq!(store.account("alice").await.unwrap(), None);
    store
        .prepare_sms_code(send_request(
            "alice",
            SmsPurpose::PhoneCertification,
            CodeTarget::Number(PHONE.into()),
            NOW,
        ))
        .await
        .unwrap();
    assert_eq!(
        store.account("alice").await.unwrap(),
        Some(AccountRecord::default())
    );
}

async fn a_live_code_is_resent_not_replaced(store: Arc<dyn Store>) {
    let target = CodeTarget::Number(PHONE.into());
    let first = store
        .prepare_sms_code(send_request(
            "alice",
            SmsPurpose::PhoneCertification,
            target.clone(),
            NOW,
        ))
        .await
        .unwrap();
    let second = store
        .prepare_sms_code(send_request(
            "alice",
            SmsPurpose::PhoneCertification,
            target,
            NOW + 60,
        ))
        .await
        .unwrap();
    assert!(!first.resend);
    assert!(second.resend);
    assert_eq!(second.nonce, first.nonce);
    assert_eq!(second.expires_at, NOW + 600);
    assert_eq!(second.phone_number, PHONE);
}

async fn sends_per_account_are_limited_with_the_time_to_wait(store: Arc<dyn Store>) {
    let send = |i: i64| {
        let mut r = send_request(
            "alice",
            SmsPurpose::PhoneCertification,
            CodeTarget::Number(format!("+3361234567{i}")),
            NOW + i * 10,
        );
        r.per_account_per_hour = 3;
        r
    };
    for i in 0..3 {
        store.prepare_sms_code(send(i)).await.unwrap();
    }
    let refused = store.prepare_sms_code(send(3)).await.err().map(api_error);
    // The oldest send (at NOW) leaves the window at NOW + 3600; this one is at NOW + 30.
    assert_eq!(
        refused,
        Some(ApiError::RateLimited {
            retry_after_seconds: 3570
        })
    );
    let mut later = send(4);
    later.now = NOW + 3601;
    store.prepare_sms_code(later).await.unwrap();
}

async fn sends_per_number_are_counted_across_accounts(store: Arc<dyn Store>) {
    let send = |account: &str| {
        let mut r = send_request(
            account,
            SmsPurpose::PhoneCertification,
            CodeTarget::Number(PHONE.into()),
            NOW,
        );
        r.per_number_per_hour = 2;
        r
    };
    store.prepare_sms_code(send("a")).await.unwrap();
    store.prepare_sms_code(send("b")).await.unwrap();
    assert_eq!(
        store.prepare_sms_code(send("c")).await.err().map(api_error),
        Some(ApiError::RateLimited {
            retry_after_seconds: 3600
        })
    );
}

async fn concurrent_sends_never_exceed_the_number_limit(store: Arc<dyn Store>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut r = send_request(
                &format!("account-{}", i % 6),
                SmsPurpose::PhoneCertification,
                CodeTarget::Number(PHONE.into()),
                NOW,
            );
            r.per_number_per_hour = 7;
            store.prepare_sms_code(r).await.map_err(api_error)
        });
    }
    let (mut sent, mut limited) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Ok(_) => sent += 1,
            Err(ApiError::RateLimited { .. }) => limited += 1,
            Err(other) => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((sent, limited), (7, 17));
}

async fn a_code_survives_its_check_limit_and_no_more(store: Arc<dyn Store>) {
    let target = CodeTarget::Number(PHONE.into());
    store
        .prepare_sms_code(send_request(
            "alice",
            SmsPurpose::PhoneCertification,
            target.clone(),
            NOW,
        ))
        .await
        .unwrap();
    for remaining in (0..5).rev() {
        let outcome = store
            .check_sms_code(check(
                "alice",
                SmsPurpose::PhoneCertification,
                target.clone(),
                false,
            ))
            .await;
        assert_eq!(
            outcome.err().map(api_error),
            Some(ApiError::SmsCodeInvalid {
                expired: false,
                attempts_remaining: remaining
            })
        );
    }
    // Exhausted: even the right code is refused now.
    let outcome = store
        .check_sms_code(check("alice", SmsPurpose::PhoneCertification, target, true))
        .await;
    assert_eq!(
        outcome.err().map(api_error),
        Some(ApiError::SmsCodeInvalid {
            expired: false,
            attempts_remaining: 0
        })
    );
}

async fn adding_a_number_consumes_the_code_once(store: Arc<dyn Store>) {
    certify(&store, "alice").await;
    assert_eq!(
        store
            .account("alice")
            .await
            .unwrap()
            .unwrap()
            .phone_number
            .as_deref(),
        Some(PHONE)
    );
    let again = store
        .add_phone_number(
            check(
                "alice",
                SmsPurpose::PhoneCertification,
                CodeTarget::Number(PHONE.into()),
                true,
            ),
            PHONE.into(),
        )
        .await;
    assert_eq!(
        again.err().map(api_error),
        Some(ApiError::PhoneNumberAlreadyRegistered)
    );
}

async fn enrollment_creates_a_pending_device_that_activation_makes_active(store: Arc<dyn Store>) {
    let session = first_enrollment_started(&store, "alice").await;
    let open = store
        .enrollment_session("alice", &session, NOW)
        .await
        .unwrap();
    assert_eq!(open.map(|s| s.login_state), Some(None));
    let finished = store
        .finish_enrollment(finish_step(
            "alice",
            &session,
            "key-1",
            EnrollmentProof::Register {
                pin_record: PIN_RECORD.to_vec(),
            },
        ))
        .await
        .unwrap();
    let device = store
        .device("alice", &finished.device_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((device.state, device.counter), (DeviceState::Pending, 0));
    assert_eq!(
        store
            .account("alice")
            .await
            .unwrap()
            .unwrap()
            .pin_record
            .as_deref(),
        Some(PIN_RECORD)
    );
    activate(&store, "alice", &finished.device_id, 1)
        .await
        .unwrap();
    let device = store
        .device("alice", &finished.device_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((device.state, device.counter), (DeviceState::Active, 1));
    // Another account cannot see it.
    assert_eq!(
        store.device("bob", &finished.device_id).await.unwrap(),
        None
    );
}

async fn a_retried_finish_replays_the_first_outcome(store: Arc<dyn Store>) {
    let session = first_enrollment_started(&store, "alice").await;
    let proof = || EnrollmentProof::Register {
        pin_record: PIN_RECORD.to_vec(),
    };
    let first = store
        .finish_enrollment(finish_step("alice", &session, "key-1", proof()))
        .await
        .unwrap();
    let retried = store
        .finish_enrollment(finish_step("alice", &session, "key-1", proof()))
        .await
        .unwrap();
    assert_eq!(retried, first);
    assert_eq!(
        store.idempotent_outcome("alice", "key-1").await.unwrap(),
        Some((session.clone(), StoredOutcome::Ok(first)))
    );
    let misused = store
        .finish_enrollment(finish_step("alice", "another-session", "key-1", proof()))
        .await;
    assert_eq!(
        misused.err().map(api_error),
        Some(ApiError::InvalidParameter {
            name: "idempotencyKey".into()
        })
    );
}

async fn a_finished_session_cannot_finish_again(store: Arc<dyn Store>) {
    let session = first_enrollment_started(&store, "alice").await;
    let proof = || EnrollmentProof::Register {
        pin_record: PIN_RECORD.to_vec(),
    };
    store
        .finish_enrollment(finish_step("alice", &session, "key-1", proof()))
        .await
        .unwrap();
    let again = store
        .finish_enrollment(finish_step("alice", &session, "key-2", proof()))
        .await;
    assert_eq!(again.err().map(api_error), Some(ApiError::SessionExpired));
    assert_eq!(
        store
            .enrollment_session("alice", &session, NOW)
            .await
            .unwrap()
            .map(|s| s.id),
        None
    );
}

async fn a_counter_that_does_not_increase_disables_the_device(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    otp(&store, "alice", &device, 5, OtpProof::WithoutPin, b"mac-1")
        .await
        .unwrap();
    assert_eq!(
        otp(&store, "alice", &device, 5, OtpProof::WithoutPin, b"mac-2").await,
        Err(ApiError::DeviceUnknown)
    );
    let record = store.device("alice", &device).await.unwrap().unwrap();
    assert_eq!(record.state, DeviceState::Disabled);
    assert_eq!(
        otp(&store, "alice", &device, 9, OtpProof::WithoutPin, b"mac-3").await,
        Err(ApiError::DeviceUnknown)
    );
}

async fn an_otp_is_used_exactly_once(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    otp(
        &store,
        "alice",
        &device,
        2,
        OtpProof::Pin { ok: true },
        b"mac-1",
    )
    .await
    .unwrap();
    let verified = store.use_otp(b"mac-1", NOW + 1, "rp").await.unwrap();
    assert_eq!(
        verified,
        Some(VerifiedOtp {
            subject: "alice".into(),
            device_id: device.clone(),
            with_pin: true,
            issued_at: NOW,
            pin_set_at: Some(NOW),
            pin_set_by: Some(PinOrigin::Enrollment),
            pin_recovered_at: None,
            // What the enrollment step stored (`finish_step`): both databases give it back.
            assurance: "tee".into(),
        })
    );
    assert_eq!(store.use_otp(b"mac-1", NOW + 2, "rp").await.unwrap(), None);
    assert_eq!(store.use_otp(b"unknown", NOW, "rp").await.unwrap(), None);
    otp(&store, "alice", &device, 3, OtpProof::WithoutPin, b"mac-2")
        .await
        .unwrap();
    // Expired at NOW + otp_ttl.
    assert_eq!(
        store.use_otp(b"mac-2", NOW + 120, "rp").await.unwrap(),
        None
    );
}

async fn wrong_pins_block_the_account_at_the_limit(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    let mut outcomes = Vec::new();
    for counter in 2..8 {
        let mac = format!("mac-{counter}");
        outcomes.push(
            otp(
                &store,
                "alice",
                &device,
                counter,
                OtpProof::Pin { ok: false },
                mac.as_bytes(),
            )
            .await
            .unwrap_err(),
        );
    }
    assert_eq!(
        outcomes,
        vec![
            ApiError::WrongPin {
                attempts_remaining: 4
            },
            ApiError::WrongPin {
                attempts_remaining: 3
            },
            ApiError::WrongPin {
                attempts_remaining: 2
            },
            ApiError::WrongPin {
                attempts_remaining: 1
            },
            ApiError::PinBlocked,
            ApiError::AccountBlocked,
        ]
    );
    assert_eq!(failures(&store, "alice").await, 5);
    // An OTP without PIN is still possible: the block is on the PIN.
    otp(
        &store,
        "alice",
        &device,
        20,
        OtpProof::WithoutPin,
        b"mac-np",
    )
    .await
    .unwrap();
}

async fn a_right_pin_resets_the_failure_count(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    for counter in 2..5 {
        otp(
            &store,
            "alice",
            &device,
            counter,
            OtpProof::Pin { ok: false },
            b"x",
        )
        .await
        .unwrap_err();
    }
    assert_eq!(failures(&store, "alice").await, 3);
    otp(
        &store,
        "alice",
        &device,
        5,
        OtpProof::Pin { ok: true },
        b"mac-ok",
    )
    .await
    .unwrap();
    assert_eq!(failures(&store, "alice").await, 0);
}

async fn concurrent_wrong_pins_are_counted_exactly(store: Arc<dyn Store>) {
    enrolled(&store, "alice").await;
    send_enrollment_code(&store, "alice").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            let session = new_id();
            store
                .start_enrollment(start_step("alice", &session, Some(login())))
                .await
                .map_err(api_error)?;
            store
                .finish_enrollment(finish_step(
                    "alice",
                    &session,
                    &new_id(),
                    EnrollmentProof::Login { pin_ok: false },
                ))
                .await
                .map_err(api_error)
        });
    }
    let mut wrong = Vec::new();
    let (mut blocked_now, mut already_blocked) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Err(ApiError::WrongPin { attempts_remaining }) => wrong.push(attempts_remaining),
            Err(ApiError::PinBlocked) => blocked_now += 1,
            Err(ApiError::AccountBlocked) => already_blocked += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    wrong.sort_unstable();
    assert_eq!(wrong, vec![1, 2, 3, 4]);
    assert_eq!((blocked_now, already_blocked), (1, 15));
    assert_eq!(failures(&store, "alice").await, 5);
}

async fn the_device_limit_is_enforced(store: Arc<dyn Store>) {
    enrolled(&store, "alice").await;
    enroll_another(&store, "alice").await.unwrap();
    enroll_another(&store, "alice").await.unwrap();
    assert_eq!(
        enroll_another(&store, "alice").await.err(),
        Some(ApiError::DeviceLimitReached)
    );
}

async fn admin_actions_change_state_and_are_audited(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    for counter in 2..7 {
        otp(
            &store,
            "alice",
            &device,
            counter,
            OtpProof::Pin { ok: false },
            b"x",
        )
        .await
        .unwrap_err();
    }
    assert_eq!(failures(&store, "alice").await, 5);
    assert!(store
        .unblock_account("alice", "admin", NOW + 5)
        .await
        .unwrap());
    assert_eq!(failures(&store, "alice").await, 0);
    // Nothing left to unblock: answered as such, not audited.
    assert!(!store
        .unblock_account("alice", "admin", NOW + 5)
        .await
        .unwrap());

    let listed = store.admin_list_devices("alice").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].id.as_str(),
            listed[0].state,
            listed[0].re_enablable
        ),
        (device.as_str(), DeviceState::Active, false)
    );
    assert_eq!(listed[0].platform, "android");
    assert!(store
        .admin_disable_device("alice", &device, "admin", "lost phone", NOW + 6)
        .await
        .unwrap());
    let listed = store.admin_list_devices("alice").await.unwrap();
    assert_eq!(
        (listed[0].state, listed[0].re_enablable),
        (DeviceState::Disabled, true)
    );
    assert!(!store
        .admin_disable_device("alice", &device, "admin", "again", NOW + 6)
        .await
        .unwrap());
    assert_eq!(
        store
            .admin_disable_device("bob", &device, "admin", "", NOW)
            .await
            .err()
            .map(api_error),
        Some(ApiError::DeviceUnknown)
    );
    // An operator's mistake can be undone, once.
    assert!(store
        .admin_enable_device("alice", &device, "admin", NOW + 7)
        .await
        .unwrap());
    assert!(!store
        .admin_enable_device("alice", &device, "admin", NOW + 7)
        .await
        .unwrap());
    otp(&store, "alice", &device, 7, OtpProof::WithoutPin, b"back")
        .await
        .unwrap();

    let events: Vec<(String, Option<String>)> = store
        .audit_trail(Some("alice"), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.detail))
        .collect();
    let tail = &events[events.len() - 4..events.len() - 1];
    assert_eq!(
        tail,
        &[
            ("account_unblocked".to_string(), Some("admin".to_string())),
            (
                "device_disabled".to_string(),
                Some("admin: lost phone".to_string())
            ),
            ("device_enabled".to_string(), Some("admin".to_string())),
        ]
    );
    let failures_and_block: Vec<&str> = events
        .iter()
        .map(|(e, _)| e.as_str())
        .filter(|e| e.starts_with("pin_"))
        .collect();
    assert_eq!(
        failures_and_block,
        vec![
            "pin_registered",
            "pin_attempt",
            "pin_failure",
            "pin_attempt",
            "pin_failure",
            "pin_attempt",
            "pin_failure",
            "pin_attempt",
            "pin_failure",
            "pin_attempt",
            "pin_failure",
            "pin_blocked"
        ]
    );
}

async fn the_audit_trail_pages_in_order(store: Arc<dyn Store>) {
    enrolled(&store, "alice").await;
    enrolled(&store, "bob").await;
    let all = store.audit_trail(None, 0, 1000).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert!(all.iter().any(|e| e.account == "bob"));
    let first = store.audit_trail(None, 0, 3).await.unwrap();
    let next = store.audit_trail(None, first[2].id, 3).await.unwrap();
    assert_eq!(first, all[..3].to_vec());
    assert_eq!(next, all[3..6].to_vec());
    let alices = store.audit_trail(Some("alice"), 0, 1000).await.unwrap();
    assert!(!alices.is_empty() && alices.iter().all(|e| e.account == "alice"));
}

async fn sends_per_client_address_are_counted_across_accounts(store: Arc<dyn Store>) {
    let send = |account: &str, address: &str, now: i64| {
        let mut r = send_request(
            account,
            SmsPurpose::PhoneCertification,
            CodeTarget::Number(format!("+336123456{}", account.len())),
            now,
        );
        r.client_address = Some(address.into());
        r.per_address_per_hour = 2;
        r
    };
    store
        .prepare_sms_code(send("a", "192.0.2.1", NOW))
        .await
        .unwrap();
    store
        .prepare_sms_code(send("bb", "192.0.2.1", NOW + 100))
        .await
        .unwrap();
    assert_eq!(
        store
            .prepare_sms_code(send("ccc", "192.0.2.1", NOW + 200))
            .await
            .err()
            .map(api_error),
        Some(ApiError::RateLimited {
            retry_after_seconds: 3400
        })
    );
    store
        .prepare_sms_code(send("ccc", "192.0.2.2", NOW + 200))
        .await
        .unwrap();
}

async fn operation(
    store: &Arc<dyn Store>,
    device: &str,
    counter: u64,
    pin_ok: Option<bool>,
    operation: DeviceOperation,
) -> Result<OperationOutcome, ApiError> {
    let challenge = new_id();
    store
        .create_otp_challenge(ChallengeStep {
            account: "alice".into(),
            challenge_id: challenge.clone(),
            device_id: device.into(),
            nonce: b"challenge nonce".to_vec(),
            login: pin_ok.map(|_| login()),
            audience: None,
            now: NOW,
            ttl: 120,
            pin_attempts: 5,
            max_open: 10,
            login_counter: None,
        })
        .await
        .map_err(api_error)?;
    operation_over(store, &challenge, counter, pin_ok, operation, NOW).await
}

/// The device operation over an existing challenge.
async fn operation_over(
    store: &Arc<dyn Store>,
    challenge: &str,
    counter: u64,
    pin_ok: Option<bool>,
    operation: DeviceOperation,
    now: i64,
) -> Result<OperationOutcome, ApiError> {
    store
        .device_operation(DeviceOperationStep {
            account: "alice".into(),
            challenge_id: challenge.into(),
            counter,
            signature_ok: true,
            pin_ok,
            operation,
            now,
            pin_attempts: 5,
        })
        .await
        .map_err(api_error)
}

fn pin_change(challenge: &str) -> PinChangeChallenge {
    PinChangeChallenge {
        challenge_id: challenge.into(),
        nonce: b"change nonce".to_vec(),
        credential_id: format!("credential-{challenge}"),
        ttl: 120,
    }
}

fn finish_change(record: &[u8]) -> DeviceOperation {
    DeviceOperation::FinishPinChange {
        pin_record: record.to_vec(),
    }
}

async fn live_devices_are_listed_in_order_and_revoked_once(store: Arc<dyn Store>) {
    let first = enrolled(&store, "alice").await;
    let second = enroll_another(&store, "alice").await.unwrap().device_id;
    let ids = |list: Vec<DeviceSummary>| list.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let listed = store.list_devices("alice", NOW, 86_400).await.unwrap();
    assert_eq!(listed[0].platform, Platform::Android);
    assert_eq!(ids(listed), vec![first.clone(), second.clone()]);
    // A Pending device past its time is no longer listed.
    assert_eq!(
        ids(store
            .list_devices("alice", NOW + 86_400, 86_400)
            .await
            .unwrap()),
        vec![first.clone()]
    );
    store.revoke_device("alice", &first, NOW).await.unwrap();
    assert_eq!(
        ids(store.list_devices("alice", NOW, 86_400).await.unwrap()),
        vec![second.clone()]
    );
    for (account, device) in [("alice", &first), ("bob", &second)] {
        assert_eq!(
            store
                .revoke_device(account, device, NOW)
                .await
                .err()
                .map(api_error),
            Some(ApiError::DeviceUnknown)
        );
    }
}

async fn removing_enrollments_disables_devices_and_forgets_the_pin(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    otp(
        &store,
        "alice",
        &device,
        2,
        OtpProof::Pin { ok: false },
        b"x",
    )
    .await
    .unwrap_err();
    store.remove_enrollments("alice", NOW).await.unwrap();
    let account = store.account("alice").await.unwrap().unwrap();
    assert_eq!(
        (
            account.pin_record,
            account.pin_failures,
            account.phone_number.as_deref()
        ),
        (None, 0, Some(PHONE))
    );
    assert_eq!(
        store.device("alice", &device).await.unwrap().unwrap().state,
        DeviceState::Disabled
    );
    assert!(store
        .list_devices("alice", NOW, 86_400)
        .await
        .unwrap()
        .is_empty());
}

async fn a_device_operation_needs_the_pin_and_a_fresh_counter(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    let start = |id: &str| DeviceOperation::StartPinUpdate {
        next: Some(pin_change(id)),
    };
    assert_eq!(
        operation(&store, &device, 2, Some(false), start("c-1")).await,
        Err(ApiError::WrongPin {
            attempts_remaining: 4
        })
    );
    assert_eq!(
        operation(&store, &device, 3, None, start("c-2")).await,
        Err(ApiError::InvalidParameter {
            name: "login".into()
        })
    );
    operation(&store, &device, 4, Some(true), start("c-3"))
        .await
        .unwrap();
    // Proven, the failure count is back to zero; the record changes only with the finish.
    let account = store.account("alice").await.unwrap().unwrap();
    assert_eq!(account.pin_record.as_deref(), Some(PIN_RECORD));
    assert_eq!(account.pin_failures, 0);
    // The change's challenge answers only the finish, and only once; no other challenge does.
    assert_eq!(
        operation(&store, &device, 5, None, finish_change(b"new record")).await,
        Err(ApiError::SessionExpired)
    );
    assert_eq!(
        operation_over(
            &store,
            "c-3",
            6,
            None,
            DeviceOperation::StartPinUpdate { next: None },
            NOW
        )
        .await,
        Err(ApiError::SessionExpired)
    );
    let outcome = operation_over(&store, "c-3", 7, None, finish_change(b"new record"), NOW)
        .await
        .unwrap();
    assert_eq!(outcome.pin_set_by, Some(PinOrigin::Update));
    let account = store.account("alice").await.unwrap().unwrap();
    assert_eq!(account.pin_record.as_deref(), Some(&b"new record"[..]));
    assert_eq!(account.pin_credential_id.as_deref(), Some("credential-c-3"));
    assert_eq!(
        operation_over(&store, "c-3", 8, None, finish_change(b"other"), NOW).await,
        Err(ApiError::SessionExpired)
    );
    // A replayed counter disables the device (the challenge's login still needs the old record).
    let stale = DeviceOperation::StartPinUpdate { next: None };
    let challenge = new_id();
    store
        .create_otp_challenge(ChallengeStep {
            account: "alice".into(),
            challenge_id: challenge.clone(),
            device_id: device.clone(),
            nonce: b"n".to_vec(),
            login: Some(LoginStart {
                pin_record: b"new record".to_vec(),
                state: b"s".to_vec(),
            }),
            audience: None,
            now: NOW,
            ttl: 120,
            pin_attempts: 5,
            max_open: 10,
            login_counter: None,
        })
        .await
        .unwrap();
    // 7 was the last counter used: the refused finishes above never reached the counter rule.
    let replay = operation_over(&store, &challenge, 7, Some(true), stale, NOW).await;
    assert_eq!(replay.err(), Some(ApiError::DeviceUnknown));
    assert_eq!(
        store.device("alice", &device).await.unwrap().unwrap().state,
        DeviceState::Disabled
    );
}

/// A thief who knew the old PIN opens a PIN login on the account's other device; the owner sets
/// a new PIN on a replica whose clock is ahead, when that login has expired by its clock but
/// not by the thief's replica's (or by the clock a step read before it waited for the lock).
/// The login is closed all the same: it cannot finish over the new PIN on the clock behind.
async fn a_new_pin_closes_logins_a_clock_behind_would_still_take(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    let stale = new_id();
    store
        .create_otp_challenge(ChallengeStep {
            login: Some(login()),
            audience: None,
            ..challenge_step("alice", &device, &stale, NOW - 10)
        })
        .await
        .unwrap();
    // Expires at NOW + 110; the owner's PIN update finishes at NOW + 119 by its clock.
    let start = DeviceOperation::StartPinUpdate {
        next: Some(pin_change("owner")),
    };
    operation(&store, &device, 3, Some(true), start)
        .await
        .unwrap();
    operation_over(
        &store,
        "owner",
        4,
        None,
        finish_change(b"new record"),
        NOW + 119,
    )
    .await
    .unwrap();
    let taken = store
        .issue_otp(IssueOtpStep {
            account: "alice".into(),
            challenge_id: stale,
            counter: 5,
            proof: OtpProof::Pin { ok: true },
            otp_mac: b"stale login".to_vec(),
            now: NOW + 100,
            otp_ttl: 120,
            pin_attempts: 5,
        })
        .await
        .map_err(api_error);
    assert_eq!(taken, Err(ApiError::SessionExpired));
    assert!(store
        .use_otp(b"stale login", NOW + 100, "rp")
        .await
        .unwrap()
        .is_none());
}

async fn a_pin_reset_consumes_its_code_and_unblocks_at_the_finish(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    for counter in 2..=6 {
        otp(
            &store,
            "alice",
            &device,
            counter,
            OtpProof::Pin { ok: false },
            b"x",
        )
        .await
        .unwrap_err();
    }
    assert_eq!(
        store.account("alice").await.unwrap().unwrap().pin_failures,
        5
    );
    let reset = |accept: bool, id: &str| DeviceOperation::StartPinReset {
        code: check(
            "alice",
            SmsPurpose::ResetPin,
            CodeTarget::TrustedNumber,
            accept,
        ),
        next: pin_change(id),
    };
    send_code(&store, "alice", SmsPurpose::ResetPin).await;
    assert!(matches!(
        operation(&store, &device, 7, None, reset(false, "r-1")).await,
        Err(ApiError::SmsCodeInvalid { .. })
    ));
    operation(&store, &device, 8, None, reset(true, "r-2"))
        .await
        .unwrap();
    // The start neither changed the PIN nor unblocked the account; the code is used up.
    let account = store.account("alice").await.unwrap().unwrap();
    assert_eq!(
        (account.pin_failures, account.pin_record.as_deref()),
        (5, Some(PIN_RECORD))
    );
    assert!(matches!(
        operation(&store, &device, 9, None, reset(true, "r-3")).await,
        Err(ApiError::SmsCodeInvalid { .. })
    ));
    let outcome = operation_over(&store, "r-2", 10, None, finish_change(b"reset record"), NOW)
        .await
        .unwrap();
    assert_eq!(outcome.pin_set_by, Some(PinOrigin::SmsRecovery));
    let account = store.account("alice").await.unwrap().unwrap();
    assert_eq!(account.pin_failures, 0);
    assert_eq!(account.pin_record.as_deref(), Some(&b"reset record"[..]));
    assert_eq!(account.pin_credential_id.as_deref(), Some("credential-r-2"));
    otp(&store, "alice", &device, 11, OtpProof::WithoutPin, b"after")
        .await
        .unwrap();
    let verified = store.use_otp(b"after", NOW, "rp").await.unwrap().unwrap();
    assert_eq!(
        (verified.pin_set_at, verified.pin_set_by),
        (Some(NOW), Some(PinOrigin::SmsRecovery))
    );
}

async fn recovery_by_sms_is_held_after_a_number_change(store: Arc<dyn Store>) {
    const NEW: &str = "+33699999999";
    let device = enrolled(&store, "alice").await;
    let target = CodeTarget::Number(NEW.into());
    store
        .prepare_sms_code(send_request(
            "alice",
            SmsPurpose::PhoneCertification,
            target.clone(),
            NOW,
        ))
        .await
        .unwrap();
    let outcome = operation(
        &store,
        &device,
        2,
        None,
        DeviceOperation::ModifyPhoneNumber {
            code: check("alice", SmsPurpose::PhoneCertification, target, true),
            phone_number: NEW.into(),
            recovery_hold: 300,
            restore_nonce: b"restore nonce".to_vec(),
        },
    )
    .await
    .unwrap();
    let change = outcome.number_change.unwrap();
    assert_eq!(
        (change.replaced.as_str(), change.restorable),
        (PHONE, Some((PHONE.to_string(), b"restore nonce".to_vec())))
    );
    assert_eq!(change.held_until, NOW + 300);
    send_code(&store, "alice", SmsPurpose::ResetPin).await;
    let reset = DeviceOperation::StartPinReset {
        code: check(
            "alice",
            SmsPurpose::ResetPin,
            CodeTarget::TrustedNumber,
            true,
        ),
        next: pin_change("held"),
    };
    assert_eq!(
        operation(&store, &device, 3, None, reset).await,
        Err(ApiError::RecoveryHeld {
            retry_after_seconds: 300
        })
    );
    // Removing everything does not lift the hold: a new PIN by SMS alone waits too.
    store.remove_enrollments("alice", NOW).await.unwrap();
    send_enrollment_code(&store, "alice").await;
    assert_eq!(
        store
            .start_enrollment(start_step("alice", &new_id(), None))
            .await
            .err()
            .map(api_error),
        Some(ApiError::RecoveryHeld {
            retry_after_seconds: 300
        })
    );
    let mut later = start_step("alice", &new_id(), None);
    later.now = NOW + 300;
    store.start_enrollment(later).await.unwrap();
}

async fn an_otp_verifies_only_for_its_audience_and_while_its_device_lives(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    otp(&store, "alice", &device, 2, OtpProof::WithoutPin, b"mac-1")
        .await
        .unwrap();
    otp(&store, "alice", &device, 3, OtpProof::WithoutPin, b"mac-2")
        .await
        .unwrap();
    // Another relying party gets nothing, and does not use the OTP up.
    assert_eq!(
        store.use_otp(b"mac-1", NOW, "other-rp").await.unwrap(),
        None
    );
    assert!(store.use_otp(b"mac-1", NOW, "rp").await.unwrap().is_some());
    store.revoke_device("alice", &device, NOW).await.unwrap();
    assert_eq!(store.use_otp(b"mac-2", NOW, "rp").await.unwrap(), None);
}

async fn a_device_holds_a_bounded_number_of_open_challenges(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    let step = |id: String, now: i64| ChallengeStep {
        account: "alice".into(),
        challenge_id: id,
        device_id: device.clone(),
        nonce: b"n".to_vec(),
        login: None,
        audience: None,
        now,
        ttl: 120,
        pin_attempts: 5,
        max_open: 3,
        login_counter: None,
    };
    for _ in 0..3 {
        store
            .create_otp_challenge(step(new_id(), NOW))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .create_otp_challenge(step(new_id(), NOW))
            .await
            .err()
            .map(api_error),
        Some(ApiError::RateLimited {
            retry_after_seconds: 120
        })
    );
    // Expired challenges no longer count.
    store
        .create_otp_challenge(step(new_id(), NOW + 120))
        .await
        .unwrap();
}

/// A number change by the device, with a certification code for `new` sent first.
async fn change_number(
    store: &Arc<dyn Store>,
    device: &str,
    counter: u64,
    pin_ok: Option<bool>,
    new: &str,
    nonce: &[u8],
) -> Result<OperationOutcome, ApiError> {
    let target = CodeTarget::Number(new.into());
    store
        .prepare_sms_code(send_request(
            "alice",
            SmsPurpose::PhoneCertification,
            target.clone(),
            NOW,
        ))
        .await
        .unwrap();
    operation(
        store,
        device,
        counter,
        pin_ok,
        DeviceOperation::ModifyPhoneNumber {
            code: check("alice", SmsPurpose::PhoneCertification, target, true),
            phone_number: new.into(),
            recovery_hold: 300,
            restore_nonce: nonce.to_vec(),
        },
    )
    .await
}

fn helpdesk_restore(now: i64) -> RestoreStep {
    RestoreStep {
        account: "alice".into(),
        by: RestoreBy::Helpdesk { by: "admin".into() },
        now,
    }
}

/// The thief's attack on the helpdesk: two changes (or a change to the same number), then a
/// restore. The number of before a change without the PIN is kept whatever happens during its
/// window, a change to the trusted number is refused, a further change needs the PIN; the
/// restore gives back that number only, ends the hold and disables every device.
async fn the_number_trusted_before_a_hold_is_the_only_one_restored(store: Arc<dyn Store>) {
    const B: &str = "+33699999999";
    const C: &str = "+33677777777";
    let device = enrolled(&store, "alice").await;
    let first = change_number(&store, &device, 2, None, B, b"first")
        .await
        .unwrap()
        .number_change
        .unwrap();
    assert_eq!(
        (first.replaced.as_str(), first.restorable.clone()),
        (PHONE, Some((PHONE.to_string(), b"first".to_vec())))
    );
    assert_eq!(
        change_number(&store, &device, 3, None, B, b"second").await,
        Err(ApiError::PhoneNumberRefused {
            reason: NumberRefusal::AlreadyTrusted
        })
    );
    assert_eq!(
        change_number(&store, &device, 4, None, C, b"second").await,
        Err(ApiError::RecoveryHeld {
            retry_after_seconds: 300
        })
    );
    assert_eq!(
        change_number(&store, &device, 5, Some(false), C, b"second").await,
        Err(ApiError::WrongPin {
            attempts_remaining: 4
        })
    );
    let account = store.account("alice").await.unwrap().unwrap();
    assert_eq!(
        (
            account.phone_number.as_deref(),
            account.pre_hold_phone_number.as_deref(),
            account.restore_nonce.as_deref()
        ),
        (Some(B), Some(PHONE), Some(&b"first"[..]))
    );

    let restored = store
        .restore_phone_number(helpdesk_restore(NOW))
        .await
        .unwrap();
    assert_eq!(
        (
            restored.phone_number.as_str(),
            restored.replaced.as_str(),
            restored.devices_disabled
        ),
        (PHONE, B, 1)
    );
    // The hold ends with the restore: the owner may start over at once.
    let account = store.account("alice").await.unwrap().unwrap();
    account.check_recovery_allowed(NOW).unwrap();
    assert_eq!(
        (
            account.phone_number.as_deref(),
            account.recovery_held_until,
            account.pre_hold_phone_number,
            account.restore_nonce
        ),
        (Some(PHONE), None, None, None)
    );
    assert_eq!(
        store.device("alice", &device).await.unwrap().unwrap().state,
        DeviceState::Disabled
    );
    assert_eq!(
        store
            .restore_phone_number(helpdesk_restore(NOW))
            .await
            .err()
            .map(api_error),
        Some(ApiError::NothingToRestore)
    );
    let trail = store.audit_trail(Some("alice"), 0, 100).await.unwrap();
    let restores: Vec<_> = trail
        .iter()
        .filter(|e| e.event == "phone_number_restored")
        .map(|e| e.detail.as_deref())
        .collect();
    assert_eq!(restores, [Some("admin, 1 devices disabled")]);
}

/// A change with the PIN proven is the owner's: nothing undoes it, not even in a window a
/// change without the PIN opened (which it closes), so whoever holds the number of before —
/// a SIM swapper, a thief who moved it earlier — cannot take it back. PIN recovery by SMS is
/// still held.
async fn a_change_with_the_pin_cannot_be_restored(store: Arc<dyn Store>) {
    const B: &str = "+33699999999";
    const C: &str = "+33677777777";
    let device = enrolled(&store, "alice").await;
    let owner = change_number(&store, &device, 2, Some(true), B, b"n1")
        .await
        .unwrap()
        .number_change
        .unwrap();
    assert_eq!(
        (owner.restorable.clone(), owner.closed_window_of.clone()),
        (None, None)
    );
    assert_eq!(
        store
            .restore_phone_number(helpdesk_restore(NOW))
            .await
            .err()
            .map(api_error),
        Some(ApiError::NothingToRestore)
    );
    let account = store.account("alice").await.unwrap().unwrap();
    assert_eq!(account.recovery_held_until, Some(NOW + 300));
    assert!(account.check_recovery_allowed(NOW).is_err());

    // A thief's change without the PIN opens a window; the owner's change with it closes it.
    change_number(&store, &device, 3, None, C, b"n2")
        .await
        .unwrap();
    let closing = change_number(&store, &device, 4, Some(true), PHONE, b"n3")
        .await
        .unwrap()
        .number_change
        .unwrap();
    assert_eq!(
        (
            closing.replaced.as_str(),
            closing.closed_window_of.as_deref(),
            closing.held_until
        ),
        (C, Some(B), NOW + 300)
    );
    assert_eq!(
        store
            .restore_phone_number(helpdesk_restore(NOW))
            .await
            .err()
            .map(api_error),
        Some(ApiError::NothingToRestore)
    );
}

/// Once the hold has ended there is nothing to restore: an old number never comes back.
async fn nothing_is_restored_after_the_hold(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    change_number(&store, &device, 2, None, "+33699999999", b"n")
        .await
        .unwrap();
    assert_eq!(
        store
            .restore_phone_number(helpdesk_restore(NOW + 300))
            .await
            .err()
            .map(api_error),
        Some(ApiError::NothingToRestore)
    );
    // An account never seen has nothing either, and is not created by asking.
    let mut unknown = helpdesk_restore(NOW);
    unknown.account = "nobody".into();
    assert_eq!(
        store
            .restore_phone_number(unknown)
            .await
            .err()
            .map(api_error),
        Some(ApiError::NothingToRestore)
    );
    assert_eq!(store.account("nobody").await.unwrap(), None);
}

/// The owner's own restore: the code is checked against the pre-hold number and the hold's
/// nonce; wrong guesses change nothing and use nothing up, so the owner's code still works.
async fn the_owner_restores_with_the_code_of_the_hold(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    change_number(&store, &device, 2, None, "+33699999999", b"the nonce")
        .await
        .unwrap();
    let owner = |accept: bool| RestoreStep {
        account: "alice".into(),
        by: RestoreBy::Owner {
            code: Arc::new(move |number: &str, nonce: &[u8]| {
                accept && number == PHONE && nonce == b"the nonce"
            }),
        },
        now: NOW,
    };
    for _ in 0..20 {
        assert_eq!(
            store
                .restore_phone_number(owner(false))
                .await
                .err()
                .map(api_error),
            Some(ApiError::RestoreCodeInvalid)
        );
    }
    assert_eq!(
        store.account("alice").await.unwrap().unwrap().phone_number,
        Some("+33699999999".into())
    );
    let restored = store.restore_phone_number(owner(true)).await.unwrap();
    assert_eq!(restored.phone_number, PHONE);
    // The code is used up with its nonce.
    assert_eq!(
        store
            .restore_phone_number(owner(true))
            .await
            .err()
            .map(api_error),
        Some(ApiError::NothingToRestore)
    );
    let trail = store.audit_trail(Some("alice"), 0, 100).await.unwrap();
    assert_eq!(
        trail
            .last()
            .map(|e| (e.event.as_str(), e.detail.as_deref())),
        Some(("phone_number_restored", Some("owner, 1 devices disabled")))
    );
}

/// Only what an operator disabled comes back: not a device its account revoked, the clone rule
/// disabled, or one an operator disabled before an account-wide step (a removal, a restore).
async fn only_an_operator_s_disable_is_undone(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    let second = enroll_another(&store, "alice").await.unwrap().device_id;
    activate(&store, "alice", &second, 1).await.unwrap();
    let pending = enroll_another(&store, "alice").await.unwrap().device_id;
    let not_re_enablable = |device: String| {
        let store = store.clone();
        async move {
            store
                .admin_enable_device("alice", &device, "admin", NOW)
                .await
                .err()
                .map(api_error)
        }
    };

    store.revoke_device("alice", &device, NOW).await.unwrap();
    assert_eq!(
        not_re_enablable(device.clone()).await,
        Some(ApiError::DeviceNotReEnablable)
    );
    // A device that never became active is not brought to life either.
    store
        .admin_disable_device("alice", &pending, "admin", "unknown phone", NOW)
        .await
        .unwrap();
    assert_eq!(
        not_re_enablable(pending).await,
        Some(ApiError::DeviceNotReEnablable)
    );
    store
        .admin_disable_device("alice", &second, "admin", "check", NOW)
        .await
        .unwrap();
    store.remove_enrollments("alice", NOW).await.unwrap();
    assert!(store
        .admin_list_devices("alice")
        .await
        .unwrap()
        .iter()
        .all(|d| !d.re_enablable));
    assert_eq!(
        not_re_enablable(second).await,
        Some(ApiError::DeviceNotReEnablable)
    );
}

async fn every_pin_attempt_is_audited_when_it_starts(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    // A login started and never finished still counts, and the trail shows it.
    store
        .create_otp_challenge(ChallengeStep {
            account: "alice".into(),
            challenge_id: new_id(),
            device_id: device.clone(),
            nonce: b"n".to_vec(),
            login: Some(login()),
            audience: None,
            now: NOW,
            ttl: 120,
            pin_attempts: 5,
            max_open: 10,
            login_counter: None,
        })
        .await
        .unwrap();
    let events = store.audit_trail(Some("alice"), 0, 100).await.unwrap();
    let attempts: Vec<_> = events
        .iter()
        .filter(|e| e.event == "pin_attempt")
        .map(|e| e.detail.clone())
        .collect();
    assert_eq!(attempts, vec![Some("attempt 1 of 5".to_string())]);
    assert_eq!(
        store.account("alice").await.unwrap().unwrap().pin_failures,
        1
    );
}

async fn a_device_operation_moves_the_trusted_number(store: Arc<dyn Store>) {
    const NEW: &str = "+33699999999";
    let device = enrolled(&store, "alice").await;
    let target = CodeTarget::Number(NEW.into());
    store
        .prepare_sms_code(send_request(
            "alice",
            SmsPurpose::PhoneCertification,
            target.clone(),
            NOW,
        ))
        .await
        .unwrap();
    operation(
        &store,
        &device,
        2,
        None,
        DeviceOperation::ModifyPhoneNumber {
            code: check("alice", SmsPurpose::PhoneCertification, target, true),
            phone_number: NEW.into(),
            recovery_hold: 0,
            restore_nonce: b"restore nonce".to_vec(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        store
            .account("alice")
            .await
            .unwrap()
            .unwrap()
            .phone_number
            .as_deref(),
        Some(NEW)
    );
}

async fn accounts_are_found_by_their_trusted_number(store: Arc<dyn Store>) {
    assert!(store
        .accounts_with_phone_number(PHONE)
        .await
        .unwrap()
        .is_empty());
    certify(&store, "bob").await;
    certify(&store, "alice").await;
    store.account("carol").await.unwrap();
    assert_eq!(
        store.accounts_with_phone_number(PHONE).await.unwrap(),
        ["alice", "bob"]
    );
    assert!(store
        .accounts_with_phone_number("+33699999999")
        .await
        .unwrap()
        .is_empty());
}

/// The helpdesk's search by the start of a subject: exact bytes on both databases (no case
/// folding, no LIKE wildcards), in order, bounded.
async fn accounts_are_found_by_a_subject_prefix(store: Arc<dyn Store>) {
    for subject in ["alice", "alice-2", "Alice-3", "al%ce", "bob"] {
        certify(&store, subject).await;
    }
    let found = |prefix: &'static str, limit: u32| {
        let store = store.clone();
        async move {
            store
                .accounts_with_subject_prefix(prefix, limit)
                .await
                .unwrap()
        }
    };
    assert_eq!(found("alice", 10).await, ["alice", "alice-2"]);
    assert_eq!(found("al", 10).await, ["al%ce", "alice", "alice-2"]);
    assert_eq!(found("al%", 10).await, ["al%ce"]);
    assert_eq!(found("a_i", 10).await, Vec::<String>::new());
    assert_eq!(found("al", 2).await, ["al%ce", "alice"]);
}

/// A step that fails internally (here a device id already taken, as a database error) leaves
/// nothing behind: its session stays open and its SMS code unused. Steps running beside it
/// (on SQLite, committed in the same batch) keep every write.
async fn an_internal_failure_undoes_its_own_step_only(store: Arc<dyn Store>) {
    enrolled(&store, "alice").await;
    send_enrollment_code(&store, "alice").await;
    let session = new_id();
    store
        .start_enrollment(start_step("alice", &session, Some(login())))
        .await
        .unwrap();
    let taken = store.admin_list_devices("alice").await.unwrap()[0]
        .id
        .clone();
    let mut clash = finish_step(
        "alice",
        &session,
        &new_id(),
        EnrollmentProof::Login { pin_ok: true },
    );
    clash.device.id = taken;

    let beside: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.remove_enrollments(&format!("user-{i}"), NOW).await })
        })
        .collect();
    let failed = store.finish_enrollment(clash).await;
    for step in beside {
        step.await.unwrap().unwrap();
    }
    assert!(
        matches!(failed, Err(pims_server::error::Error::Internal(_))),
        "{failed:?}"
    );
    for i in 0..16 {
        let trail = store
            .audit_trail(Some(&format!("user-{i}")), 0, 10)
            .await
            .unwrap();
        assert_eq!(trail.len(), 1, "user-{i}");
        assert_eq!(trail[0].event, "enrollments_removed");
    }

    // Nothing of the failed finish stayed: the same session finishes, consuming the same code.
    let finished = store
        .finish_enrollment(finish_step(
            "alice",
            &session,
            &new_id(),
            EnrollmentProof::Login { pin_ok: true },
        ))
        .await
        .unwrap();
    assert_eq!(finished.device_id, format!("device-of-{session}"));
    assert_eq!(store.admin_list_devices("alice").await.unwrap().len(), 2);
}

/// A thief with a cloned key keeps activating the device while its owner revokes it: each
/// activation either commits before the revocation or is refused after it; none brings the
/// device back. The reads warm each pooled connection's statements first, so on PostgreSQL
/// a step whose lock was still being prepared could run its read before the lock.
async fn a_revoked_device_stays_revoked_under_racing_activations(store: Arc<dyn Store>) {
    let device = enrolled(&store, "alice").await;
    for _ in 0..16 {
        store.device("alice", &device).await.unwrap();
    }
    let racers: Vec<_> = (2..34u64)
        .map(|counter| {
            let (store, device) = (store.clone(), device.clone());
            tokio::spawn(async move { activate(&store, "alice", &device, counter).await })
        })
        .collect();
    // A racer whose lower counter lands after a higher one disables the device first (a
    // replay); the revocation then finds it already disabled.
    match store.revoke_device("alice", &device, NOW).await {
        Ok(()) => {}
        Err(e) => assert_eq!(api_error(e), ApiError::DeviceUnknown),
    }
    for racer in racers {
        match racer.await.unwrap() {
            // Before the revocation, or refused after it (a lower counter than a racer's
            // already stored counts as a replay and disables too).
            Ok(false) | Err(ApiError::DeviceUnknown) => {}
            other => panic!("unexpected activation outcome {other:?}"),
        }
    }
    let record = store.device("alice", &device).await.unwrap().unwrap();
    assert_eq!(record.state, DeviceState::Disabled);
    assert_eq!(
        activate(&store, "alice", &device, 1_000).await,
        Err(ApiError::DeviceUnknown)
    );
}

async fn a_pin_proof_without_its_counted_attempt_enrolls_nothing(store: Arc<dyn Store>) {
    // A session started without a login (a first device, no PIN yet) counted no attempt: no
    // PIN proof may finish it.
    let session = first_enrollment_started(&store, "alice").await;
    let finished = store
        .finish_enrollment(finish_step(
            "alice",
            &session,
            &new_id(),
            EnrollmentProof::Login { pin_ok: true },
        ))
        .await;
    assert!(
        matches!(finished, Err(pims_server::error::Error::Internal(_))),
        "{finished:?}"
    );
    assert_eq!(
        store
            .device("alice", &format!("device-of-{session}"))
            .await
            .unwrap(),
        None
    );
}
