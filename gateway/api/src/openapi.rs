//! The OpenAPI 3.1 document, generated from the handlers' annotations.
//!
//! An annotation lists what its handler answers. What an operation answers because of what it
//! *is* — authenticated, with path or query parameters, with a JSON body — comes from the
//! shared extractors and layers (`auth.rs`, `extract.rs`, `error.rs`, `middleware.rs`), not
//! from its handler; [`CommonResponses`] adds those statuses from the operation's shape, so no
//! annotation can forget one. `tests/tests/openapi_document.rs` validates the result against
//! the OpenAPI 3.1 schema and checks it against the router.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::OpenApi;

use crate::routes::{
    admin, events, lifecycle, listings, operations, quotas, schedules, states, system, webhooks,
};

/// The security scheme every `/v1` operation names.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(title = "snapgate", description = "Live VM states (snapshots with RAM) for multi-tenant clouds"),
    paths(
        listings::me, listings::instances, listings::tenants, listings::hosts,
        listings::operations,
        states::list, states::get, states::save, states::delete, states::apply,
        lifecycle::update_state,
        schedules::list, schedules::create, schedules::get, schedules::update, schedules::delete,
        operations::get, operations::cancel, operations::wait,
        quotas::get, quotas::put, quotas::delete,
        webhooks::create, webhooks::list, webhooks::get, webhooks::delete,
        admin::set_owner, admin::decisions, admin::plugins, admin::reload,
        events::stream,
        system::healthz, system::readyz, system::openapi,
    ),
    components(schemas(snapgate_core::ErrorBody, snapgate_core::events::Event)),
    modifiers(&BearerAuth, &CommonResponses),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The shared error answers, as components: (name, status, description).
const SHARED: [(&str, &str, &str); 8] = [
    (
        "BadRequest",
        "400",
        "A path or query parameter, or the JSON body, is malformed or invalid \
         (`invalid_path`, `invalid_parameter`, `malformed_json`, `invalid_body`, …), or the \
         `Idempotency-Key` header is malformed (`invalid_idempotency_key`).",
    ),
    (
        "Unauthenticated",
        "401",
        "The bearer token is missing, malformed, invalid or expired (`unauthenticated`).",
    ),
    (
        "NotFound",
        "404",
        "Something the path names does not exist or is not the caller's (the same answer \
         for both), or a parameter left the route (`not_found`).",
    ),
    (
        "PayloadTooLarge",
        "413",
        "The body is larger than `api.max_body_bytes` (`body_too_large`).",
    ),
    (
        "UnsupportedMediaType",
        "415",
        "The body is not sent as `Content-Type: application/json` (`unsupported_media_type`).",
    ),
    (
        "InternalError",
        "500",
        "A fault of the gateway, never of the request (`internal_error`); the detail is in \
         the gateway's log under the request id.",
    ),
    (
        "Unavailable",
        "503",
        "A backend the call needs (database, quota store, compute host) is unavailable, or \
         the gateway has `api.max_requests_in_flight` requests in flight (`overloaded`); \
         `Retry-After` says when to try again where known.",
    ),
    (
        "RequestTimeout",
        "504",
        "The call did not finish within `api.request_timeout_secs` (`request_timeout`); a \
         state-changing call may still take effect: read it back.",
    ),
];

/// Adds the statuses that come from an operation's shape (see the module's comment).
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, status, description) in SHARED {
            components.responses.insert(
                name.to_owned(),
                RefOr::T(error_response(status, description)),
            );
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            // Every route but `/healthz` is behind the load bounds (`middleware::bound`).
            let bounded = path != "/healthz";
            for op in operations_mut(item) {
                add_shape_statuses(op, bounded);
            }
        }
    }
}

fn add_shape_statuses(op: &mut Operation, bounded: bool) {
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_path_params = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let has_body = op.request_body.is_some();
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());

    let mut shared = Vec::new();
    if !params.is_empty() || has_body {
        shared.push(("400", "BadRequest"));
    }
    if authenticated {
        // The `Authenticated` extractor refuses before the handler runs; every authenticated
        // call then reaches the service and its backends.
        shared.push(("401", "Unauthenticated"));
        shared.push(("500", "InternalError"));
        shared.push(("503", "Unavailable"));
    }
    if bounded {
        shared.push(("503", "Unavailable"));
        shared.push(("504", "RequestTimeout"));
    }
    if has_path_params {
        shared.push(("404", "NotFound"));
    }
    if has_body {
        shared.push(("413", "PayloadTooLarge"));
        shared.push(("415", "UnsupportedMediaType"));
    }
    for (status, name) in shared {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}

fn error_response(status: &str, description: &str) -> Response {
    let mut builder = ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    );
    let string = || {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
    };
    match status {
        "401" => {
            builder = builder.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(string())
                    .description(Some("`Bearer realm=\"snapgate\"`"))
                    .build(),
            )
        }
        "503" => {
            builder = builder.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(
                        utoipa::openapi::schema::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::Type::Integer),
                    )
                    .description(Some("Seconds to wait before trying again."))
                    .build(),
            )
        }
        _ => {}
    }
    builder.build()
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The document as served: the generated one with the text rules filled in (see
/// [`crate::patterns`]). Built once: the rules' classes scan every code point.
pub fn document() -> serde_json::Value {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
            crate::patterns::fill(&mut doc);
            doc
        })
        .clone()
}
