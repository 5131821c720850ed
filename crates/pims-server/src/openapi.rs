//! The OpenAPI document served at `/openapi.json`. Schemas are generated from the wire types
//! (`pims-proto` derives `ToSchema`); the operations come from [`OPERATIONS`], which a test
//! checks against the router so the two cannot drift apart.

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    RefOr, Required, ResponseBuilder,
};
use utoipa::ToSchema;

use pims_proto::*;

/// Who may call an operation.
#[derive(Clone, Copy)]
pub enum Caller {
    /// The SDK: `Authorization: Bearer <access token>` and the protocol header.
    Device,
    /// A relying party: HTTP Basic `id:secret`.
    RelyingParty,
    /// Development token issuer (only when enabled).
    Anyone,
}

/// One documented operation: method, path, summary, request and response schema names.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub request: Option<fn() -> String>,
    pub response: Option<fn() -> String>,
    pub caller: Caller,
}

fn name<T: ToSchema>() -> String {
    T::name().into_owned()
}

macro_rules! op {
    ($method:literal, $path:literal, $summary:literal, $req:ty, $resp:ty, $caller:ident) => {
        Operation {
            method: $method,
            path: $path,
            summary: $summary,
            request: Some(name::<$req>),
            response: Some(name::<$resp>),
            caller: Caller::$caller,
        }
    };
    ($method:literal, $path:literal, $summary:literal, -, $resp:ty, $caller:ident) => {
        Operation {
            method: $method,
            path: $path,
            summary: $summary,
            request: None,
            response: Some(name::<$resp>),
            caller: Caller::$caller,
        }
    };
    ($method:literal, $path:literal, $summary:literal, $req:ty, -, $caller:ident) => {
        Operation {
            method: $method,
            path: $path,
            summary: $summary,
            request: Some(name::<$req>),
            response: None,
            caller: Caller::$caller,
        }
    };
    ($method:literal, $path:literal, $summary:literal, -, -, $caller:ident) => {
        Operation {
            method: $method,
            path: $path,
            summary: $summary,
            request: None,
            response: None,
            caller: Caller::$caller,
        }
    };
}

/// Every `/v1` operation (admin and operations endpoints are described in the README).
pub const OPERATIONS: &[Operation] = &[
    op!("get", "/v1/account", "Account and device status", -, AccountStatus, Device),
    op!(
        "post",
        "/v1/sms-codes",
        "Send (or resend) an SMS code",
        SendSmsCode,
        SmsCodeSent,
        Device
    ),
    op!(
        "post",
        "/v1/sms-codes/check",
        "Check an SMS code without using it",
        CheckSmsCode,
        SmsCodeChecked,
        Device
    ),
    op!("post", "/v1/phone-number", "Make a certified number the trusted one", AddPhoneNumber, -, Device),
    op!("post", "/v1/phone-number/modify", "Move the trusted number (device-proven)", ModifyPhoneNumber, -, Device),
    op!(
        "post",
        "/v1/enrollments",
        "Start an enrollment (SMS code and OPAQUE start)",
        StartEnrollment,
        EnrollmentStarted,
        Device
    ),
    op!(
        "post",
        "/v1/enrollments/{enrollment_id}/finish",
        "Finish an enrollment: the device is Pending",
        FinishEnrollment,
        EnrollmentFinished,
        Device
    ),
    op!("post", "/v1/enrollments/remove", "Remove every enrollment and the PIN", -, -, Device),
    op!("post", "/v1/devices/{device_id}/activate", "Confirm a Pending device", ActivateDevice, -, Device),
    op!("get", "/v1/devices", "List the account's live devices", -, DeviceList, Device),
    op!("post", "/v1/devices/{device_id}/revoke", "Disable one device", -, -, Device),
    op!(
        "post",
        "/v1/devices/{device_id}/challenges",
        "Challenge for a device-proven change",
        DeviceChallengeRequest,
        DeviceChallenge,
        Device
    ),
    op!(
        "post",
        "/v1/pin/change",
        "Authorize a PIN reset (SMS code) or update (current PIN), device-proven",
        StartPinChange,
        PinChangeStarted,
        Device
    ),
    op!("post", "/v1/pin/change/finish", "Set the new PIN of an authorized change", FinishPinChange, -, Device),
    op!(
        "post",
        "/v1/otp/challenges",
        "Challenge for an OTP",
        OtpChallengeRequest,
        OtpChallenge,
        Device
    ),
    op!(
        "post",
        "/v1/otp",
        "Issue a one-time proof",
        OtpRequest,
        OtpIssued,
        Device
    ),
    op!(
        "post",
        "/v1/otp/verify",
        "Verify an OTP once (relying party)",
        VerifyOtp,
        OtpVerified,
        RelyingParty
    ),
    op!(
        "post",
        "/v1/dev/tokens",
        "Mint a development access token (development only)",
        DevTokenRequest,
        DevToken,
        Anyone
    ),
];

/// The `{name}` segments of `path`, in order.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

fn register<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((name::<T>(), T::schema()));
    T::schemas(schemas);
}

fn schema_ref(name: String) -> Ref {
    Ref::from_schema_name(name)
}

fn json_content(name: String) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema_ref(name))).build()
}

/// Builds the document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for op in OPERATIONS {
        let mut operation = OperationBuilder::new().summary(Some(op.summary)).response(
            "default",
            ResponseBuilder::new()
                .description("Error: `error.kind` says which (HTTP status by kind)")
                .content("application/json", json_content(name::<ErrorBody>())),
        );
        operation = match op.response {
            Some(resp) => operation.response(
                "200",
                ResponseBuilder::new()
                    .description("Success")
                    .content("application/json", json_content(resp())),
            ),
            None => operation.response("204", ResponseBuilder::new().description("Success")),
        };
        if let Some(req) = op.request {
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", json_content(req()))
                    .build(),
            ));
        }
        operation = match op.caller {
            Caller::Device => operation.security(SecurityRequirement::new(
                "accessToken",
                Vec::<String>::new(),
            )),
            Caller::RelyingParty => operation.security(SecurityRequirement::new(
                "relyingParty",
                Vec::<String>::new(),
            )),
            Caller::Anyone => operation,
        };
        // Path parameters come from the path itself, so none can be left undocumented.
        for name in path_parameters(op.path) {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        let method = match op.method {
            "get" => HttpMethod::Get,
            _ => HttpMethod::Post,
        };
        paths = paths.path(op.path, PathItem::new(method, operation.build()));
    }
    // Each root type with the types it refers to (enums, nested bodies), once each.
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    register::<AccountStatus>(&mut schemas);
    register::<SendSmsCode>(&mut schemas);
    register::<SmsCodeSent>(&mut schemas);
    register::<CheckSmsCode>(&mut schemas);
    register::<SmsCodeChecked>(&mut schemas);
    register::<AddPhoneNumber>(&mut schemas);
    register::<ModifyPhoneNumber>(&mut schemas);
    register::<StartEnrollment>(&mut schemas);
    register::<EnrollmentStarted>(&mut schemas);
    register::<FinishEnrollment>(&mut schemas);
    register::<EnrollmentFinished>(&mut schemas);
    register::<ActivateDevice>(&mut schemas);
    register::<DeviceList>(&mut schemas);
    register::<DeviceChallengeRequest>(&mut schemas);
    register::<DeviceChallenge>(&mut schemas);
    register::<StartPinChange>(&mut schemas);
    register::<PinChangeStarted>(&mut schemas);
    register::<FinishPinChange>(&mut schemas);
    register::<OtpChallengeRequest>(&mut schemas);
    register::<OtpChallenge>(&mut schemas);
    register::<OtpRequest>(&mut schemas);
    register::<OtpIssued>(&mut schemas);
    register::<VerifyOtp>(&mut schemas);
    register::<OtpVerified>(&mut schemas);
    register::<DevTokenRequest>(&mut schemas);
    register::<DevToken>(&mut schemas);
    register::<ErrorBody>(&mut schemas);
    schemas.sort_by(|a, b| a.0.cmp(&b.0));
    schemas.dedup_by(|a, b| a.0 == b.0);
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            "accessToken",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        )
        .security_scheme(
            "relyingParty",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("PIMS strong authentication")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Every /v1 call of a device carries the `pims-protocol-version` header and \
                     may carry `pims-transaction-id`, which the server logs.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read from the served JSON, not from `OPERATIONS`: what a client generator sees.
    #[test]
    fn every_path_parameter_is_declared() {
        let doc = serde_json::to_value(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut checked = 0;
        for (path, item) in paths {
            let wanted: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, operation) in item.as_object().unwrap() {
                let declared: Vec<&str> = operation["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .map(|p| {
                                assert_eq!(p["required"], true, "{method} {path}");
                                p["name"].as_str().unwrap()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(declared, wanted, "{method} {path}");
                checked += wanted.len();
            }
        }
        // finish, activate, revoke and challenges each take one.
        assert_eq!(checked, 4);
    }
}
