//! snapgate-api: HTTP ⇄ domain. Handlers parse the request, call the service with a
//! [`Caller`](snapgate_core::auth::Caller) and plain values, and turn the answer (or the
//! [`ServiceError`](snapgate_core::ServiceError)) into a response. No flow logic lives here.

pub mod auth;
pub mod console;
pub mod error;
pub mod extract;
mod middleware;
pub mod openapi;
mod patterns;
pub mod routes;
mod warnings;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post, put, MethodRouter};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use snapgate_core::service::Service;

pub use auth::{AuthConfig, Authenticator, JwtConfig, OperatorClaim};
pub use error::ApiError;

/// HTTP-level limits.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    pub max_body_bytes: usize,
    pub max_wait_secs: u64,
    /// Requests served at once (all routes but `/healthz`); more answer 503 `overloaded`.
    pub max_requests_in_flight: usize,
    /// How long the gateway waits for a handler before answering 504 `request_timeout`
    /// (`/wait` gets `max_wait_secs` on top).
    pub request_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_wait_secs: 300,
            max_requests_in_flight: 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub auth: Arc<Authenticator>,
    /// Rendered only on the operator's listener ([`admin_router`]).
    pub metrics: Option<PrometheusHandle>,
    pub limits: ApiLimits,
    /// What the web console at `/ui` is told (see [`console`]).
    pub console: console::ConsoleOptions,
}

/// The public HTTP surface: the API, `/healthz`, `/readyz` (status only), the OpenAPI
/// document and the web console (`/ui`, not an API operation: outside [`routes`]). Metrics and
/// readiness detail are on [`admin_router`].
pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    let console = console::router(&state.console);
    let router = routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            router.route(path, handlers)
        })
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .with_state(state)
        .merge(console);
    middleware::apply(router, limits)
}

/// The operator's surface, for a listener of its own (`api.admin_listen`, kept off the public
/// network): `/metrics`, `/readyz` with every check's detail (error texts, host names), and
/// `/healthz`. No token: who can reach the listener is the access control.
pub fn admin_router(state: AppState) -> Router {
    use routes::system;
    let router = Router::new()
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz_detail))
        .route("/metrics", get(system::metrics))
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .with_state(state);
    middleware::apply_admin(router)
}

/// The paths the router serves, for the test that holds them and the OpenAPI document equal.
pub fn route_paths() -> Vec<&'static str> {
    routes().into_iter().map(|(path, _)| path).collect()
}

/// Every route, in one list: the router is built from it and `route_paths` reads it.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    use routes::{
        admin, events, lifecycle, listings, operations, quotas, schedules, states, system, webhooks,
    };
    vec![
        ("/v1/me", get(listings::me)),
        ("/v1/instances", get(listings::instances)),
        (
            "/v1/instances/{instance_uuid}/states",
            get(states::list).post(states::save),
        ),
        (
            "/v1/instances/{instance_uuid}/states/apply",
            post(states::apply),
        ),
        (
            "/v1/instances/{instance_uuid}/states/{state_uuid}",
            get(states::get)
                .delete(states::delete)
                .patch(lifecycle::update_state),
        ),
        (
            "/v1/instances/{instance_uuid}/schedules",
            get(schedules::list).post(schedules::create),
        ),
        (
            "/v1/instances/{instance_uuid}/schedules/{schedule_uuid}",
            get(schedules::get)
                .patch(schedules::update)
                .delete(schedules::delete),
        ),
        ("/v1/instances/{instance_uuid}/owner", put(admin::set_owner)),
        ("/v1/operations", get(listings::operations)),
        (
            "/v1/operations/{operation_uuid}",
            get(operations::get).delete(operations::cancel),
        ),
        (
            "/v1/operations/{operation_uuid}/wait",
            get(operations::wait),
        ),
        (
            "/v1/quotas/{tenant_id}",
            get(quotas::get).put(quotas::put).delete(quotas::delete),
        ),
        ("/v1/webhooks", get(webhooks::list).post(webhooks::create)),
        (
            "/v1/webhooks/{webhook_uuid}",
            get(webhooks::get).delete(webhooks::delete),
        ),
        ("/v1/events", get(events::stream)),
        ("/v1/tenants", get(listings::tenants)),
        ("/v1/hosts", get(listings::hosts)),
        ("/v1/policy/decisions", get(admin::decisions)),
        ("/v1/policy/plugins", get(admin::plugins)),
        ("/v1/policy/reload", post(admin::reload)),
        ("/healthz", get(system::healthz)),
        ("/readyz", get(system::readyz)),
        ("/openapi.json", get(system::openapi)),
    ]
}
