//! The console's routes and pages.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use pims_proto::endpoint::encode_segment;
use pims_proto::{ApiError, DeviceState, PinState};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::oidc::{console_path, Session, SignIn};
use super::Console;
use crate::error::Error;
use crate::http::{to_completion, AppState};
use crate::service::Operator;
use crate::store::{AuditPageAt, AuditQuery};
use jiff::tz::TimeZone;

const SESSION_COOKIE: &str = "pims_console";
const SIGN_IN_COOKIE: &str = "pims_console_sign_in";
/// The operator's time zone (an IANA name), chosen on `/console/timezone`.
const ZONE_COOKIE: &str = "pims_console_tz";
const AUDIT_PAGE: u32 = 20;
/// Digits of a trusted number the console shows.
const SHOWN_DIGITS: usize = 2;

/// Nothing from elsewhere, no inline script or style, no framing, forms post here only.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn routes(state: AppState, console: Arc<Console>) -> Router {
    Router::new()
        .route("/console/", get(home))
        .route("/console/style.css", get(style))
        .route("/console/login", get(login))
        .route("/console/callback", get(callback))
        .route("/console/logout", post(logout))
        .route(
            "/console/timezone",
            get(time_zone_page).post(choose_time_zone),
        )
        .route("/console/search", get(search))
        .route("/console/accounts/{account}", get(account))
        .route("/console/accounts/{account}/audit", get(audit))
        .route("/console/audit", get(audit_all))
        .route("/console/accounts/{account}/unblock", post(unblock))
        .route(
            "/console/accounts/{account}/phone-number/restore",
            post(restore_phone_number),
        )
        .route(
            "/console/accounts/{account}/devices/{device_id}/disable",
            post(disable_device),
        )
        .route(
            "/console/accounts/{account}/devices/{device_id}/enable",
            post(enable_device),
        )
        .layer(axum::middleware::map_response(security_headers))
        .layer(Extension(console))
        .with_state(state)
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../templates/console/style.css"),
    )
        .into_response()
}

// ---- pages ------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    operator: Option<String>,
    csrf: String,
    /// Where the page sends the browser at once, if anywhere.
    refresh: Option<String>,
}

#[derive(Template)]
#[template(path = "console/not_operator.html")]
struct NotOperatorPage<'a> {
    operator: Option<String>,
    csrf: String,
    claim: &'a str,
    value: &'a str,
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage {
    operator: Option<String>,
    csrf: String,
    query: String,
    not_found: bool,
    /// Accounts sharing the number searched for, when there are several.
    matches: Vec<Match>,
}

struct Match {
    account: String,
    url: String,
}

struct DeviceRow {
    /// Where its Disable form posts (path-encoded); Enable posts beside it.
    disable_url: String,
    enable_url: String,
    can_enable: bool,
    name: String,
    platform: String,
    created: When,
    last_used: Option<When>,
    state: &'static str,
    can_disable: bool,
    /// What its enrollment proved of its key, and the attestation rule that failed, if one did.
    assurance: String,
    attestation_refused: Option<String>,
}

#[derive(Template)]
#[template(path = "console/account.html")]
struct AccountPage {
    operator: Option<String>,
    csrf: String,
    account: String,
    /// `/console/accounts/…` with the subject path-encoded: the base of every link and form.
    account_url: String,
    phone: String,
    pin_set: bool,
    blocked: bool,
    attempts_left: u32,
    /// Unblock is offered only when there is a failure to clear.
    max_attempts: u32,
    /// A read-only operator is offered no action.
    can_act: bool,
    /// While a hold after a number change runs: its end, and the masked number a restore
    /// gives back (`None` once it is trusted again).
    hold: Option<HoldRow>,
    devices: Vec<DeviceRow>,
    notice: String,
    zone: ZoneLink,
}

struct HoldRow {
    until: When,
    restorable: Option<String>,
}

struct AuditRow {
    id: i64,
    at: When,
    account: String,
    account_url: String,
    event: String,
    /// Its name beside its id, where known.
    device: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    operator: Option<String>,
    csrf: String,
    /// `None`: every account.
    account: Option<String>,
    account_url: Option<String>,
    event: String,
    by: String,
    from: String,
    to: String,
    known_events: &'static [&'static str],
    events: Vec<AuditRow>,
    newer: Option<String>,
    older: Option<String>,
    csv_url: String,
    /// Where the filter form goes.
    base: String,
    zone: ZoneLink,
}

#[derive(Template)]
#[template(path = "console/timezone.html")]
struct TimeZonePage {
    operator: Option<String>,
    csrf: String,
    /// The zone in use (`UTC` without a choice).
    current: String,
    zones: Vec<String>,
    next: String,
}

fn html(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => Error::Internal(anyhow::anyhow!("console template: {e}")).into_response(),
    }
}

fn message(status: StatusCode, title: &str, text: &str, session: Option<&Session>) -> Response {
    html(
        status,
        MessagePage {
            title,
            message: text,
            operator: session.map(|s| s.name.clone()),
            csrf: session.map(|s| s.csrf.clone()).unwrap_or_default(),
            refresh: None,
        },
    )
}

// ---- sessions ---------------------------------------------------------------------------

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(
    console: &Console,
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    same_site: &str,
) -> String {
    let secure = if console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    )
}

/// The signed-in operator, or the response to send instead: to the sign-in page, which brings
/// the operator back to `uri` (a deep link survives signing in).
fn operator(
    console: &Console,
    headers: &HeaderMap,
    uri: &Uri,
    now: i64,
) -> Result<Session, Box<Response>> {
    cookie(headers, SESSION_COOKIE)
        .and_then(|c| console.session(c, now))
        .ok_or_else(|| {
            let next = uri.path_and_query().map_or("/console/", |p| p.as_str());
            let mut url = reqwest::Url::parse("http://console/console/login").expect("fixed");
            url.query_pairs_mut()
                .append_pair("next", &console_path(next));
            let to = format!("/console/login?{}", url.query().unwrap_or_default());
            Box::new(Redirect::to(&to).into_response())
        })
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// A Disable form: the reason kept in the audit row, and the operator's confirmation.
#[derive(Deserialize)]
struct DisableForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

/// An operator posting a form with their session's CSRF token; anything else is 403.
fn operator_posting(
    console: &Console,
    headers: &HeaderMap,
    form: &CsrfForm,
    now: i64,
) -> Result<Session, Box<Response>> {
    let forbidden = || {
        Box::new(message(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "This form has expired or did not come from the console. Reload the page and try again.",
            None,
        ))
    };
    let session = cookie(headers, SESSION_COOKIE)
        .and_then(|c| console.session(c, now))
        .ok_or_else(forbidden)?;
    if !bool::from(form.csrf.as_bytes().ct_eq(session.csrf.as_bytes())) {
        tracing::warn!(subject = %session.subject, "console: a form without its CSRF token");
        return Err(forbidden());
    }
    Ok(session)
}

/// [`operator_posting`] for a form that changes something: a read-only operator is refused.
fn operator_acting(
    console: &Console,
    headers: &HeaderMap,
    form: &CsrfForm,
    now: i64,
) -> Result<Session, Box<Response>> {
    let session = operator_posting(console, headers, form, now)?;
    if session.read_only {
        tracing::warn!(subject = %session.subject, "console: a read-only operator tried to act");
        return Err(Box::new(message(
            StatusCode::FORBIDDEN,
            "Read-only",
            "Your sign-in may look at accounts but not change them.",
            Some(&session),
        )));
    }
    Ok(session)
}

#[derive(Deserialize)]
struct LoginQuery {
    /// The console page to come back to.
    #[serde(default)]
    next: String,
    /// Ask the provider for a fresh sign-in ("sign in as someone else").
    #[serde(default)]
    switch: bool,
}

async fn login(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let now = s.inner.service.now();
    match console.start_sign_in(&q.next, q.switch, now).await {
        Ok((url, sealed)) => {
            // Lax, not Strict: it must come back on the provider's redirect.
            let c = set_cookie(
                &console,
                SIGN_IN_COOKIE,
                &sealed,
                "/console/callback",
                600,
                "Lax",
            );
            ([(header::SET_COOKIE, c)], Redirect::to(&url)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "console: the provider is unreachable");
            message(
                StatusCode::BAD_GATEWAY,
                "Sign-in unavailable",
                "The identity provider cannot be reached. Try again later.",
                None,
            )
        }
    }
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
}

async fn callback(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    let now = s.inner.service.now();
    let clear = set_cookie(&console, SIGN_IN_COOKIE, "", "/console/callback", 0, "Lax");
    let refused = || {
        message(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in could not be completed. Start again.",
            None,
        )
    };
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return ([(header::SET_COOKIE, clear)], refused()).into_response();
    };
    let result = console
        .finish_sign_in(&state, cookie(&headers, SIGN_IN_COOKIE), &code, now)
        .await;
    let response = match result {
        Ok(SignIn::Operator { cookie, next }) => {
            let max_age = console.config.session_seconds as i64;
            let session = set_cookie(
                &console,
                SESSION_COOKIE,
                &cookie,
                "/console",
                max_age,
                "Strict",
            );
            // A page, not a redirect: a Strict cookie is not sent on a redirect chain that
            // began at the provider's site; this page's own navigation is same-site.
            let page = html(
                StatusCode::OK,
                MessagePage {
                    title: "Signed in",
                    message: "You are signed in.",
                    operator: None,
                    csrf: String::new(),
                    refresh: Some(next),
                },
            );
            ([(header::SET_COOKIE, session)], page).into_response()
        }
        Ok(SignIn::NotOperator) => html(
            StatusCode::FORBIDDEN,
            NotOperatorPage {
                operator: None,
                csrf: String::new(),
                claim: &console.config.operator_claim,
                value: &console.config.operator_value,
            },
        ),
        Ok(SignIn::Refused) => refused(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "console: finishing a sign-in failed");
            refused()
        }
    };
    let mut response = response;
    if let Ok(clear) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

async fn logout(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let now = s.inner.service.now();
    let session = match operator_posting(&console, &headers, &form, now) {
        Ok(session) => session,
        Err(r) => return *r,
    };
    tracing::info!(subject = %session.subject, "console: operator signed out");
    let clear = set_cookie(&console, SESSION_COOKIE, "", "/console", 0, "Strict");
    // Then the provider's own session, or the next person at this PC is signed straight back
    // in: a page that goes there (a form's redirect to another site would break the CSP's
    // form-action).
    let provider = console.provider_sign_out(&session).await;
    let page = html(
        StatusCode::OK,
        MessagePage {
            title: "Signed out",
            message: "You are signed out of the console and of the identity provider.",
            operator: None,
            csrf: String::new(),
            refresh: provider,
        },
    );
    ([(header::SET_COOKIE, clear)], page).into_response()
}

async fn home(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let session = match operator(&console, &headers, &uri, s.inner.service.now()) {
        Ok(session) => session,
        Err(r) => return *r,
    };
    html(
        StatusCode::OK,
        HomePage {
            operator: Some(session.name.clone()),
            csrf: session.csrf,
            query: String::new(),
            not_found: false,
            matches: Vec::new(),
        },
    )
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn search(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<SearchQuery>,
) -> Result<Response, Error> {
    let service = &s.inner.service;
    let session = match operator(&console, &headers, &uri, service.now()) {
        Ok(session) => session,
        Err(r) => return Ok(*r),
    };
    let query = q.q.trim().to_string();
    let region = console.config.default_region.as_deref();
    let mut found = service.find_accounts(&query, region).await?;
    if found.len() == 1 {
        return Ok(Redirect::to(&account_url(&found.remove(0))).into_response());
    }
    let status = if found.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    Ok(html(
        status,
        HomePage {
            operator: Some(session.name.clone()),
            csrf: session.csrf,
            not_found: found.is_empty(),
            matches: found
                .into_iter()
                .map(|account| Match {
                    url: account_url(&account),
                    account,
                })
                .collect(),
            query,
        },
    ))
}

/// The account's page; subjects may hold `/`, so it is encoded as one path segment (never
/// `urlencode` in a template, which leaves `/` as it is).
fn account_url(account: &str) -> String {
    format!("/console/accounts/{}", encode_segment(account))
}

#[derive(Deserialize)]
struct Notice {
    #[serde(default)]
    done: String,
}

async fn account(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(account): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<Response, Error> {
    let service = &s.inner.service;
    let now = service.now();
    let session = match operator(&console, &headers, &uri, now) {
        Ok(session) => session,
        Err(r) => return Ok(*r),
    };
    let Some(view) = service.operator_account(&account).await? else {
        return Ok(no_such_account(&session));
    };
    let zone = zone(&headers);
    let url = account_url(&account);
    let devices = view
        .devices
        .into_iter()
        .map(|d| DeviceRow {
            can_disable: matches!(d.state, DeviceState::Active | DeviceState::Pending),
            state: device_state(d.state),
            created: when(d.created_at, zone.as_ref()),
            last_used: d.last_used_at.map(|t| when(t, zone.as_ref())),
            disable_url: format!("{url}/devices/{}/disable", encode_segment(&d.id)),
            enable_url: format!("{url}/devices/{}/enable", encode_segment(&d.id)),
            can_enable: d.re_enablable,
            name: d.name,
            platform: d.platform,
            attestation_refused: d
                .assurance_detail
                .as_deref()
                .map(|detail| detail.split(':').next().unwrap_or(detail).to_string()),
            assurance: d.assurance,
        })
        .collect();
    let notice = match notice.done.as_str() {
        "disabled" => "The device was disabled.",
        "already-disabled" => "The device was already disabled: nothing changed.",
        "enabled" => "The device was enabled again.",
        "already-enabled" => "The device was not disabled: nothing changed.",
        "unblocked" => "The PIN was unblocked.",
        "not-blocked" => "The PIN had no failed attempt to clear: nothing changed.",
        "restored" => {
            "The trusted number was restored and every device disabled; both numbers were told, \
             and the hold is over: the owner can enroll again at once."
        }
        _ => "",
    };
    let status = view.status;
    Ok(html(
        StatusCode::OK,
        AccountPage {
            operator: Some(session.name.clone()),
            csrf: session.csrf,
            phone: status
                .phone_number
                .as_deref()
                .map_or_else(|| "none".into(), mask),
            pin_set: status.pin != PinState::NotSet,
            blocked: status.pin == PinState::Blocked,
            attempts_left: status.pin_attempts_remaining,
            max_attempts: service.limits.pin_attempts,
            can_act: !session.read_only,
            hold: view.recovery_hold.map(|hold| HoldRow {
                until: when(hold.until, zone.as_ref()),
                restorable: hold.restorable_phone_number.as_deref().map(mask),
            }),
            devices,
            account,
            account_url: url,
            notice: notice.into(),
            zone: zone_link(zone.as_ref(), &uri),
        },
    ))
}

fn device_state(state: DeviceState) -> &'static str {
    match state {
        DeviceState::Pending => "pending",
        DeviceState::Active => "active",
        DeviceState::Disabled => "disabled",
    }
}

/// `+33612345678` → `•••••••••78`: enough to confirm with a caller, not to learn the number.
fn mask(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    let shown = chars.len().min(SHOWN_DIGITS);
    let hidden = chars.len() - shown;
    "•".repeat(hidden) + &chars[hidden..].iter().collect::<String>()
}

/// A time as the pages show it: in the operator's time zone with UTC beside, or in UTC alone
/// when they chose none; `iso` is the instant for `<time datetime>`.
struct When {
    iso: String,
    local: Option<String>,
    utc: String,
}

fn when(t: i64, zone: Option<&TimeZone>) -> When {
    let at = jiff::Timestamp::from_second(t).unwrap_or(jiff::Timestamp::MAX);
    let utc = at.to_zoned_datetime(TimeZone::UTC);
    When {
        iso: utc.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        local: zone.map(|z| {
            at.to_zoned_datetime(z.clone())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        }),
        utc: utc.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

/// An IANA time zone of the embedded database by its name (any case); `None` for UTC itself
/// (always shown) or a name it does not hold.
fn known_zone(name: &str) -> Option<TimeZone> {
    let zone = jiff::tz::db().get(name.trim()).ok()?;
    match zone.iana_name() {
        Some(name) if !name.eq_ignore_ascii_case("UTC") => Some(zone),
        _ => None,
    }
}

/// The time zone this browser's operator chose.
fn zone(headers: &HeaderMap) -> Option<TimeZone> {
    known_zone(cookie(headers, ZONE_COOKIE)?)
}

/// What a page says of its times, and where to change the zone (coming back to `uri`).
struct ZoneLink {
    name: Option<String>,
    change_url: String,
}

fn zone_link(zone: Option<&TimeZone>, uri: &Uri) -> ZoneLink {
    let back = uri.path_and_query().map_or("/console/", |p| p.as_str());
    let mut url = reqwest::Url::parse("http://console/console/timezone").expect("fixed");
    url.query_pairs_mut()
        .append_pair("next", &console_path(back));
    ZoneLink {
        name: zone.and_then(|z| z.iana_name()).map(str::to_string),
        change_url: format!("/console/timezone?{}", url.query().unwrap_or_default()),
    }
}

#[derive(Deserialize)]
struct ZoneQuery {
    #[serde(default)]
    next: String,
}

/// Lets the operator pick the zone their times are shown in (UTC stays beside them).
async fn time_zone_page(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ZoneQuery>,
) -> Response {
    let session = match operator(&console, &headers, &uri, s.inner.service.now()) {
        Ok(session) => session,
        Err(r) => return *r,
    };
    let current = zone(&headers)
        .and_then(|z| z.iana_name().map(str::to_string))
        .unwrap_or_else(|| "UTC".into());
    let mut zones: Vec<String> = jiff::tz::db()
        .available()
        .map(|name| name.as_str().to_string())
        .filter(|name| !name.eq_ignore_ascii_case("UTC"))
        .collect();
    zones.sort();
    html(
        StatusCode::OK,
        TimeZonePage {
            operator: Some(session.name.clone()),
            csrf: session.csrf,
            current,
            zones,
            next: console_path(&q.next),
        },
    )
}

#[derive(Deserialize)]
struct ZoneForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    tz: String,
    #[serde(default)]
    next: String,
}

async fn choose_time_zone(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<ZoneForm>,
) -> Response {
    let csrf = CsrfForm { csrf: form.csrf };
    let session = match operator_posting(&console, &headers, &csrf, s.inner.service.now()) {
        Ok(session) => session,
        Err(r) => return *r,
    };
    let cookie = if form.tz.trim().eq_ignore_ascii_case("UTC") {
        set_cookie(&console, ZONE_COOKIE, "", "/console", 0, "Strict")
    } else {
        let Some(name) = known_zone(&form.tz).and_then(|z| z.iana_name().map(str::to_string))
        else {
            return message(
                StatusCode::BAD_REQUEST,
                "Unknown time zone",
                "Pick a time zone from the list.",
                Some(&session),
            );
        };
        set_cookie(
            &console,
            ZONE_COOKIE,
            &name,
            "/console",
            400 * 86_400,
            "Strict",
        )
    };
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to(&console_path(&form.next)),
    )
        .into_response()
}

/// Who acts, for the service and its audit trail.
fn by(session: &Session) -> Operator {
    Operator::Console(session.subject.clone())
}

fn no_such_account(session: &Session) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "No such account",
        "There is no account with this subject.",
        Some(session),
    )
}

fn no_such_device(session: &Session) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "No such device",
        "This account has no such device.",
        Some(session),
    )
}

/// Back to the account's page, saying what the action did.
fn done(account: &str, what: &str) -> Response {
    Redirect::to(&format!("{}?done={what}", account_url(account))).into_response()
}

async fn disable_device(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    Path((account, device_id)): Path<(String, String)>,
    Form(form): Form<DisableForm>,
) -> Result<Response, Error> {
    let service = &s.inner.service;
    let csrf = CsrfForm { csrf: form.csrf };
    let session = match operator_acting(&console, &headers, &csrf, service.now()) {
        Ok(session) => session,
        Err(r) => return Ok(*r),
    };
    if form.confirm != "yes" || form.reason.trim().is_empty() {
        return Ok(message(
            StatusCode::BAD_REQUEST,
            "Not disabled",
            "Say why the device is disabled, and tick the confirmation.",
            Some(&session),
        ));
    }
    match service
        .operator_disable_device(&by(&session), &account, &device_id, &form.reason)
        .await
    {
        Ok(true) => Ok(done(&account, "disabled")),
        Ok(false) => Ok(done(&account, "already-disabled")),
        Err(Error::Api(ApiError::DeviceUnknown)) => Ok(no_such_device(&session)),
        Err(Error::Api(ApiError::InvalidParameter { .. })) => Ok(message(
            StatusCode::BAD_REQUEST,
            "Not disabled",
            "The reason must be at most 200 characters on one line.",
            Some(&session),
        )),
        Err(e) => Err(e),
    }
}

async fn enable_device(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    Path((account, device_id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Error> {
    let service = &s.inner.service;
    let session = match operator_acting(&console, &headers, &form, service.now()) {
        Ok(session) => session,
        Err(r) => return Ok(*r),
    };
    match service
        .operator_enable_device(&by(&session), &account, &device_id)
        .await
    {
        Ok(true) => Ok(done(&account, "enabled")),
        Ok(false) => Ok(done(&account, "already-enabled")),
        Err(Error::Api(ApiError::DeviceUnknown)) => Ok(no_such_device(&session)),
        Err(Error::Api(ApiError::DeviceNotReEnablable)) => Ok(message(
            StatusCode::CONFLICT,
            "Not enabled",
            "Only a device an operator disabled can be enabled again; this one was disabled by \
             its account, by the clone rule, or by a restore or a removal.",
            Some(&session),
        )),
        Err(e) => Err(e),
    }
}

async fn unblock(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Error> {
    let service = &s.inner.service;
    let now = service.now();
    let session = match operator_acting(&console, &headers, &form, now) {
        Ok(session) => session,
        Err(r) => return Ok(*r),
    };
    match service.operator_unblock(&by(&session), &account).await {
        Ok(true) => Ok(done(&account, "unblocked")),
        Ok(false) => Ok(done(&account, "not-blocked")),
        Err(Error::Api(ApiError::AccountUnknown)) => Ok(no_such_account(&session)),
        Err(e) => Err(e),
    }
}

async fn restore_phone_number(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Error> {
    let service = &s.inner.service;
    let session = match operator_acting(&console, &headers, &form, service.now()) {
        Ok(session) => session,
        Err(r) => return Ok(*r),
    };
    let restore = {
        let (s, by, account) = (s.clone(), by(&session), account.clone());
        to_completion(async move { s.inner.service.operator_restore(&by, &account).await })
    };
    match restore.await {
        Ok(_) => {}
        Err(Error::Api(ApiError::NothingToRestore)) => {
            return Ok(message(
                StatusCode::CONFLICT,
                "Nothing to restore",
                "No number change made without the PIN is waiting to be undone on this account \
                 (none was, it was made with the PIN, its hold is over, or it was restored).",
                Some(&session),
            ))
        }
        Err(e) => return Err(e),
    }
    Ok(done(&account, "restored"))
}

/// The audit view's filters and page, as its links and forms carry them.
#[derive(Deserialize, Default)]
struct AuditParams {
    #[serde(default)]
    event: String,
    /// Who acted: `admin`, or a console operator's subject.
    #[serde(default)]
    by: String,
    /// Days, `YYYY-MM-DD` (UTC), both included.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    before: Option<i64>,
    after: Option<i64>,
    /// `csv`: what the page shows, as a file.
    #[serde(default)]
    format: String,
}

/// Every event the trail records, for the filter's list.
const AUDIT_EVENTS: &[&str] = &[
    "account_unblocked",
    "command_authorized",
    "device_activated",
    "device_disabled",
    "device_enabled",
    "device_enrolled",
    "enrollments_removed",
    "otp_issued",
    "otp_used",
    "phone_number_added",
    "phone_number_modified",
    "phone_number_restored",
    "pin_attempt",
    "pin_blocked",
    "pin_failure",
    "pin_registered",
    "pin_reset",
    "pin_updated",
];

async fn audit(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(account): Path<String>,
    Query(q): Query<AuditParams>,
) -> Result<Response, Error> {
    audit_view(s, console, headers, uri, Some(account), q).await
}

async fn audit_all(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<AuditParams>,
) -> Result<Response, Error> {
    audit_view(s, console, headers, uri, None, q).await
}

/// The trail of one account or of all, newest first, filtered by event, operator and days,
/// paged both ways, or the same rows as CSV.
async fn audit_view(
    s: AppState,
    console: Arc<Console>,
    headers: HeaderMap,
    uri: Uri,
    account: Option<String>,
    q: AuditParams,
) -> Result<Response, Error> {
    let service = &s.inner.service;
    let session = match operator(&console, &headers, &uri, service.now()) {
        Ok(session) => session,
        Err(r) => return Ok(*r),
    };
    let event = q.event.trim().to_string();
    let by = q.by.trim().to_string();
    let zone = zone(&headers);
    // Days in the operator's zone; `to` names a day: the range ends when it does.
    let (Some(from), Some(to)) = (
        day_start(&q.from, 0, 0, zone.as_ref()),
        day_start(&q.to, 1, i64::MAX, zone.as_ref()),
    ) else {
        return Ok(message(
            StatusCode::BAD_REQUEST,
            "Bad date",
            "Dates are written YYYY-MM-DD.",
            Some(&session),
        ));
    };
    let page_at = match (q.before, q.after) {
        (_, Some(after)) => AuditPageAt::NewerThan(after),
        (Some(before), None) => AuditPageAt::OlderThan(before),
        (None, None) => AuditPageAt::OlderThan(i64::MAX),
    };
    let actor = match by.as_str() {
        "" => None,
        "admin" => Some("admin".to_string()),
        subject => Some(format!("console operator {subject}")),
    };
    // One row more than a page tells whether there is more that way.
    let mut rows = service
        .operator_audit_search(AuditQuery {
            account: account.clone(),
            event: (!event.is_empty()).then(|| event.clone()),
            by: actor,
            from,
            to,
            page: page_at,
            limit: AUDIT_PAGE + 1,
        })
        .await?;
    let more = rows.len() as u32 > AUDIT_PAGE;
    match page_at {
        AuditPageAt::NewerThan(_) if more => {
            rows.remove(0);
        }
        _ => rows.truncate(AUDIT_PAGE as usize),
    }
    let (older, newer) = match page_at {
        AuditPageAt::NewerThan(_) => (true, more),
        AuditPageAt::OlderThan(id) => (more, id != i64::MAX),
    };
    // Device names beside their ids, where the account is known.
    let names: std::collections::HashMap<String, String> = match &account {
        Some(a) => service
            .operator_account(a)
            .await?
            .map(|v| v.devices.into_iter().map(|d| (d.id, d.name)).collect())
            .unwrap_or_default(),
        None => Default::default(),
    };
    let events: Vec<AuditRow> = rows
        .into_iter()
        .map(|e| AuditRow {
            id: e.id,
            at: when(e.at, zone.as_ref()),
            device: e
                .device_id
                .as_deref()
                .map_or_else(String::new, |id| match names.get(id) {
                    Some(name) => format!("{name} ({id})"),
                    None => id.to_string(),
                }),
            account_url: account_url(&e.account),
            account: e.account,
            event: e.event,
            detail: e.detail.unwrap_or_default(),
        })
        .collect();
    let base = match &account {
        Some(a) => format!("{}/audit", account_url(a)),
        None => "/console/audit".to_string(),
    };
    let link = |extra: (&str, String)| {
        // Built by a query encoder (a path encoder leaves `&`, `=`, `+` as they are).
        let mut url = reqwest::Url::parse("http://console/").expect("a fixed URL");
        url.query_pairs_mut()
            .append_pair("event", &event)
            .append_pair("by", &by)
            .append_pair("from", q.from.trim())
            .append_pair("to", q.to.trim())
            .append_pair(extra.0, &extra.1);
        format!("{base}?{}", url.query().unwrap_or_default())
    };
    if q.format == "csv" {
        return Ok(csv(&events));
    }
    let newer = newer
        .then(|| events.first().map(|e| link(("after", e.id.to_string()))))
        .flatten();
    let older = older
        .then(|| events.last().map(|e| link(("before", e.id.to_string()))))
        .flatten();
    let page_link = match page_at {
        AuditPageAt::OlderThan(id) if id != i64::MAX => ("before", id.to_string()),
        AuditPageAt::NewerThan(id) => ("after", id.to_string()),
        _ => ("format", "csv".to_string()),
    };
    let csv_url = match page_link.0 {
        "format" => link(page_link),
        _ => format!("{}&format=csv", link(page_link)),
    };
    Ok(html(
        StatusCode::OK,
        AuditPage {
            operator: Some(session.name.clone()),
            csrf: session.csrf,
            account_url: account.as_deref().map(account_url),
            account,
            event,
            by,
            from: q.from.trim().to_string(),
            to: q.to.trim().to_string(),
            known_events: AUDIT_EVENTS,
            events,
            newer,
            older,
            csv_url,
            base,
            zone: zone_link(zone.as_ref(), &uri),
        },
    ))
}

/// The rows shown, as CSV (RFC 4180). Cells an attacker chose (subjects, device names) that
/// a spreadsheet would run as a formula start with a `'`.
fn csv(rows: &[AuditRow]) -> Response {
    fn cell(value: &str) -> String {
        let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{value}")
        } else {
            value.to_string()
        };
        if value.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", value.replace('"', "\"\""))
        } else {
            value
        }
    }
    let mut out = String::from("id,at,account,event,device,detail\r\n");
    for r in rows {
        let line = [
            r.id.to_string(),
            r.at.utc.clone(),
            r.account.clone(),
            r.event.clone(),
            r.device.clone(),
            r.detail.clone(),
        ]
        .iter()
        .map(|c| cell(c))
        .collect::<Vec<_>>()
        .join(",");
        out.push_str(&line);
        out.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"pims-audit.csv\"",
            ),
        ],
        out,
    )
        .into_response()
}

/// `YYYY-MM-DD` as the Unix second the day `days` after it starts, in `zone` (UTC without
/// one); blank is `blank`.
fn day_start(day: &str, days: i64, blank: i64, zone: Option<&TimeZone>) -> Option<i64> {
    let day = day.trim();
    if day.is_empty() {
        return Some(blank);
    }
    let date: jiff::civil::Date = day.parse().ok()?;
    if !(1970..=9998).contains(&date.year()) {
        return None;
    }
    let start = date
        .checked_add(jiff::Span::new().days(days))
        .ok()?
        .to_zoned_datetime(zone.cloned().unwrap_or(TimeZone::UTC))
        .ok()?;
    Some(start.timestamp().as_second())
}
