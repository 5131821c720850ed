use pims_proto::endpoint as ep;
use pims_proto::*;

use crate::common::*;

fn invalid(expired: bool, attempts_remaining: u32) -> ApiError {
    ApiError::SmsCodeInvalid {
        expired,
        attempts_remaining,
    }
}

#[tokio::test]
async fn certified_number_becomes_trusted_in_e164() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    let sent = s
        .send_code(
            &token,
            SmsPurpose::PhoneCertification,
            Some("+33 6 12 34 56 78"),
        )
        .await
        .unwrap();
    assert_eq!(sent.expires_in_seconds, 600);
    let msgs = pims_server::sms::read_outbox(&s.outbox()).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].to, PHONE);
    assert_eq!(msgs[0].sent_at, START);
    let code = s.last_code(PHONE);
    assert_eq!(code.len(), 6);
    assert_eq!(
        msgs[0].text,
        format!("Your PIMS code is {code}\n\n@pims.example #{code}\nPIMSAPPHASH")
    );
    s.add_phone(&token, "+33612345678", &code).await.unwrap();
    assert_eq!(
        s.status(&token, None).await.phone_number.as_deref(),
        Some(PHONE)
    );
    // Used up: a second attempt with the same code fails, and the account has its number.
    assert_eq!(
        s.add_phone(&token, PHONE, &code).await,
        Err(ApiError::PhoneNumberAlreadyRegistered)
    );
}

#[tokio::test]
async fn malformed_numbers_are_invalid_parameters() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    for bad in ["0612345678", "+33", "not a number"] {
        assert_eq!(
            s.send_code(&token, SmsPurpose::PhoneCertification, Some(bad))
                .await,
            Err(ApiError::InvalidParameter {
                name: "phoneNumber".into()
            })
        );
    }
    assert_eq!(
        s.send_code(&token, SmsPurpose::PhoneCertification, None)
            .await,
        Err(ApiError::InvalidParameter {
            name: "phoneNumber".into()
        })
    );
}

#[tokio::test]
async fn enrollment_code_needs_a_trusted_number() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    assert_eq!(
        s.send_code(&token, SmsPurpose::Enrollment, None).await,
        Err(ApiError::NoPhoneNumber)
    );
}

#[tokio::test]
async fn sms_code_expires_after_its_lifetime() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .unwrap();
    let code = s.last_code(PHONE);
    s.clock.advance(600);
    assert_eq!(
        s.add_phone(&token, PHONE, &code).await,
        Err(invalid(true, 0))
    );
}

#[tokio::test]
async fn sms_code_still_works_just_before_expiry() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .unwrap();
    s.clock.advance(599);
    s.add_phone(&token, PHONE, &s.last_code(PHONE))
        .await
        .unwrap();
}

#[tokio::test]
async fn sms_code_dies_after_the_check_limit() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .unwrap();
    let code = s.last_code(PHONE);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for remaining in [4, 3, 2, 1, 0] {
        assert_eq!(
            s.add_phone(&token, PHONE, wrong).await,
            Err(invalid(false, remaining))
        );
    }
    // The right code no longer helps.
    assert_eq!(
        s.add_phone(&token, PHONE, &code).await,
        Err(invalid(false, 0))
    );
    // A new send creates a new code, which works.
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .unwrap();
    s.add_phone(&token, PHONE, &s.last_code(PHONE))
        .await
        .unwrap();
}

#[tokio::test]
async fn checks_count_right_answers_too() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.certify_phone(&token, PHONE).await;
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    let code = s.last_code(PHONE);
    let check = CheckSmsCode {
        purpose: SmsPurpose::Enrollment,
        sms_code: code.clone(),
    };
    for _ in 0..5 {
        let checked: SmsCodeChecked = s
            .call::<ep::SmsCodeCheck>(&[], &token, &check)
            .await
            .unwrap();
        assert_eq!(checked.enrollment_status, EnrollmentStatus::NotEnrolled);
    }
    assert_eq!(
        s.call::<ep::SmsCodeCheck>(&[], &token, &check).await,
        Err(invalid(false, 0))
    );
}

#[tokio::test]
async fn resend_while_valid_sends_the_same_code_with_the_same_expiry() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .unwrap();
    let first = s.last_code(PHONE);
    s.clock.advance(100);
    let again = s
        .send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .unwrap();
    assert_eq!(again.expires_in_seconds, 500);
    assert_eq!(s.last_code(PHONE), first);
    assert_eq!(pims_server::sms::read_outbox(&s.outbox()).unwrap().len(), 2);
    // After expiry a send makes a new code, which is the one accepted.
    s.clock.advance(500);
    let fresh = s
        .send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .unwrap();
    assert_eq!(fresh.expires_in_seconds, 600);
    s.add_phone(&token, PHONE, &s.last_code(PHONE))
        .await
        .unwrap();
}

#[tokio::test]
async fn sends_are_limited_per_account_and_per_number_per_hour() {
    let s = TestServer::start().await;
    let alice = s.token("alice").await;
    for _ in 0..10 {
        s.send_code(&alice, SmsPurpose::PhoneCertification, Some(PHONE))
            .await
            .unwrap();
        s.clock.advance(60);
    }
    // 10 sends in the last hour: the oldest leaves the window 3600 - 600 s from now.
    let limited = Err(ApiError::RateLimited {
        retry_after_seconds: 3000,
    });
    // Per account, whatever the number.
    assert_eq!(
        s.send_code(&alice, SmsPurpose::PhoneCertification, Some("+33612345679"))
            .await,
        limited
    );
    // Per number, whatever the account.
    let bob = s.token("bob").await;
    assert_eq!(
        s.send_code(&bob, SmsPurpose::PhoneCertification, Some(PHONE))
            .await,
        limited
    );
    // Refused sends are not counted; once the oldest send leaves the window, one more is allowed.
    s.clock.advance(3000);
    let bob = s.token("bob").await;
    s.send_code(&bob, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .unwrap();
    assert_eq!(
        s.send_code(&bob, SmsPurpose::PhoneCertification, Some(PHONE))
            .await,
        Err(ApiError::RateLimited {
            retry_after_seconds: 60
        })
    );
    assert_eq!(
        pims_server::sms::read_outbox(&s.outbox()).unwrap().len(),
        11
    );
}

#[tokio::test]
async fn database_holds_no_code() {
    let s = TestServer::start().await;
    let token = s.token("alice").await;
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .unwrap();
    let code = s.last_code(PHONE);
    let dump: Vec<u8> = std::fs::read(&s.config.database_path).unwrap();
    let wal =
        std::fs::read(s.config.database_path.with_extension("sqlite3-wal")).unwrap_or_default();
    let hay = [dump, wal].concat();
    assert!(!hay.windows(code.len()).any(|w| w == code.as_bytes()));
}
