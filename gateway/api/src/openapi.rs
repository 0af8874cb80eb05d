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
    modifiers(&BearerAuth),
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

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
