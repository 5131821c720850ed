//! The endpoint table: every `/v1` and admin operation's method, path, caller, summary and
//! body types, written once. The server's router and OpenAPI document, the SDK's HTTP client,
//! `pims bench` and the test clients are all derived from it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// HTTP method of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The SDK: `Authorization: Bearer <access token>` and the protocol header.
    Device,
    /// A relying party: HTTP Basic `id:secret`.
    RelyingParty,
    /// The operator: `Authorization: Bearer <admin token>` (only when configured).
    Admin,
    /// Anyone (the development token issuer, only when enabled).
    Anyone,
}

/// The body of an operation that has none: `{}` when sent, nothing (204) when answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}

impl<'de> Deserialize<'de> for Empty {
    /// Whatever the body: a 204 has none, and a body without fields carries nothing.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Empty {})
    }
}

/// One operation of the table.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub method: Method,
    /// Path template; `{name}` segments are parameters (axum's syntax).
    pub path: &'static str,
    pub caller: Caller,
    pub summary: &'static str,
    /// OpenAPI schema of the request body (registered with what it refers to), if any.
    #[cfg(feature = "openapi")]
    pub request_schema: Option<fn(&mut Vec<Schema>) -> String>,
    /// OpenAPI schema of the success body (`None`: 204), if any.
    #[cfg(feature = "openapi")]
    pub response_schema: Option<fn(&mut Vec<Schema>) -> String>,
}

/// A named OpenAPI schema.
#[cfg(feature = "openapi")]
pub type Schema = (
    String,
    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
);

#[cfg(feature = "openapi")]
#[doc(hidden)]
pub fn register<T: utoipa::ToSchema>(schemas: &mut Vec<Schema>) -> String {
    let name = T::name().into_owned();
    schemas.push((name.clone(), T::schema()));
    T::schemas(schemas);
    name
}

impl Route {
    /// The `{name}` parameters of the path, in order.
    pub fn parameters(&self) -> impl Iterator<Item = &'static str> {
        self.path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
    }

    /// The concrete path: each parameter, in order, replaced by `values`' percent-encoded
    /// value (the one place path parameters are encoded). Panics when the count differs: a
    /// programming error.
    pub fn path(&self, values: &[&str]) -> String {
        let mut values = values.iter();
        let path = self
            .path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    encode_segment(values.next().expect("a value for each path parameter"))
                } else {
                    segment.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        assert!(values.next().is_none(), "more values than path parameters");
        path
    }
}

/// Percent-encodes everything but unreserved characters, so a value is one path segment.
pub fn encode_segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An operation with its body types.
pub trait Endpoint {
    const ROUTE: Route;
    /// JSON request body ([`Empty`] when there is none; never sent on GET).
    type Request: Serialize + DeserializeOwned;
    /// JSON success body ([`Empty`] for 204).
    type Response: Serialize + DeserializeOwned;
}

macro_rules! body_type {
    (-) => {
        Empty
    };
    ($t:ty) => {
        $t
    };
}

#[cfg(feature = "openapi")]
macro_rules! schema_of {
    (-) => {
        None
    };
    ($t:ty) => {
        Some(register::<$t>)
    };
}

macro_rules! route {
    ($method:ident, $path:literal, $caller:ident, $summary:literal, $req:tt, $resp:tt) => {
        Route {
            method: Method::$method,
            path: $path,
            caller: Caller::$caller,
            summary: $summary,
            #[cfg(feature = "openapi")]
            request_schema: schema_of!($req),
            #[cfg(feature = "openapi")]
            response_schema: schema_of!($resp),
        }
    };
}

macro_rules! endpoints {
    ($(
        $(#[$doc:meta])*
        $name:ident: $method:ident $path:literal, $caller:ident, $summary:literal, $req:tt => $resp:tt;
    )*) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl Endpoint for $name {
                const ROUTE: Route = route!($method, $path, $caller, $summary, $req, $resp);
                type Request = body_type!($req);
                type Response = body_type!($resp);
            }
        )*

        /// Every `/v1` operation, in the table's order.
        pub const ROUTES: &[Route] = &[$($name::ROUTE),*];
    };
}

use crate::messages::*;

endpoints! {
    /// GET account status; query `deviceId` (optional) asks for that device's state.
    Account: Get "/v1/account", Device, "Account and device status", - => AccountStatus;
    SmsCodes: Post "/v1/sms-codes", Device, "Send (or resend) an SMS code", SendSmsCode => SmsCodeSent;
    SmsCodeCheck: Post "/v1/sms-codes/check", Device, "Check an SMS code without using it",
        CheckSmsCode => SmsCodeChecked;
    PhoneNumberAdd: Post "/v1/phone-number", Device, "Make a certified number the trusted one",
        AddPhoneNumber => -;
    PhoneNumberModify: Post "/v1/phone-number/modify", Device,
        "Move the trusted number (device-proven)", ModifyPhoneNumber => -;
    PhoneNumberRestore: Post "/v1/phone-number/restore", Device,
        "Give back the number trusted before the hold (restore code from the change notice)",
        RestorePhoneNumber => PhoneNumberRestored;
    EnrollmentStart: Post "/v1/enrollments", Device,
        "Start an enrollment (SMS code and OPAQUE start)", StartEnrollment => EnrollmentStarted;
    EnrollmentFinish: Post "/v1/enrollments/{enrollment_id}/finish", Device,
        "Finish an enrollment: the device is Pending", FinishEnrollment => EnrollmentFinished;
    EnrollmentsRemove: Post "/v1/enrollments/remove", Device,
        "Remove every enrollment and the PIN", - => -;
    DeviceActivate: Post "/v1/devices/{device_id}/activate", Device, "Confirm a Pending device",
        ActivateDevice => -;
    Devices: Get "/v1/devices", Device, "List the account's live devices", - => DeviceList;
    DeviceRevoke: Post "/v1/devices/{device_id}/revoke", Device, "Disable one device", - => -;
    DeviceChallenges: Post "/v1/devices/{device_id}/challenges", Device,
        "Challenge for a device-proven change", DeviceChallengeRequest => DeviceChallenge;
    PinChange: Post "/v1/pin/change", Device,
        "Authorize a PIN reset (SMS code) or update (current PIN), device-proven",
        StartPinChange => PinChangeStarted;
    PinChangeFinish: Post "/v1/pin/change/finish", Device,
        "Set the new PIN of an authorized change", FinishPinChange => -;
    OtpChallenges: Post "/v1/otp/challenges", Device, "Challenge for an OTP",
        OtpChallengeRequest => OtpChallenge;
    Otp: Post "/v1/otp", Device, "Issue a one-time proof", OtpRequest => OtpIssued;
    OtpVerify: Post "/v1/otp/verify", RelyingParty, "Verify an OTP once (relying party)",
        VerifyOtp => OtpVerified;
    CommandKeys: Get "/v1/commands/keys", Anyone,
        "The command service's audience and PIN co-signing key", - => CommandServiceKeys;
    Commands: Post "/v1/commands", Device,
        "Send a signed command to a car (PIN co-signed when proven)", SendCommand => CommandSent;
    CommandVerify: Post "/v1/commands/verify", RelyingParty,
        "Check a command proof as the car will (relying party)", VerifyCommand => CommandVerified;
    VehiclePair: Post "/v1/vehicles/{vin}/pair", Device,
        "Pair this device's key with a car (pairing code MAC)", PairVehicle => VehiclePaired;
    VehicleKeychainSync: Post "/v1/vehicles/{vin}/keychain/sync", Anyone,
        "A car asks which of its keys to remove (signed answer)", KeychainSync => KeychainRemovals;
    DevTokens: Post "/v1/dev/tokens", Anyone,
        "Mint a development access token (development only)", DevTokenRequest => DevToken;
}

/// The admin API under `/admin/v1` (its bodies are the server's: see its `admin` module).
pub mod admin {
    use super::{Caller, Method, Route};

    const fn admin(method: Method, path: &'static str, summary: &'static str) -> Route {
        Route {
            method,
            path,
            caller: Caller::Admin,
            summary,
            #[cfg(feature = "openapi")]
            request_schema: None,
            #[cfg(feature = "openapi")]
            response_schema: None,
        }
    }

    /// The account's state for the helpdesk: masked numbers, lock, the recovery hold.
    pub const ACCOUNT: Route = admin(
        Method::Get,
        "/admin/v1/accounts/{account}",
        "An account's state",
    );
    pub const DEVICES: Route = admin(
        Method::Get,
        "/admin/v1/accounts/{account}/devices",
        "An account's devices",
    );
    pub const DEVICE_DISABLE: Route = admin(
        Method::Post,
        "/admin/v1/accounts/{account}/devices/{device_id}/disable",
        "Disable one device",
    );
    /// Only a device an operator disabled, after it was active.
    pub const DEVICE_ENABLE: Route = admin(
        Method::Post,
        "/admin/v1/accounts/{account}/devices/{device_id}/enable",
        "Enable again a device an operator disabled",
    );
    pub const UNBLOCK: Route = admin(
        Method::Post,
        "/admin/v1/accounts/{account}/unblock",
        "Unblock an account's PIN",
    );
    pub const PHONE_NUMBER_RESTORE: Route = admin(
        Method::Post,
        "/admin/v1/accounts/{account}/phone-number/restore",
        "Give back the number trusted before the running hold",
    );
    /// Query: `account`, `afterId`, `limit`.
    pub const AUDIT: Route = admin(Method::Get, "/admin/v1/audit", "Read the audit trail");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_encoded_in_order() {
        assert_eq!(
            EnrollmentFinish::ROUTE.path(&["a/b c"]),
            "/v1/enrollments/a%2Fb%20c/finish"
        );
        assert_eq!(
            admin::DEVICE_DISABLE.path(&["alice", "d-1"]),
            "/admin/v1/accounts/alice/devices/d-1/disable"
        );
        assert_eq!(Otp::ROUTE.path(&[]), "/v1/otp");
    }

    #[test]
    #[should_panic]
    fn a_missing_parameter_is_a_bug() {
        DeviceRevoke::ROUTE.path(&[]);
    }

    #[test]
    fn every_path_is_declared_once() {
        let mut seen: Vec<_> = ROUTES.iter().map(|r| r.path).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), ROUTES.len());
    }
}
