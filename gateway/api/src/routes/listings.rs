//! Listings: the caller (`/v1/me`), the instances it may see, tenants with their quotas, the
//! compute hosts and the operations in flight. The service filters each through the tenant
//! wall; nothing here checks a role.

use axum::extract::State as AppStateExt;
use axum::Json;
use serde::{Deserialize, Serialize};
use snapgate_core::service::{CallerView, HostView, InstanceSummary, OperationInFlight, QuotaView};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::routes::states::Link;
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InstanceQuery {
    /// Page size (default 50); a larger one is cut to 500.
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// The uuid of the last instance of the previous page.
    pub marker: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceList {
    pub values: Vec<InstanceSummary>,
    /// `rel = next` when more follow.
    pub instances_links: Vec<Link>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub values: Vec<QuotaView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HostList {
    pub values: Vec<HostView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperationList {
    pub values: Vec<OperationInFlight>,
}

/// The caller as the gateway reads its token: tenant, roles, operator scope.
#[utoipa::path(get, path = "/v1/me", tag = "tenancy", operation_id = "whoami",
    security(("bearer" = [])),
    responses((status = 200, body = CallerView)))]
pub async fn me(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
) -> Json<CallerView> {
    Json(app.service.whoami(&caller))
}

/// The instances the caller may see, by uuid: its tenant's, or every instance for the operator
/// (unowned ones with `owner: null`). From the placement index, each described on its host.
#[utoipa::path(get, path = "/v1/instances", tag = "tenancy", operation_id = "list_instances",
    security(("bearer" = [])), params(InstanceQuery),
    responses((status = 200, body = InstanceList)))]
pub async fn instances(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    QueryParams(q): QueryParams<InstanceQuery>,
) -> Result<Json<InstanceList>, ApiError> {
    let page = app
        .service
        .list_instances(
            &caller,
            q.limit.map(|l| u64::try_from(l).unwrap_or(0)),
            q.marker,
        )
        .await?;
    let mut links = Vec::new();
    if page.more {
        if let Some(last) = page.items.last() {
            let limit = q.limit.map(|l| format!("&limit={l}")).unwrap_or_default();
            links.push(Link {
                rel: "next".into(),
                href: format!("/v1/instances?marker={}{limit}", last.uuid),
            });
        }
    }
    Ok(Json(InstanceList {
        values: page.items,
        instances_links: links,
    }))
}

/// Tenants with their limits and usage: every tenant the gateway knows of for the operator,
/// the caller's own otherwise.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenancy", operation_id = "list_tenants",
    security(("bearer" = [])),
    responses((status = 200, body = TenantList)))]
pub async fn tenants(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<TenantList>, ApiError> {
    Ok(Json(TenantList {
        values: app.service.list_tenants(&caller).await?,
    }))
}

/// The compute hosts: breaker state and the instances recorded on each (operator scope).
#[utoipa::path(get, path = "/v1/hosts", tag = "admin", operation_id = "list_hosts",
    security(("bearer" = [])),
    responses((status = 200, body = HostList), (status = 403, body = snapgate_core::ErrorBody)))]
pub async fn hosts(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<HostList>, ApiError> {
    Ok(Json(HostList {
        values: app.service.list_hosts(&caller).await?,
    }))
}

/// Operations not yet finished, oldest first: the caller's tenant's, every tenant's for the
/// operator.
#[utoipa::path(get, path = "/v1/operations", tag = "operations",
    operation_id = "list_operations_in_flight", security(("bearer" = [])),
    responses((status = 200, body = OperationList)))]
pub async fn operations(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<OperationList>, ApiError> {
    Ok(Json(OperationList {
        values: app.service.list_operations_in_flight(&caller).await?,
    }))
}
