//! HTTP layer: routes, thin handlers, and the one place where errors become responses.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use pims_proto::endpoint::{self as ep, Endpoint, Method, Route};
use pims_proto::{
    AccountStatus, ActivateDevice, AddPhoneNumber, ApiError, CheckSmsCode, DevToken,
    DevTokenRequest, EnrollmentFinished, EnrollmentStarted, ErrorBody, FinishEnrollment,
    OtpChallenge, OtpChallengeRequest, OtpIssued, OtpRequest, OtpVerified, SendSmsCode,
    SmsCodeChecked, SmsCodeSent, StartEnrollment, VerifyOtp, PROTOCOL_HEADER, TRANSACTION_HEADER,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tracing::Instrument;

use crate::auth::{self, DevIssuer, TokenVerifier};
use crate::config::{AdminToken, RelyingParty};
use crate::error::Error;
use crate::service::Service;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub service: Service,
    pub verifier: Box<dyn TokenVerifier>,
    pub dev_issuer: Option<DevIssuer>,
    pub relying_parties: Vec<RelyingParty>,
    pub accepted_versions: Vec<u32>,
    pub admin_token: Option<AdminToken>,
    pub admin_failures: crate::net::AdminFailures,
    pub trust_forwarded_for: bool,
    pub console: Option<Arc<crate::console::Console>>,
}

impl AppState {
    pub(crate) fn new(
        service: Service,
        verifier: Box<dyn TokenVerifier>,
        dev_issuer: Option<DevIssuer>,
        relying_parties: Vec<RelyingParty>,
        accepted_versions: Vec<u32>,
        admin_token: Option<AdminToken>,
        trust_forwarded_for: bool,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                service,
                verifier,
                dev_issuer,
                relying_parties,
                accepted_versions,
                admin_token,
                admin_failures: Default::default(),
                trust_forwarded_for,
                console: None,
            }),
        }
    }

    /// Adds the console; only while building the state (before it is shared).
    pub(crate) fn with_console(mut self, console: crate::console::Console) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("the state is not shared yet")
            .console = Some(Arc::new(console));
        self
    }

    fn service(&self) -> &Service {
        &self.inner.service
    }
}

/// What operators use: `/metrics`, and the admin API (`admin`, when an admin token is
/// configured) and the console (`console`, when configured) that the server layer above hands
/// in. Served on `admin_listen` when set, else with the public API.
pub fn operations_router(
    state: AppState,
    admin: Router<AppState>,
    console: Option<Router>,
) -> Router {
    let mut app = Router::new().route("/metrics", get(metrics));
    if state.inner.admin_token.is_some() {
        app = app.merge(admin);
    }
    let mut app = app.with_state(state.clone());
    if let Some(console) = console {
        app = app.merge(console);
    }
    // Last, so the console's requests are spanned, logged and counted too.
    app.layer(middleware::from_fn_with_state(state, request_span))
}

/// The API apps and relying parties use: each handler at its operation of the endpoint table.
pub fn public_router(state: AppState) -> Router {
    let sdk = Router::new()
        .serve(ep::Account::ROUTE, account_status)
        .serve(ep::SmsCodes::ROUTE, send_sms_code)
        .serve(ep::SmsCodeCheck::ROUTE, check_sms_code)
        .serve(ep::PhoneNumberAdd::ROUTE, add_phone_number)
        .serve(ep::EnrollmentStart::ROUTE, start_enrollment)
        .serve(ep::EnrollmentFinish::ROUTE, finish_enrollment)
        .serve(ep::DeviceActivate::ROUTE, activate_device)
        .serve(ep::OtpChallenges::ROUTE, otp_challenge)
        .serve(ep::Otp::ROUTE, issue_otp)
        .serve(ep::Devices::ROUTE, list_devices)
        .serve(ep::DeviceRevoke::ROUTE, revoke_device)
        .serve(ep::DeviceChallenges::ROUTE, device_challenge)
        .serve(ep::EnrollmentsRemove::ROUTE, remove_enrollments)
        .serve(ep::PinChange::ROUTE, start_pin_change)
        .serve(ep::PinChangeFinish::ROUTE, finish_pin_change)
        .serve(ep::PhoneNumberModify::ROUTE, modify_phone_number)
        .serve(ep::PhoneNumberRestore::ROUTE, restore_phone_number)
        .serve(ep::Commands::ROUTE, send_command)
        .serve(ep::VehiclePair::ROUTE, pair_vehicle)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            check_protocol,
        ));
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(crate::openapi::document()) }),
        )
        .serve(ep::OtpVerify::ROUTE, verify_otp)
        .serve(ep::CommandKeys::ROUTE, command_keys)
        .serve(ep::CommandVerify::ROUTE, verify_command)
        .serve(ep::VehicleKeychainSync::ROUTE, keychain_sync)
        .merge(sdk);
    if state.inner.dev_issuer.is_some() {
        app = app.serve(ep::DevTokens::ROUTE, dev_token);
    }
    app.layer(middleware::from_fn_with_state(state.clone(), request_span))
        .with_state(state)
}

/// Runs a step and what follows it on a task of its own, once the request is read: when the
/// client goes away or its deadline passes, only the answer is lost — a step that committed
/// still sends its notices (a number change whose notice were lost would leave the owner
/// without the code that undoes it). For every operation that tells the owner something.
pub(crate) async fn to_completion<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    tokio::spawn(work).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a step's task failed");
        Err(Error::Api(ApiError::Internal))
    })
}

/// Mounts a handler at a [`Route`] of the endpoint table: its path with its method.
pub(crate) trait Serve {
    fn serve<H: Handler<T, AppState>, T: 'static>(self, route: Route, handler: H) -> Self;
}

impl Serve for Router<AppState> {
    fn serve<H: Handler<T, AppState>, T: 'static>(self, route: Route, handler: H) -> Self {
        let method = match route.method {
            Method::Get => get(handler),
            Method::Post => post(handler),
        };
        self.route(route.path, method)
    }
}

// ---- errors -----------------------------------------------------------------------------

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let error = match self {
            Error::Api(e) => e,
            Error::Internal(e) => {
                // Logged inside the request span, so with the transaction id.
                tracing::error!(error = %format!("{e:#}"), "internal error");
                ApiError::Internal
            }
        };
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = match &error {
            ApiError::RateLimited {
                retry_after_seconds,
            } => Some(retry_after_seconds.to_string()),
            _ => None,
        };
        let mut response = (status, axum::Json(ErrorBody { error })).into_response();
        if let Some(Ok(value)) = retry_after.map(header::HeaderValue::try_from) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

type ApiResult<T> = Result<axum::Json<T>, Error>;

fn ok<T>(value: T) -> ApiResult<T> {
    Ok(axum::Json(value))
}

/// JSON body whose rejection is an [`ApiError::InvalidParameter`] naming the field when serde
/// says which one, or 413 for a body over `http.max_body_bytes`. The rejection text itself may
/// quote request values, so it is not logged.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                [(header::CONNECTION, "close")],
                "request body too large",
            )
                .into_response()),
            Err(rejection) => Err(Error::Api(ApiError::InvalidParameter {
                name: rejected_field(&rejection),
            })
            .into_response()),
        }
    }
}

fn rejected_field(rejection: &JsonRejection) -> String {
    let text = rejection.body_text();
    // serde_path_to_error prefixes the path: "...: device.name: invalid type ..." and
    // serde names missing fields as "missing field `smsCode`".
    if let Some(rest) = text.split("missing field `").nth(1) {
        if let Some(name) = rest.split('`').next() {
            return name.to_string();
        }
    }
    if let Some(rest) = text
        .split("Failed to deserialize the JSON body into the target type: ")
        .nth(1)
    {
        if let Some((path, _)) = rest.split_once(": ") {
            if let Some(last) = path.rsplit('.').next() {
                if !last.is_empty() && last.len() <= 64 && !last.contains(' ') {
                    return last.to_string();
                }
            }
        }
    }
    "body".to_string()
}

// ---- middleware and extractors ----------------------------------------------------------

/// Ready when the database answers: a load balancer stops sending requests otherwise.
async fn ready(State(state): State<AppState>) -> Response {
    match state.service().ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.service().metrics().render(),
    )
        .into_response()
}

async fn request_span(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The route pattern, not the path, so ids do not explode the label set.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let started = std::time::Instant::now();
    let transaction_id = req
        .headers()
        .get(TRANSACTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect::<String>()
        })
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        transaction_id = %transaction_id,
    );
    async move {
        let response = next.run(req).await;
        let status = response.status().as_u16();
        state
            .service()
            .metrics()
            .request(&route, status, started.elapsed());
        tracing::debug!(status, "answered");
        response
    }
    .instrument(span)
    .await
}

async fn check_protocol(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let accepted = &state.inner.accepted_versions;
    let version = req
        .headers()
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    match version {
        Some(v) if accepted.contains(&v) => next.run(req).await,
        _ => Error::Api(ApiError::UnsupportedProtocol {
            supported: accepted.clone(),
        })
        .into_response(),
    }
}

/// The account of the request: the subject of a valid bearer token.
pub struct Account(pub String);

impl FromRequestParts<AppState> for Account {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::bearer_token)
            .ok_or(ApiError::Unauthenticated)?;
        let subject = state
            .inner
            .verifier
            .verify(token, state.service().now())
            .await?;
        Ok(Account(subject))
    }
}

/// The caller's address: the socket peer, or behind a trusted load balancer the last
/// `X-Forwarded-For` entry (the one that balancer appended). `None` when neither is known.
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.inner.trust_forwarded_for {
            // Only the balancer's own entry counts: an unparsable one is not replaced by an
            // earlier, client-written one.
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|a| a.trim().parse().ok());
            if forwarded.is_some() {
                return Ok(ClientAddress(forwarded));
            }
        }
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientAddress(peer))
    }
}

/// A relying party authenticated by HTTP Basic credentials (checked before the body is read).
pub struct RelyingPartyId(pub String);

impl FromRequestParts<AppState> for RelyingPartyId {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let rp = auth::relying_party(&state.inner.relying_parties, header)?;
        Ok(RelyingPartyId(rp.id.clone()))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountQuery {
    device_id: Option<String>,
}

// ---- handlers ---------------------------------------------------------------------------

async fn account_status(
    State(s): State<AppState>,
    Account(account): Account,
    query: Result<axum::extract::Query<AccountQuery>, QueryRejection>,
) -> ApiResult<AccountStatus> {
    let query = query.map_err(|_| ApiError::InvalidParameter {
        name: "deviceId".into(),
    })?;
    ok(s.service()
        .account_status(&account, query.device_id.as_deref())
        .await?)
}

async fn send_sms_code(
    State(s): State<AppState>,
    Account(account): Account,
    ClientAddress(client): ClientAddress,
    Json(req): Json<SendSmsCode>,
) -> ApiResult<SmsCodeSent> {
    ok(s.service()
        .send_sms_code(
            &account,
            req.purpose,
            req.phone_number.as_deref(),
            req.region.as_deref(),
            client,
        )
        .await?)
}

async fn check_sms_code(
    State(s): State<AppState>,
    Account(account): Account,
    Json(req): Json<CheckSmsCode>,
) -> ApiResult<SmsCodeChecked> {
    ok(s.service()
        .check_sms_code(&account, req.purpose, &req.sms_code)
        .await?)
}

async fn add_phone_number(
    State(s): State<AppState>,
    Account(account): Account,
    Json(req): Json<AddPhoneNumber>,
) -> Result<StatusCode, Error> {
    s.service()
        .add_phone_number(
            &account,
            &req.phone_number,
            req.region.as_deref(),
            &req.sms_code,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn start_enrollment(
    State(s): State<AppState>,
    Account(account): Account,
    Json(req): Json<StartEnrollment>,
) -> ApiResult<EnrollmentStarted> {
    ok(s.service().start_enrollment(&account, req).await?)
}

async fn finish_enrollment(
    State(s): State<AppState>,
    Account(account): Account,
    Path(enrollment_id): Path<String>,
    Json(req): Json<FinishEnrollment>,
) -> ApiResult<EnrollmentFinished> {
    ok(to_completion(async move {
        s.service()
            .finish_enrollment(&account, &enrollment_id, req)
            .await
    })
    .await?)
}

async fn activate_device(
    State(s): State<AppState>,
    Account(account): Account,
    Path(device_id): Path<String>,
    Json(req): Json<ActivateDevice>,
) -> Result<StatusCode, Error> {
    s.service()
        .activate_device(&account, &device_id, req.counter, req.signature.as_slice())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn otp_challenge(
    State(s): State<AppState>,
    Account(account): Account,
    Json(req): Json<OtpChallengeRequest>,
) -> ApiResult<OtpChallenge> {
    ok(s.service().otp_challenge(&account, req).await?)
}

async fn issue_otp(
    State(s): State<AppState>,
    Account(account): Account,
    Json(req): Json<OtpRequest>,
) -> ApiResult<OtpIssued> {
    ok(s.service().issue_otp(&account, req).await?)
}

async fn list_devices(
    State(s): State<AppState>,
    Account(account): Account,
) -> ApiResult<pims_proto::DeviceList> {
    ok(s.service().list_devices(&account).await?)
}

async fn revoke_device(
    State(s): State<AppState>,
    Account(account): Account,
    Path(device_id): Path<String>,
) -> Result<StatusCode, Error> {
    s.service().revoke_device(&account, &device_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_enrollments(
    State(s): State<AppState>,
    Account(account): Account,
) -> Result<StatusCode, Error> {
    to_completion(async move { s.service().remove_enrollments(&account).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn device_challenge(
    State(s): State<AppState>,
    Account(account): Account,
    Path(device_id): Path<String>,
    Json(req): Json<pims_proto::DeviceChallengeRequest>,
) -> ApiResult<pims_proto::DeviceChallenge> {
    ok(s.service()
        .device_challenge(&account, &device_id, req)
        .await?)
}

async fn start_pin_change(
    State(s): State<AppState>,
    Account(account): Account,
    Json(req): Json<pims_proto::StartPinChange>,
) -> ApiResult<pims_proto::PinChangeStarted> {
    ok(s.service().start_pin_change(&account, req).await?)
}

async fn finish_pin_change(
    State(s): State<AppState>,
    Account(account): Account,
    Json(req): Json<pims_proto::FinishPinChange>,
) -> Result<StatusCode, Error> {
    to_completion(async move { s.service().finish_pin_change(&account, req).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restore_phone_number(
    State(s): State<AppState>,
    Account(account): Account,
    Json(req): Json<pims_proto::RestorePhoneNumber>,
) -> Result<axum::Json<pims_proto::PhoneNumberRestored>, Error> {
    Ok(axum::Json(
        to_completion(async move {
            s.service()
                .restore_phone_number_by_owner(&account, req)
                .await
        })
        .await?,
    ))
}

async fn modify_phone_number(
    State(s): State<AppState>,
    Account(account): Account,
    Json(req): Json<pims_proto::ModifyPhoneNumber>,
) -> Result<StatusCode, Error> {
    to_completion(async move { s.service().modify_phone_number(&account, req).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn send_command(
    State(s): State<AppState>,
    Account(account): Account,
    Json(req): Json<pims_proto::SendCommand>,
) -> ApiResult<pims_proto::CommandSent> {
    // On its own task: a command the car executed is answered even if the app went away.
    ok(to_completion(async move { s.service().send_command(&account, req).await }).await?)
}

async fn pair_vehicle(
    State(s): State<AppState>,
    Account(account): Account,
    Path(vin): Path<String>,
    Json(req): Json<pims_proto::PairVehicle>,
) -> ApiResult<pims_proto::VehiclePaired> {
    ok(s.service().pair_vehicle(&account, &vin, req).await?)
}

async fn verify_command(
    State(s): State<AppState>,
    RelyingPartyId(_rp): RelyingPartyId,
    Json(req): Json<pims_proto::VerifyCommand>,
) -> ApiResult<pims_proto::CommandVerified> {
    ok(s.service().verify_command(req).await?)
}

async fn command_keys(State(s): State<AppState>) -> ApiResult<pims_proto::CommandServiceKeys> {
    ok(s.service().command_keys())
}

async fn keychain_sync(
    State(s): State<AppState>,
    Path(vin): Path<String>,
    Json(req): Json<pims_proto::KeychainSync>,
) -> ApiResult<pims_proto::KeychainRemovals> {
    ok(s.service().keychain_sync(&vin, req).await?)
}

async fn verify_otp(
    State(s): State<AppState>,
    RelyingPartyId(rp): RelyingPartyId,
    Json(req): Json<VerifyOtp>,
) -> ApiResult<OtpVerified> {
    ok(s.service().verify_otp(&rp, &req.otp).await?)
}

async fn dev_token(
    State(s): State<AppState>,
    Json(req): Json<DevTokenRequest>,
) -> ApiResult<DevToken> {
    let issuer = s
        .inner
        .dev_issuer
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("development issuer route without issuer"))?;
    let token = issuer.issue(&req.subject, s.service().now())?;
    ok(DevToken {
        access_token: token,
        expires_in_seconds: auth::DEV_TOKEN_LIFETIME_SECONDS,
    })
}
