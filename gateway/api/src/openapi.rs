//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

use crate::routes::{admin, operations, quotas, states, system};

#[derive(OpenApi)]
#[openapi(
    info(title = "snapgate", description = "Live VM states (snapshots with RAM) for multi-tenant clouds"),
    paths(
        states::list, states::get, states::save, states::delete, states::apply,
        operations::get, operations::wait,
        quotas::get, quotas::put, quotas::delete,
        admin::set_owner, admin::decisions, admin::plugins, admin::reload,
        system::healthz, system::readyz,
    ),
    modifiers(&BearerAuth, &LoadBounds),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every `/v1` call can meet the gateway's load bounds (see `middleware::bound`): 503
/// `overloaded` with `Retry-After` beyond `api.max_requests_in_flight`, 504 `request_timeout`
/// beyond `api.request_timeout_secs`.
struct LoadBounds;

impl utoipa::Modify for LoadBounds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build()
        };
        let overloaded = ResponseBuilder::new()
            .description("`overloaded`: too many requests in flight; `Retry-After`")
            .content("application/json", error())
            .build();
        let timeout = ResponseBuilder::new()
            .description("`request_timeout`: not finished within `api.request_timeout_secs`")
            .content("application/json", error())
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                responses
                    .entry("503".into())
                    .or_insert_with(|| overloaded.clone().into());
                responses
                    .entry("504".into())
                    .or_insert_with(|| timeout.clone().into());
            }
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
