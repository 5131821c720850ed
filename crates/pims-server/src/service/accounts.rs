use pims_proto::{AccountStatus, ApiError, PinState};

use super::{phone, Service};
use crate::error::Result;
use crate::store::{pin_blocked, AccountRecord, CodeCheck, CodeTarget};

impl Service {
    /// `GET /v1/account`. Reads only: an account never seen reads as a fresh one.
    pub async fn account_status(
        &self,
        account: &str,
        device_id: Option<&str>,
    ) -> Result<AccountStatus> {
        let now = self.now();
        let record = self.store.account(account).await?.unwrap_or_default();
        let device = match device_id {
            Some(id) => self
                .store
                .device(account, id)
                .await?
                .and_then(|d| d.live_state(now, self.limits.pending_device_ttl_seconds)),
            None => None,
        };
        Ok(status_of(&record, self.limits.pin_attempts, device, now))
    }

    /// `POST /v1/phone-number`.
    pub async fn add_phone_number(
        &self,
        account: &str,
        number: &str,
        region: Option<&str>,
        sms_code: &str,
    ) -> Result<()> {
        let number = phone::parse_e164(number, region)?;
        let purpose = pims_proto::SmsPurpose::PhoneCertification;
        let check = CodeCheck {
            account: account.to_string(),
            purpose,
            target: CodeTarget::Number(number.clone()),
            matcher: self.code_matcher(account, purpose, sms_code),
            now: self.now(),
            max_checks: self.limits.sms_code_max_checks,
        };
        self.store.add_phone_number(check, number).await?;
        tracing::info!("trusted phone number added");
        Ok(())
    }
}

/// The account's status as both the SDK and operators read it (the PIN state from the lockout's
/// own rule).
pub(super) fn status_of(
    record: &AccountRecord,
    limit: u32,
    device: Option<pims_proto::DeviceState>,
    now: i64,
) -> AccountStatus {
    let pin = if pin_blocked(record.pin_failures, limit) {
        PinState::Blocked
    } else if record.pin_record.is_some() {
        PinState::Set
    } else {
        PinState::NotSet
    };
    AccountStatus {
        phone_number: record.phone_number.clone(),
        pin,
        pin_attempts_remaining: limit.saturating_sub(record.pin_failures),
        device,
        recovery_held_until: record.recovery_held_until.filter(|until| *until > now),
    }
}

/// Checked lengths of identifiers coming from clients.
pub(crate) fn check_id(value: &str, name: &str) -> std::result::Result<(), ApiError> {
    if value.is_empty() || value.len() > 128 || value.chars().any(char::is_control) {
        return Err(ApiError::InvalidParameter { name: name.into() });
    }
    Ok(())
}
