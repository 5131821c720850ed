//! Purging expired rows: exactly the expired ones go, the live ones still work.

use pims_server::audit::{verify, Verification};

use super::*;

store_suite!(a_purge_deletes_exactly_what_expired);

/// Long after everything created at `NOW` expired (pending devices and idempotency included).
const P: i64 = NOW + 100_000;
const PHONE2: &str = "+33698765432";

fn purge_step(now: i64) -> PurgeStep {
    PurgeStep {
        now,
        expired_grace: 3600,
        idempotency_ttl: 86_400,
        pending_device_ttl: 86_400,
        sms_send_window: SMS_SEND_WINDOW_SECONDS,
    }
}

fn issue(account: &str, challenge: &str, counter: u64, mac: &[u8], now: i64) -> IssueOtpStep {
    IssueOtpStep {
        account: account.into(),
        challenge_id: challenge.into(),
        counter,
        proof: OtpProof::WithoutPin,
        otp_mac: mac.to_vec(),
        now,
        otp_ttl: 120,
        pin_attempts: 5,
    }
}

/// An enrollment session of alice's started at `now` against her PIN.
async fn live_session(store: &Arc<dyn Store>, now: i64) -> String {
    store
        .prepare_sms_code(send_request(
            "alice",
            SmsPurpose::Enrollment,
            CodeTarget::TrustedNumber,
            now,
        ))
        .await
        .unwrap();
    let session = new_id();
    store
        .start_enrollment(StartEnrollmentStep {
            now,
            ..start_step("alice", &session, Some(login()))
        })
        .await
        .unwrap();
    session
}

async fn a_purge_deletes_exactly_what_expired(store: Arc<dyn Store>) {
    // Expired by P: everything of two enrollments, a second device that never confirmed, an
    // OTP and its challenge, and a device that was revoked (which must stay).
    let alice = enrolled(&store, "alice").await;
    let pending = enroll_another(&store, "alice").await.unwrap().device_id;
    otp(&store, "alice", &alice, 2, OtpProof::WithoutPin, b"old otp")
        .await
        .unwrap();
    // A number change whose 300 s hold has ended by P: the number it kept goes.
    change_number(&store, &alice, 3, None, PHONE2, b"nonce")
        .await
        .unwrap();
    let carol = enrolled(&store, "carol").await;
    store.revoke_device("carol", &carol, NOW).await.unwrap();

    // Live at P: a certification code for bob, an enrollment finished (Pending device and
    // idempotency outcome) and one open, an issued OTP, an open challenge.
    store
        .prepare_sms_code(send_request(
            "bob",
            SmsPurpose::PhoneCertification,
            CodeTarget::Number(PHONE2.into()),
            P - 10,
        ))
        .await
        .unwrap();
    let finished = live_session(&store, P - 10).await;
    let key = new_id();
    let live_pending = store
        .finish_enrollment(FinishEnrollmentStep {
            now: P - 10,
            ..finish_step(
                "alice",
                &finished,
                &key,
                EnrollmentProof::Login { pin_ok: true },
            )
        })
        .await
        .unwrap()
        .device_id;
    let open = live_session(&store, P - 10).await;
    store
        .create_otp_challenge(challenge_step("alice", &alice, "answered", P - 10))
        .await
        .unwrap();
    store
        .issue_otp(issue("alice", "answered", 4, b"live otp", P - 10))
        .await
        .unwrap();
    store
        .create_otp_challenge(challenge_step("alice", &alice, "open", P - 10))
        .await
        .unwrap();
    // Expired, but within the grace: still reads "expired".
    store
        .prepare_sms_code(send_request(
            "dave",
            SmsPurpose::PhoneCertification,
            CodeTarget::Number(PHONE2.into()),
            P - 1000,
        ))
        .await
        .unwrap();
    let audit_rows = store.audit_trail(None, 0, 1000).await.unwrap();

    let counts = store.purge(purge_step(P)).await.unwrap();
    assert_eq!(
        counts,
        PurgeCounts {
            // alice: certification, two enrollments, the new number; carol: certification,
            // one enrollment
            sms_codes: 6,
            sms_sends: 6,
            enrollment_sessions: 3,
            idempotency: 3,
            // the OTP's and the number change's
            otp_challenges: 2,
            otps: 1,
            pending_devices: 1,
            ended_holds: 1,
        }
    );
    assert_eq!(counts.total(), 23);
    let account = store.account("alice").await.unwrap().unwrap();
    assert_eq!(
        (
            account.phone_number.as_deref(),
            account.pre_hold_phone_number,
            account.restore_nonce
        ),
        (Some(PHONE2), None, None)
    );
    assert_eq!(
        store.purge(purge_step(P)).await.unwrap(),
        PurgeCounts::default()
    );

    // Gone: the expired Pending device and the expired OTP.
    assert_eq!(store.device("alice", &pending).await.unwrap(), None);
    assert_eq!(store.use_otp(b"old otp", NOW, "rp").await.unwrap(), None);
    // Kept: Active and Disabled devices, the whole audit trail.
    let state = |d: Option<DeviceRecord>| d.map(|d| d.state);
    assert_eq!(
        state(store.device("alice", &alice).await.unwrap()),
        Some(DeviceState::Active)
    );
    assert_eq!(
        state(store.device("carol", &carol).await.unwrap()),
        Some(DeviceState::Disabled)
    );
    assert_eq!(store.audit_trail(None, 0, 1000).await.unwrap(), audit_rows);
    assert!(matches!(
        verify(store.as_ref(), &audit_key(), None).await.unwrap(),
        Verification::Verified { .. }
    ));

    // Live rows still work.
    assert!(store
        .enrollment_session("alice", &open, P)
        .await
        .unwrap()
        .is_some());
    assert!(matches!(
        store.idempotent_outcome("alice", &key).await.unwrap(),
        Some((_, StoredOutcome::Ok(f))) if f.device_id == live_pending
    ));
    let listed: Vec<String> = store
        .list_devices("alice", P, 86_400)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, vec![alice.clone(), live_pending]);
    let used = store.use_otp(b"live otp", P, "rp").await.unwrap().unwrap();
    assert_eq!((used.subject.as_str(), used.issued_at), ("alice", P - 10));
    store
        .issue_otp(issue("alice", "open", 5, b"answer", P))
        .await
        .unwrap();
    store
        .add_phone_number(
            CodeCheck {
                now: P,
                ..check(
                    "bob",
                    SmsPurpose::PhoneCertification,
                    CodeTarget::Number(PHONE2.into()),
                    true,
                )
            },
            PHONE2.into(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.account("bob").await.unwrap().unwrap().phone_number,
        Some(PHONE2.to_string())
    );
    let late = store
        .check_sms_code(CodeCheck {
            now: P,
            ..check(
                "dave",
                SmsPurpose::PhoneCertification,
                CodeTarget::Number(PHONE2.into()),
                true,
            )
        })
        .await
        .err()
        .map(api_error);
    assert_eq!(
        late,
        Some(ApiError::SmsCodeInvalid {
            expired: true,
            attempts_remaining: 0
        })
    );
}
