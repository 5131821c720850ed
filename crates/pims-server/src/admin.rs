//! Admin API under `/admin/v1`, behind its own bearer credential (`admin_token`): list an
//! account's devices, disable a device, unblock an account, read the audit trail. Every change
//! it makes is itself audited.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::Router;
use pims_proto::endpoint::admin;
use pims_proto::{ApiError, PinState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::bearer_token;
use crate::error::Error;
use crate::http::{to_completion, AppState, ClientAddress, Serve};
use crate::net::client_key;
use crate::service::Operator;
use crate::sms::mask_number;
use crate::store::{AdminDeviceSummary, AuditEvent};

const MAX_PAGE: u32 = 1000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .serve(admin::ACCOUNT, account)
        .serve(admin::DEVICES, devices)
        .serve(admin::DEVICE_DISABLE, disable_device)
        .serve(admin::DEVICE_ENABLE, enable_device)
        .serve(admin::UNBLOCK, unblock)
        .serve(admin::PHONE_NUMBER_RESTORE, restore_phone_number)
        .serve(admin::AUDIT, audit)
}

pub use crate::net::{AdminFailures, FAILURE_WINDOW_SECONDS};

/// A request carrying the admin token (compared in constant time, as hashes). The right token
/// is always accepted; a wrong one is answered 401, slowly past the free ones
/// ([`AdminFailures`]).
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let expected = state
            .inner
            .admin_token
            .as_ref()
            .ok_or(ApiError::Unauthenticated)?;
        let ClientAddress(address) = ClientAddress::from_request_parts(parts, state).await?;
        let client = address.map_or_else(|| "unknown".to_string(), client_key);
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let same = given.is_some_and(|given| {
            Sha256::digest(given.as_bytes())
                .ct_eq(&Sha256::digest(expected.0.as_bytes()))
                .into()
        });
        if !same {
            let now = state.inner.service.now();
            let failure = state.inner.admin_failures.record(&client, now);
            // The address, never what was presented.
            tracing::warn!(
                %client,
                failures_in_window = failure.of_address,
                delay_ms = failure.delay.as_millis() as u64,
                token_given = given.is_some(),
                "admin API: wrong or missing admin token"
            );
            tokio::time::sleep(failure.delay).await;
            return Err(ApiError::Unauthenticated.into());
        }
        Ok(Admin)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceList {
    pub devices: Vec<AdminDeviceSummary>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditQuery {
    pub account: Option<String>,
    #[serde(default)]
    pub after_id: i64,
    pub limit: Option<u32>,
}

/// `GET /admin/v1/accounts/{account}`: numbers masked, as the helpdesk reads them to a caller.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub account: String,
    /// Whether the server has ever seen the account.
    pub known: bool,
    pub phone_number: Option<String>,
    pub pin: PinState,
    pub recovery_hold: Option<RecoveryHoldView>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryHoldView {
    /// Unix seconds.
    pub until: i64,
    /// The number a restore gives back (masked); `None` once it is trusted again.
    pub restorable_phone_number: Option<String>,
}

/// What a restore set, so the helpdesk can read it back to the caller.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreAnswer {
    /// Masked.
    pub phone_number: String,
    pub devices_disabled: u64,
}

async fn account(
    State(s): State<AppState>,
    _: Admin,
    Path(account): Path<String>,
) -> Result<axum::Json<AccountView>, Error> {
    let view = s.inner.service.operator_account(&account).await?;
    let known = view.is_some();
    let (phone_number, pin, recovery_hold) = match view {
        Some(v) => (
            v.status.phone_number.as_deref().map(mask_number),
            v.status.pin,
            v.recovery_hold.map(|hold| RecoveryHoldView {
                until: hold.until,
                restorable_phone_number: hold.restorable_phone_number.as_deref().map(mask_number),
            }),
        ),
        None => (None, PinState::NotSet, None),
    };
    Ok(axum::Json(AccountView {
        account,
        known,
        phone_number,
        pin,
        recovery_hold,
    }))
}

async fn devices(
    State(s): State<AppState>,
    _: Admin,
    Path(account): Path<String>,
) -> Result<axum::Json<DeviceList>, Error> {
    let devices = s
        .inner
        .service
        .operator_account(&account)
        .await?
        .map(|a| a.devices)
        .unwrap_or_default();
    Ok(axum::Json(DeviceList { devices }))
}

/// What an action did: `false` when there was nothing to do (and nothing was audited).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionAnswer {
    pub changed: bool,
}

/// Optional body of a disable: why, kept in the audit row.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisableRequest {
    #[serde(default)]
    pub reason: String,
}

async fn disable_device(
    State(s): State<AppState>,
    _: Admin,
    Path((account, device_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<axum::Json<ActionAnswer>, Error> {
    let request: DisableRequest = if body.is_empty() {
        DisableRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| ApiError::InvalidParameter {
            name: "body".into(),
        })?
    };
    let changed = s
        .inner
        .service
        .operator_disable_device(&Operator::Admin, &account, &device_id, &request.reason)
        .await?;
    Ok(axum::Json(ActionAnswer { changed }))
}

async fn enable_device(
    State(s): State<AppState>,
    _: Admin,
    Path((account, device_id)): Path<(String, String)>,
) -> Result<axum::Json<ActionAnswer>, Error> {
    let changed = s
        .inner
        .service
        .operator_enable_device(&Operator::Admin, &account, &device_id)
        .await?;
    Ok(axum::Json(ActionAnswer { changed }))
}

async fn unblock(
    State(s): State<AppState>,
    _: Admin,
    Path(account): Path<String>,
) -> Result<axum::Json<ActionAnswer>, Error> {
    let changed = s
        .inner
        .service
        .operator_unblock(&Operator::Admin, &account)
        .await?;
    Ok(axum::Json(ActionAnswer { changed }))
}

async fn restore_phone_number(
    State(s): State<AppState>,
    _: Admin,
    Path(account): Path<String>,
) -> Result<axum::Json<RestoreAnswer>, Error> {
    let restored = to_completion(async move {
        s.inner
            .service
            .operator_restore(&Operator::Admin, &account)
            .await
    })
    .await?;
    Ok(axum::Json(RestoreAnswer {
        phone_number: mask_number(&restored.phone_number),
        devices_disabled: restored.devices_disabled,
    }))
}

async fn audit(
    State(s): State<AppState>,
    _: Admin,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<AuditPage>, Error> {
    let Query(q) = query.map_err(|_| ApiError::InvalidParameter {
        name: "query".into(),
    })?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let events = s
        .inner
        .service
        .operator_audit(q.account.as_deref(), q.after_id, limit)
        .await?;
    Ok(axum::Json(AuditPage { events }))
}
