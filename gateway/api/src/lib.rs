//! snapgate-api: HTTP ⇄ domain. Handlers parse the request, call the service with a
//! [`Caller`](snapgate_core::auth::Caller) and plain values, and turn the answer (or the
//! [`ServiceError`](snapgate_core::ServiceError)) into a response. No flow logic lives here.

pub mod auth;
pub mod error;
pub mod extract;
mod middleware;
pub mod openapi;
pub mod routes;
mod warnings;

use std::sync::Arc;

use async_trait::async_trait;
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use snapgate_core::service::Service;

pub use auth::{AuthConfig, Authenticator, JwtConfig};
pub use error::ApiError;

/// Admin actions that need the gateway's wiring (the policy engine's reload).
#[async_trait]
pub trait AdminHooks: Send + Sync + 'static {
    /// Rebuilds the policy chain from the configuration and swaps it in; returns the new chain.
    async fn reload_policy(&self) -> Result<serde_json::Value, String>;
    /// The loaded chain, in order.
    fn policy_chain(&self) -> serde_json::Value;
}

/// Used when the gateway has no plugin chain configured.
#[derive(Debug, Default)]
pub struct NoAdminHooks;

#[async_trait]
impl AdminHooks for NoAdminHooks {
    async fn reload_policy(&self) -> Result<serde_json::Value, String> {
        Ok(serde_json::json!({ "plugins": [] }))
    }
    fn policy_chain(&self) -> serde_json::Value {
        serde_json::json!({ "plugins": [] })
    }
}

/// HTTP-level limits.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    pub max_body_bytes: usize,
    pub max_wait_secs: u64,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_wait_secs: 300,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub auth: Arc<Authenticator>,
    pub admin: Arc<dyn AdminHooks>,
    pub metrics: Option<PrometheusHandle>,
    pub limits: ApiLimits,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    let router = routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            router.route(path, handlers)
        })
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .with_state(state);
    middleware::apply(router, limits)
}

/// The paths the router serves, for the test that holds them and the OpenAPI document equal.
pub fn route_paths() -> Vec<&'static str> {
    routes().into_iter().map(|(path, _)| path).collect()
}

/// Every route, in one list: the router is built from it and `route_paths` reads it.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    use routes::{admin, operations, quotas, states, system};
    vec![
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
            get(states::get).delete(states::delete),
        ),
        ("/v1/instances/{instance_uuid}/owner", put(admin::set_owner)),
        ("/v1/operations/{operation_uuid}", get(operations::get)),
        (
            "/v1/operations/{operation_uuid}/wait",
            get(operations::wait),
        ),
        (
            "/v1/quotas/{tenant_id}",
            get(quotas::get).put(quotas::put).delete(quotas::delete),
        ),
        ("/v1/policy/decisions", get(admin::decisions)),
        ("/v1/policy/plugins", get(admin::plugins)),
        ("/v1/policy/reload", post(admin::reload)),
        ("/healthz", get(system::healthz)),
        ("/readyz", get(system::readyz)),
        ("/metrics", get(system::metrics)),
        ("/openapi.json", get(system::openapi)),
    ]
}
