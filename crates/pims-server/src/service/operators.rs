//! The operators' door: what the admin API and the helpdesk console may do, once. Both are thin
//! callers of these methods (the store is private to the service), so the two cannot differ in
//! what an action checks, changes or audits.

use pims_proto::{AccountStatus, ApiError};

use super::accounts::status_of;
use super::{phone, Service};
use crate::error::{api, Result};
use crate::store::{AdminDeviceSummary, AuditEvent, AuditQuery, RestoreBy, Restored};

/// The longest list of accounts a search answers.
pub const FOUND_AT_MOST: u32 = 50;

/// Who acts, as the audit trail names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// The admin API's bearer token.
    Admin,
    /// A console operator, by the subject of their sign-in.
    Console(String),
}

impl Operator {
    pub fn audit_name(&self) -> String {
        match self {
            Operator::Admin => "admin".into(),
            Operator::Console(subject) => format!("console operator {subject}"),
        }
    }
}

/// An account as an operator sees it: its status as the SDK reads it (numbers in E.164: each
/// door masks them), the recovery hold, every device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorAccount {
    pub account: String,
    pub status: AccountStatus,
    pub recovery_hold: Option<OperatorHold>,
    pub devices: Vec<AdminDeviceSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorHold {
    /// Unix seconds.
    pub until: i64,
    /// The number a restore gives back; `None` once it is trusted again.
    pub restorable_phone_number: Option<String>,
}

impl Service {
    /// The accounts a query names, at most [`FOUND_AT_MOST`]: a phone number as people type it
    /// (international, or national in `region`, spaces and all: every account that trusts it),
    /// else the subjects that start with it.
    pub async fn find_accounts(&self, query: &str, region: Option<&str>) -> Result<Vec<String>> {
        let query = query.trim();
        if query.is_empty() {
            return Ok(Vec::new());
        }
        if let Ok(number) = phone::parse_e164(query, region) {
            let mut found = self.store.accounts_with_phone_number(&number).await?;
            found.truncate(FOUND_AT_MOST as usize);
            return Ok(found);
        }
        self.store
            .accounts_with_subject_prefix(query, FOUND_AT_MOST)
            .await
    }

    /// `None` for an account the server has never seen.
    pub async fn operator_account(&self, account: &str) -> Result<Option<OperatorAccount>> {
        let now = self.now();
        let Some(record) = self.store.account(account).await? else {
            return Ok(None);
        };
        let devices = self.store.admin_list_devices(account).await?;
        let recovery_hold = record
            .recovery_held_until
            .filter(|until| *until > now)
            .map(|until| OperatorHold {
                until,
                restorable_phone_number: record.restoration(now).ok().map(|r| r.phone_number),
            });
        Ok(Some(OperatorAccount {
            account: account.to_string(),
            status: status_of(&record, self.limits.pin_attempts, None, now),
            recovery_hold,
            devices,
        }))
    }

    /// Disables one device of the account, for `reason` (kept in the audit row; at most 200
    /// characters, no control characters). `false` when it was disabled already: nothing
    /// changed, nothing audited. `DeviceUnknown`.
    pub async fn operator_disable_device(
        &self,
        by: &Operator,
        account: &str,
        device_id: &str,
        reason: &str,
    ) -> Result<bool> {
        let reason = reason.trim();
        if reason.chars().count() > 200 || reason.chars().any(char::is_control) {
            return api(ApiError::InvalidParameter {
                name: "reason".into(),
            });
        }
        let changed = self
            .store
            .admin_disable_device(account, device_id, &by.audit_name(), reason, self.now())
            .await?;
        tracing::info!(by = %by.audit_name(), %device_id, changed, "operator: disable a device");
        Ok(changed)
    }

    /// Enables again a device an operator disabled. `false` when it is not disabled.
    /// `DeviceUnknown`, `DeviceNotReEnablable`.
    pub async fn operator_enable_device(
        &self,
        by: &Operator,
        account: &str,
        device_id: &str,
    ) -> Result<bool> {
        let changed = self
            .store
            .admin_enable_device(account, device_id, &by.audit_name(), self.now())
            .await?;
        tracing::info!(by = %by.audit_name(), %device_id, changed, "operator: enable a device");
        Ok(changed)
    }

    /// Clears the PIN failure count. `false` when there was none: nothing changed, nothing
    /// audited. `AccountUnknown`.
    pub async fn operator_unblock(&self, by: &Operator, account: &str) -> Result<bool> {
        let changed = self
            .store
            .unblock_account(account, &by.audit_name(), self.now())
            .await?;
        tracing::info!(by = %by.audit_name(), changed, "operator: unblock an account");
        Ok(changed)
    }

    /// Gives back the number trusted before the running hold (see
    /// [`Service::restore_phone_number`]). `NothingToRestore`.
    pub async fn operator_restore(&self, by: &Operator, account: &str) -> Result<Restored> {
        self.restore_phone_number(
            account,
            RestoreBy::Helpdesk {
                by: by.audit_name(),
            },
        )
        .await
    }

    /// Audit events after `after_id`, oldest first, of one account or of all.
    pub async fn operator_audit(
        &self,
        account: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        self.store.audit_trail(account, after_id, limit).await
    }

    /// A page of the audit trail for the helpdesk, newest first.
    pub async fn operator_audit_search(&self, query: AuditQuery) -> Result<Vec<AuditEvent>> {
        self.store.audit_search(query).await
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        self.store.ping().await
    }
}
