//! Admin API under `/admin/v1`, behind its own bearer credential (`admin_token`): list an
//! account's devices, disable a device, unblock an account, read the audit trail. Every change
//! it makes is itself audited.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use pims_proto::ApiError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::bearer_token;
use crate::error::Error;
use crate::http::{AppState, ClientAddress};
use crate::net::client_key;
use crate::store::{AdminDeviceSummary, AuditEvent};

const MAX_PAGE: u32 = 1000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/accounts/{account}/devices", get(devices))
        .route(
            "/admin/v1/accounts/{account}/devices/{device_id}/disable",
            post(disable_device),
        )
        .route("/admin/v1/accounts/{account}/unblock", post(unblock))
        .route(
            "/admin/v1/accounts/{account}/phone-number/restore",
            post(restore_phone_number),
        )
        .route("/admin/v1/audit", get(audit))
}

/// Failed admin authentications one client address may make in [`FAILURE_WINDOW_SECONDS`];
/// after that every admin request from it, even with the right token, gets 429 until the
/// window ends.
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW_SECONDS: i64 = 60;
/// Addresses tracked before expired windows are swept.
const SWEEP_ABOVE: usize = 10_000;

/// Admin-token failures per client address (`net::client_key`), in fixed windows.
///
/// In process, not in the database: the store has no generic counter and the admin API is an
/// operator's tool, usually reached on an internal network, so each replica bounding guesses at
/// 5 a minute per address is enough (a 32+ character token is not guessable online anyway);
/// what matters is that guessing is slow and visible in the log.
#[derive(Default)]
pub struct AdminFailures {
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl AdminFailures {
    /// Seconds until `client` may try again, when its window is used up.
    fn blocked_for(&self, client: &str, now: i64) -> Option<u64> {
        let windows = self.windows.lock().unwrap();
        match windows.get(client) {
            Some(&(start, n)) if n >= MAX_FAILURES && now < start + FAILURE_WINDOW_SECONDS => {
                Some((start + FAILURE_WINDOW_SECONDS - now) as u64)
            }
            _ => None,
        }
    }

    fn record(&self, client: &str, now: i64) -> u32 {
        let mut windows = self.windows.lock().unwrap();
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, (start, _)| now < *start + FAILURE_WINDOW_SECONDS);
        }
        let entry = windows.entry(client.to_string()).or_insert((now, 0));
        if now >= entry.0 + FAILURE_WINDOW_SECONDS {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1
    }
}

/// A request carrying the admin token (compared in constant time, as hashes), from an address
/// that has not used up its failures.
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
        let failures = &state.inner.admin_failures;
        let now = state.inner.service.now();
        if let Some(retry_after_seconds) = failures.blocked_for(&client, now) {
            return Err(ApiError::RateLimited {
                retry_after_seconds,
            }
            .into());
        }
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
            let count = failures.record(&client, now);
            // The address, never what was presented.
            tracing::warn!(
                %client,
                failures_in_window = count,
                token_given = given.is_some(),
                "admin API: wrong or missing admin token"
            );
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

async fn devices(
    State(s): State<AppState>,
    _: Admin,
    Path(account): Path<String>,
) -> Result<axum::Json<DeviceList>, Error> {
    let devices = s.inner.service.store.admin_list_devices(&account).await?;
    Ok(axum::Json(DeviceList { devices }))
}

async fn disable_device(
    State(s): State<AppState>,
    _: Admin,
    Path((account, device_id)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    let service = &s.inner.service;
    service
        .store
        .admin_disable_device(&account, &device_id, "admin", service.now())
        .await?;
    tracing::info!(%device_id, "admin disabled a device");
    Ok(StatusCode::NO_CONTENT)
}

async fn unblock(
    State(s): State<AppState>,
    _: Admin,
    Path(account): Path<String>,
) -> Result<StatusCode, Error> {
    let service = &s.inner.service;
    service
        .store
        .unblock_account(&account, "admin", service.now())
        .await?;
    tracing::info!("admin unblocked an account");
    Ok(StatusCode::NO_CONTENT)
}

async fn restore_phone_number(
    State(s): State<AppState>,
    _: Admin,
    Path(account): Path<String>,
) -> Result<StatusCode, Error> {
    let service = &s.inner.service;
    service
        .store
        .restore_phone_number(&account, service.now())
        .await?;
    tracing::info!("admin restored the previous trusted number");
    Ok(StatusCode::NO_CONTENT)
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
        .store
        .audit_trail(q.account.as_deref(), q.after_id, limit)
        .await?;
    Ok(axum::Json(AuditPage { events }))
}
