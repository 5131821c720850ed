//! The OpenAPI document served at `/openapi.json`, derived from the endpoint table
//! (`pims_proto::endpoint`) the router is built from, with the wire types' schemas
//! (`pims-proto` derives `ToSchema`).

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    Required, ResponseBuilder,
};
use utoipa::ToSchema;

use pims_proto::endpoint::{self, Caller, Method, ROUTES};
use pims_proto::ErrorBody;

fn schema_ref(name: String) -> Ref {
    Ref::from_schema_name(name)
}

fn json_content(name: String) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema_ref(name))).build()
}

/// Builds the document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    // Each body type with the types it refers to (enums, nested bodies), once each.
    let mut schemas: Vec<endpoint::Schema> = Vec::new();
    endpoint::register::<ErrorBody>(&mut schemas);
    for op in ROUTES {
        let mut operation = OperationBuilder::new().summary(Some(op.summary)).response(
            "default",
            ResponseBuilder::new()
                .description("Error: `error.kind` says which (HTTP status by kind)")
                .content(
                    "application/json",
                    json_content(ErrorBody::name().into_owned()),
                ),
        );
        operation = match op.response_schema {
            Some(resp) => operation.response(
                "200",
                ResponseBuilder::new()
                    .description("Success")
                    .content("application/json", json_content(resp(&mut schemas))),
            ),
            None => operation.response("204", ResponseBuilder::new().description("Success")),
        };
        if let Some(req) = op.request_schema {
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", json_content(req(&mut schemas)))
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
            Caller::Anyone | Caller::Admin => operation,
        };
        // Path parameters come from the path itself, so none can be left undocumented.
        for name in op.parameters() {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        let method = match op.method {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
        };
        paths = paths.path(op.path, PathItem::new(method, operation.build()));
    }
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
        // finish, activate, revoke, challenges, pair and keychain sync each take one.
        assert_eq!(checked, 6);
    }
}
