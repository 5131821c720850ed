//! The attacker suite of docs/THREAT-MODEL.md for recovery: a phone thief (the device key and
//! the app's token, not the PIN) who moves the trusted number, then tries to keep it through the
//! helpdesk's restore or the owner's own. Raw HTTP, never the SDK; every scenario runs on SQLite
//! and on PostgreSQL.

use pims_proto::endpoint::{self as ep, admin, Endpoint};
use pims_proto::*;
use pims_server::admin::{AccountView, RestoreAnswer};
use pims_server::config::AdminToken;
use pims_server::sms::{mask_number, read_outbox, restore_code_from_text, OutboxMessage};

use crate::common::*;
use crate::management::{modify_phone_number, PHONE2};

const PIN: &str = "4821";
/// Another number of the thief's.
const PHONE3: &str = "+33677777777";
const ADMIN: &str = "admin-token-admin-token-admin-token";

macro_rules! on_both_stores {
    ($name:ident, $scenario:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn on_sqlite() {
                $scenario(TestServer::start_with(with_admin).await).await;
            }

            #[tokio::test]
            async fn on_postgres() {
                if let Some(s) = TestServer::start_postgres(with_admin).await {
                    $scenario(s).await;
                }
            }
        }
    };
}

fn with_admin(c: &mut pims_server::config::ServerConfig) {
    c.admin_token = Some(AdminToken(ADMIN.into()));
}

fn sms_to(s: &TestServer, number: &str) -> Vec<OutboxMessage> {
    read_outbox(&s.outbox())
        .unwrap()
        .into_iter()
        .filter(|m| m.to == number)
        .collect()
}

/// The restore code of the newest change notice sent to `number`.
fn restore_code(s: &TestServer, number: &str) -> String {
    sms_to(s, number)
        .iter()
        .rev()
        .find_map(|m| restore_code_from_text(&m.text))
        .expect("a change notice with a restore code")
}

/// The thief certifies `number` (the code arrives on the thief's phone) and moves the trusted
/// number there with the stolen device, with or without a PIN.
async fn thief_moves_number(
    s: &TestServer,
    token: &str,
    thief: &mut Device,
    number: &str,
    pin: Option<&str>,
) -> Result<(), ApiError> {
    s.send_code(token, SmsPurpose::PhoneCertification, Some(number))
        .await?;
    let code = s.last_code(number);
    modify_phone_number(s, token, thief, number, &code, pin).await
}

async fn admin_restore(s: &TestServer, account: &str) -> Result<RestoreAnswer, ApiError> {
    let r = s
        .http
        .post(format!(
            "{}{}",
            s.url,
            admin::PHONE_NUMBER_RESTORE.path(&[account])
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    decode(r).await
}

async fn admin_view(s: &TestServer, account: &str) -> AccountView {
    let r = s
        .http
        .get(format!("{}{}", s.url, admin::ACCOUNT.path(&[account])))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    decode(r).await.unwrap()
}

async fn owner_restore(
    s: &TestServer,
    token: &str,
    code: &str,
) -> Result<PhoneNumberRestored, ApiError> {
    s.call::<ep::PhoneNumberRestore>(
        &[],
        token,
        &RestorePhoneNumber {
            restore_code: code.into(),
        },
    )
    .await
}

on_both_stores!(
    two_changes_then_a_restore_give_back_the_owner_s_number,
    two_changes_then_restore
);

/// The attack of issue 16: the thief moves the number (A → B), tries to move it again (to the
/// same number, or to another without the PIN), and the owner, warned on A, calls the helpdesk.
/// The helpdesk sees the hold and the number it would restore, and the restore gives back A —
/// never a number set during the hold — disables every device and keeps SMS-only PIN recovery
/// held, so the thief gets no PIN of its own.
async fn two_changes_then_restore(s: TestServer) {
    let (token, mut thief) = enrolled_account(&s, "victim", PHONE, PIN).await;
    thief_moves_number(&s, &token, &mut thief, PHONE2, None)
        .await
        .unwrap();
    // A → B → B: a change to the number already trusted is refused.
    assert_eq!(
        thief_moves_number(&s, &token, &mut thief, PHONE2, None).await,
        Err(ApiError::PhoneNumberRefused {
            reason: NumberRefusal::AlreadyTrusted
        })
    );
    // A → B → C without the PIN: refused while the hold runs.
    let hold = s.config.limits.recovery_hold_after_number_change_seconds;
    assert_eq!(
        thief_moves_number(&s, &token, &mut thief, PHONE3, None).await,
        Err(ApiError::RecoveryHeld {
            retry_after_seconds: hold
        })
    );
    assert_eq!(
        s.status(&token, None).await.phone_number.as_deref(),
        Some(PHONE2)
    );
    // A heard of the change once, with the code that undoes it.
    let to_owner = sms_to(&s, PHONE);
    let notice = to_owner.last().unwrap();
    assert!(
        notice.text.starts_with(&format!(
            "PIMS security notice: your trusted number was changed to {}.",
            mask_number(PHONE2)
        )),
        "{}",
        notice.text
    );
    assert!(restore_code_from_text(&notice.text).is_some());

    let view = admin_view(&s, "victim").await;
    let held_until = START + hold as i64;
    assert_eq!(
        (
            view.phone_number.as_deref(),
            view.recovery_hold
                .as_ref()
                .map(|h| (h.until, h.restorable_phone_number.as_deref()))
        ),
        (
            Some(mask_number(PHONE2).as_str()),
            Some((held_until, Some(mask_number(PHONE).as_str())))
        )
    );

    let answer = admin_restore(&s, "victim").await.unwrap();
    assert_eq!(
        (
            answer.phone_number.as_str(),
            answer.recovery_held_until,
            answer.devices_disabled
        ),
        (mask_number(PHONE).as_str(), held_until, 1)
    );
    assert_eq!(
        s.status(&token, None).await.phone_number.as_deref(),
        Some(PHONE)
    );
    // Both numbers are told: A that it is trusted again, B that it was replaced.
    for number in [PHONE, PHONE2] {
        assert_eq!(
            sms_to(&s, number).last().unwrap().text,
            pims_server::sms::Notice::PhoneNumberRestored.text()
        );
    }
    // The thief's device is dead, and a PIN of its choosing is still held.
    assert_eq!(
        s.otp(&token, &mut thief, None).await.err(),
        Some(ApiError::DeviceUnknown)
    );
    decode_empty(
        s.at(ep::EnrollmentsRemove::ROUTE, &[], &token)
            .send()
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(matches!(
        s.enroll(&token, "1111").await,
        Err(ApiError::RecoveryHeld { .. })
    ));
    // Nothing more to restore; the view says so.
    assert_eq!(
        admin_restore(&s, "victim").await.err(),
        Some(ApiError::NothingToRestore)
    );
    let view = admin_view(&s, "victim").await;
    assert_eq!(
        view.recovery_hold
            .map(|h| (h.until, h.restorable_phone_number)),
        Some((held_until, None))
    );
}

on_both_stores!(
    a_thief_who_knows_the_pin_moving_again_still_loses_to_the_restore,
    pin_proven_change_during_the_hold
);

/// A further change during the hold with the PIN proven goes through, and tells the number of
/// before the hold again (with the same code); the restore still gives back that number.
async fn pin_proven_change_during_the_hold(s: TestServer) {
    let (token, mut device) = enrolled_account(&s, "victim", PHONE, PIN).await;
    thief_moves_number(&s, &token, &mut device, PHONE2, None)
        .await
        .unwrap();
    let first_code = restore_code(&s, PHONE);
    thief_moves_number(&s, &token, &mut device, PHONE3, Some(PIN))
        .await
        .unwrap();
    let notices: Vec<_> = sms_to(&s, PHONE)
        .iter()
        .filter_map(|m| restore_code_from_text(&m.text))
        .collect();
    assert_eq!(notices, [first_code.clone(), first_code]);
    // B, set during the hold, is told it was replaced, and gets no code.
    let to_b = sms_to(&s, PHONE2);
    assert_eq!(
        to_b.last().unwrap().text,
        pims_server::sms::Notice::PhoneNumberChanged.text()
    );
    let answer = admin_restore(&s, "victim").await.unwrap();
    assert_eq!(answer.phone_number, mask_number(PHONE));
}

on_both_stores!(
    the_thief_can_neither_block_nor_undo_the_owner_s_own_restore,
    owner_restores_despite_the_thief
);

/// The owner's way back without the helpdesk: the code of the change notice, typed in the app
/// on any phone with the owner's login. The thief, holding the phone, the token and the new
/// number, guesses codes and spends the old number's SMS budget first: neither uses the owner's
/// code up. After the restore the thief can neither undo it nor set a PIN; the owner enrolls a
/// new phone with the PIN.
async fn owner_restores_despite_the_thief(s: TestServer) {
    let (token, mut thief) = enrolled_account(&s, "victim", PHONE, PIN).await;
    thief_moves_number(&s, &token, &mut thief, PHONE2, None)
        .await
        .unwrap();
    let sent_to_owner = sms_to(&s, PHONE).len();
    for guess in 0..30 {
        assert_eq!(
            owner_restore(&s, &token, &format!("AAAA-AAAA-{guess:04}"))
                .await
                .err(),
            Some(ApiError::RestoreCodeInvalid)
        );
    }
    // Codes of the wrong shape say so without touching the store.
    assert_eq!(
        owner_restore(&s, &token, "").await.err(),
        Some(ApiError::InvalidParameter {
            name: "restoreCode".into()
        })
    );
    // The old number's budget, spent on certification codes: the owner needs no new SMS.
    let mut spent = 0;
    while s
        .send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE))
        .await
        .is_ok()
    {
        spent += 1;
        assert!(spent < 100, "the number's budget has a limit");
    }
    assert_eq!(sms_to(&s, PHONE).len(), sent_to_owner + spent);

    let owner_token = s.token("victim").await;
    let code = restore_code(&s, PHONE).to_lowercase();
    let restored = owner_restore(&s, &owner_token, &code).await.unwrap();
    assert_eq!(restored.phone_number, PHONE);
    assert_eq!(
        restored.recovery_held_until,
        START + s.config.limits.recovery_hold_after_number_change_seconds as i64
    );

    // The thief cannot undo it: the device is disabled, the code is used up.
    assert_eq!(
        modify_phone_number(&s, &token, &mut thief, PHONE2, "000000", None).await,
        Err(ApiError::DeviceUnknown)
    );
    assert_eq!(
        owner_restore(&s, &token, &code).await.err(),
        Some(ApiError::NothingToRestore)
    );
    // The owner's new phone enrolls with the PIN, once the account's SMS budget the thief
    // spent is back (an access-token holder's denial of service, docs/THREAT-MODEL.md).
    s.clock.advance(3600);
    let owner_token = s.token("victim").await;
    let mut phone = s.enroll(&owner_token, PIN).await.unwrap();
    s.activate(&owner_token, &mut phone).await.unwrap();
    s.otp(&owner_token, &mut phone, Some(PIN)).await.unwrap();
}

/// Who may call the owner's restore: only a holder of the account's token (another account's
/// token restores nothing of it), and only the operation the endpoint table declares.
#[tokio::test]
async fn another_account_cannot_restore_a_victim_s_number() {
    let s = TestServer::start().await;
    let (token, mut thief) = enrolled_account(&s, "victim", PHONE, PIN).await;
    thief_moves_number(&s, &token, &mut thief, PHONE2, None)
        .await
        .unwrap();
    let code = restore_code(&s, PHONE);
    let stranger = s.token("stranger").await;
    assert_eq!(
        owner_restore(&s, &stranger, &code).await.err(),
        Some(ApiError::NothingToRestore)
    );
    assert_eq!(
        s.status(&token, None).await.phone_number.as_deref(),
        Some(PHONE2)
    );
    assert_eq!(ep::PhoneNumberRestore::ROUTE.caller, ep::Caller::Device);
}
