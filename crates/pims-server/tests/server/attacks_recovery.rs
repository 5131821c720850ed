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
use crate::management::{modify_phone_number, modify_phone_number_request, move_number, PHONE2};

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
/// never a number set during the window — disables every device and ends the hold: every code
/// now goes to A, so the thief gets no PIN of its own.
async fn two_changes_then_restore(s: TestServer) {
    let (token, mut thief) = enrolled_account(&s, "victim", PHONE, PIN).await;
    move_number(&s, &token, &mut thief, PHONE2, None)
        .await
        .unwrap();
    // A → B → B: a change to the number already trusted is refused.
    assert_eq!(
        move_number(&s, &token, &mut thief, PHONE2, None).await,
        Err(ApiError::PhoneNumberRefused {
            reason: NumberRefusal::AlreadyTrusted
        })
    );
    // A → B → C without the PIN: refused while the hold runs.
    let hold = s.config.limits.recovery_hold_after_number_change_seconds;
    assert_eq!(
        move_number(&s, &token, &mut thief, PHONE3, None).await,
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
        (answer.phone_number.as_str(), answer.devices_disabled),
        (mask_number(PHONE).as_str(), 1)
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
    // The thief's device is dead; the hold is over, and every code goes to the owner's number.
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
    let to_thief = sms_to(&s, PHONE2).len();
    s.send_code(&token, SmsPurpose::Enrollment, None)
        .await
        .unwrap();
    assert_eq!(sms_to(&s, PHONE2).len(), to_thief);
    assert!(sms_to(&s, PHONE)
        .last()
        .is_some_and(|m| pims_server::sms::code_from_text(&m.text).is_some()));
    // Nothing more to restore, and no hold: the view says so.
    assert_eq!(
        admin_restore(&s, "victim").await.err(),
        Some(ApiError::NothingToRestore)
    );
    assert!(admin_view(&s, "victim").await.recovery_hold.is_none());
}

on_both_stores!(
    a_change_with_the_pin_is_never_undone_by_whoever_holds_the_number_of_before,
    change_with_the_pin
);

/// The owner moves the number with the PIN (say, after losing the old SIM): the old number is
/// told, without a code, and no restore can give it back — a SIM swapper holding it (with the
/// owner's login) gets nothing. And when a thief moved the number without the PIN first, the
/// owner's change with the PIN closes that window: the thief's number is told and gets no code.
async fn change_with_the_pin(s: TestServer) {
    let (token, mut device) = enrolled_account(&s, "victim", PHONE, PIN).await;
    move_number(&s, &token, &mut device, PHONE2, Some(PIN))
        .await
        .unwrap();
    let told = sms_to(&s, PHONE);
    let notice = &told.last().unwrap().text;
    assert_eq!(notice, &pims_server::sms::Notice::PhoneNumberChanged.text());
    assert_eq!(restore_code_from_text(notice), None);
    assert_eq!(
        admin_restore(&s, "victim").await.err(),
        Some(ApiError::NothingToRestore)
    );
    assert_eq!(
        owner_restore(&s, &token, "AAAA-AAAA-AAAA").await.err(),
        Some(ApiError::NothingToRestore)
    );
    // PIN recovery by SMS is still held after any change.
    assert!(matches!(
        s.send_code(&token, SmsPurpose::ResetPin, None).await,
        Err(ApiError::RecoveryHeld { .. })
    ));

    // Later (the hold over), a thief moves it without the PIN: a window opens with a code to
    // the owner's number; the owner, with the PIN, moves it to a new number of their own.
    s.clock
        .advance(s.config.limits.recovery_hold_after_number_change_seconds as i64);
    let token = s.token("victim").await;
    move_number(&s, &token, &mut device, PHONE3, None)
        .await
        .unwrap();
    let owner_code = restore_code(&s, PHONE2);
    move_number(&s, &token, &mut device, PHONE, Some(PIN))
        .await
        .unwrap();
    assert_eq!(
        sms_to(&s, PHONE3).last().unwrap().text,
        pims_server::sms::Notice::PhoneNumberChanged.text()
    );
    assert_eq!(
        owner_restore(&s, &token, &owner_code).await.err(),
        Some(ApiError::NothingToRestore)
    );
    assert_eq!(
        s.status(&token, None).await.phone_number.as_deref(),
        Some(PHONE)
    );
}

on_both_stores!(
    the_thief_can_neither_block_nor_undo_the_owner_s_own_restore,
    owner_restores_despite_the_thief
);

/// The owner's way back without the helpdesk: the code of the change notice, typed in the app
/// on any phone with the owner's login. The thief, holding the phone, the token and the new
/// number, guesses codes and spends the old number's SMS budget first: neither uses the owner's
/// code up. After the restore the thief can neither undo it nor set a PIN; even when it removes
/// every enrollment with the token, the owner enrolls a new phone with a new PIN at once.
async fn owner_restores_despite_the_thief(s: TestServer) {
    let (token, mut thief) = enrolled_account(&s, "victim", PHONE, PIN).await;
    move_number(&s, &token, &mut thief, PHONE2, None)
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

    // The thief cannot undo it: the device is disabled, the code is used up.
    assert_eq!(
        modify_phone_number(&s, &token, &mut thief, PHONE2, "000000", None).await,
        Err(ApiError::DeviceUnknown)
    );
    assert_eq!(
        owner_restore(&s, &token, &code).await.err(),
        Some(ApiError::NothingToRestore)
    );
    // The thief removes every enrollment and the PIN with the token; the hold is over, so the
    // owner's new phone enrolls with a new PIN at once — once the account's SMS budget the
    // thief spent is back (an access-token holder's denial of service, docs/THREAT-MODEL.md).
    decode_empty(
        s.at(ep::EnrollmentsRemove::ROUTE, &[], &token)
            .send()
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    s.clock.advance(3600);
    let owner_token = s.token("victim").await;
    let mut phone = s.enroll(&owner_token, "2468").await.unwrap();
    s.activate(&owner_token, &mut phone).await.unwrap();
    s.otp(&owner_token, &mut phone, Some("2468")).await.unwrap();
}

/// Who may call the owner's restore: only a holder of the account's token (another account's
/// token restores nothing of it), and only the operation the endpoint table declares.
#[tokio::test]
async fn another_account_cannot_restore_a_victim_s_number() {
    let s = TestServer::start().await;
    let (token, mut thief) = enrolled_account(&s, "victim", PHONE, PIN).await;
    move_number(&s, &token, &mut thief, PHONE2, None)
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

on_both_stores!(
    a_thief_who_hangs_up_mid_request_still_has_its_change_announced,
    change_then_hang_up
);

/// The thief sends its number change and closes the connection at once, hoping the server
/// commits the change but drops the request before the notice: the owner would have no code.
/// Every change that commits is announced with its code.
async fn change_then_hang_up(s: TestServer) {
    use tokio::io::AsyncWriteExt;
    let (token, mut thief) = enrolled_account(&s, "victim", PHONE, PIN).await;
    let mut committed = false;
    // One code: an attempt that never reached the store leaves it unused.
    s.send_code(&token, SmsPurpose::PhoneCertification, Some(PHONE2))
        .await
        .unwrap();
    let code = s.last_code(PHONE2);
    for attempt in 0..10 {
        let req = modify_phone_number_request(&s, &token, &mut thief, PHONE2, &code, None)
            .await
            .unwrap();
        let body = serde_json::to_vec(&req).unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: pims\r\nAuthorization: Bearer {token}\r\n\
             {PROTOCOL_HEADER}: {PROTOCOL_VERSION}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            ep::PhoneNumberModify::ROUTE.path(&[]),
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        drop(stream);
        // Whatever the server made of it, give it time to finish.
        for _ in 0..40 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if s.status(&token, None).await.phone_number.as_deref() == Some(PHONE2) {
                committed = true;
                break;
            }
        }
        if committed {
            let mut told = false;
            for _ in 0..40 {
                told = sms_to(&s, PHONE)
                    .iter()
                    .any(|m| restore_code_from_text(&m.text).is_some());
                if told {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(
                told,
                "attempt {attempt}: the change committed, the owner was never told"
            );
            break;
        }
    }
    assert!(committed, "no attempt reached the server");
}
