//! `/v1/instances/{instance_uuid}/states`: the seed's five calls.

use axum::extract::State as AppStateExt;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use snapgate_core::service::{ChangeInput, SaveInput, StateChange};
use snapgate_core::{Operation, SaveMode, State};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::{Body, IdempotencyKey, PathParams, QueryParams};
use crate::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveBody {
    /// 1–255 characters, stored in NFC and unique per instance: no control, format (zero-width,
    /// bidi), line/paragraph separator or private-use character, at least one visible
    /// character, no whitespace at either end (docs/API.md, "Names").
    #[schema(min_length = 1, max_length = 255, pattern = "@state_name")]
    pub name: String,
    /// At most 1024 characters, stored in NFC; the name's characters plus newline and tab.
    #[schema(max_length = 1024, pattern = "@description")]
    pub description: Option<String>,
    /// `internal`, `external` or `auto`; the gateway's configured mode when absent.
    pub mode: Option<SaveMode>,
    /// When the maintenance loop deletes the state (RFC 3339; in the future, at most
    /// `lifecycle.max_expiry_days` away); kept until deleted when absent or `null`.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    /// The state to apply.
    pub uuid: Uuid,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size (default 50); a larger one is cut to 500.
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// The uuid of the last state of the previous page.
    pub marker: Option<Uuid>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DryRunQuery {
    /// Run authentication, quota and the policy chain, change nothing, return the verdict.
    #[serde(default)]
    pub dry_run: bool,
}

// The answers below also derive `Deserialize`: the CLI decodes these very records (unknown
// members are ignored, so a client survives a newer gateway's additions).

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Link {
    pub rel: String,
    pub href: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StateList {
    pub values: Vec<State>,
    /// OpenStack-style pagination links (`rel = next` when more follow).
    pub states_links: Vec<Link>,
}

/// A state just accepted for saving, with the operation doing the work.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SavedStateResponse {
    #[serde(flatten)]
    pub state: State,
    /// The operation doing the work: `GET /v1/operations/{operation}`.
    pub operation: Uuid,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// An accepted apply or delete.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OperationResponse {
    #[serde(flatten)]
    pub operation: Operation,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[utoipa::path(get, path = "/v1/instances/{instance_uuid}/states", tag = "states",
    operation_id = "list_states", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path), ListQuery),
    responses((status = 200, body = StateList), (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn list(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(instance): PathParams<Uuid>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<StateList>, ApiError> {
    let page = app
        .service
        // A negative limit is refused like 0 (the service's "at least 1").
        .list_states(
            &caller,
            instance,
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
                href: format!(
                    "/v1/instances/{instance}/states?marker={}{limit}",
                    last.uuid
                ),
            });
        }
    }
    Ok(Json(StateList {
        values: page.items,
        states_links: links,
    }))
}

#[utoipa::path(get, path = "/v1/instances/{instance_uuid}/states/{state_uuid}", tag = "states",
    operation_id = "get_state", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path), ("state_uuid" = Uuid, Path)),
    responses((status = 200, body = State), (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn get(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams((instance, state)): PathParams<(Uuid, Uuid)>,
) -> Result<Json<State>, ApiError> {
    Ok(Json(app.service.get_state(&caller, instance, state).await?))
}

#[utoipa::path(post, path = "/v1/instances/{instance_uuid}/states", tag = "states",
    operation_id = "save_state", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path), DryRunQuery,
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "@idempotency_key",
            description = "Makes retries safe: a key of the client's choosing (1–255 printable ASCII characters, no space), new for each request and the same on its retries. A retry gets the first answer back, from any gateway; the key with another request is a 422. Kept 24 h (`api.idempotency_key_ttl_secs`); ignored by dry runs.")),
    request_body = SaveBody,
    responses((status = 202, body = SavedStateResponse, headers(("Location" = String), ("Idempotent-Replayed" = String, description = "`true` when this is the stored answer of an earlier request with the same Idempotency-Key"))),
        (status = 200, description = "dry run verdict", body = snapgate_core::service::DryRunVerdict),
        (status = 400, body = snapgate_core::ErrorBody), (status = 403, body = snapgate_core::ErrorBody),
        (status = 404, body = snapgate_core::ErrorBody),
        (status = 409, description = "`duplicate_name`, `instance_busy`, `state_not_available`, `instance_not_running`, `state_on_other_host`, or `idempotency_key_in_use`: a request with the same Idempotency-Key is still being processed (`Retry-After`)",
            body = snapgate_core::ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying (`idempotency_key_in_use`)"))),
        (status = 422, description = "The instance cannot get a memory snapshot (`unsupported_disk_format`, `host_devices_attached`, `snapshot_kind_conflict`), or `idempotency_key_reused`: the Idempotency-Key was used for another request", body = snapgate_core::ErrorBody),
        (status = 429, body = snapgate_core::ErrorBody),
        (status = 503, body = snapgate_core::ErrorBody)))]
pub async fn save(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(instance): PathParams<Uuid>,
    QueryParams(q): QueryParams<DryRunQuery>,
    IdempotencyKey(idempotency_key): IdempotencyKey,
    Body(body): Body<SaveBody>,
) -> Result<Response, ApiError> {
    let input = SaveInput {
        name: body.name,
        description: body.description,
        mode: body.mode,
        dry_run: q.dry_run,
        idempotency_key,
        expires_at: body.expires_at,
        schedule_id: None,
    };
    match app.service.save(&caller, instance, input).await? {
        StateChange::DryRun(v) => Ok(dry_run_response(v)),
        StateChange::Accepted(a) => {
            let location = format!("/v1/instances/{instance}/states/{}", a.state.uuid);
            let (warnings, replayed) = (a.warnings.clone(), a.replayed);
            let body = SavedStateResponse {
                state: a.state,
                operation: a.operation.uuid,
                warnings: a.warnings,
            };
            Ok(accepted(location, &warnings, replayed, Json(body)))
        }
    }
}

#[utoipa::path(delete, path = "/v1/instances/{instance_uuid}/states/{state_uuid}", tag = "states",
    operation_id = "delete_state", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path), ("state_uuid" = Uuid, Path), DryRunQuery,
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "@idempotency_key",
            description = "Makes retries safe: a key of the client's choosing (1–255 printable ASCII characters, no space), new for each request and the same on its retries. A retry gets the first answer back, from any gateway; the key with another request is a 422. Kept 24 h (`api.idempotency_key_ttl_secs`); ignored by dry runs.")),
    responses((status = 202, body = OperationResponse, headers(("Location" = String), ("Idempotent-Replayed" = String, description = "`true` when this is the stored answer of an earlier request with the same Idempotency-Key"))),
        (status = 200, description = "dry run verdict", body = snapgate_core::service::DryRunVerdict),
        (status = 403, body = snapgate_core::ErrorBody),
        (status = 404, body = snapgate_core::ErrorBody),
        (status = 409, description = "`duplicate_name`, `instance_busy`, `state_not_available`, `instance_not_running`, `state_on_other_host`, or `idempotency_key_in_use`: a request with the same Idempotency-Key is still being processed (`Retry-After`)",
            body = snapgate_core::ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying (`idempotency_key_in_use`)"))),
        (status = 422, description = "`idempotency_key_reused`: the Idempotency-Key was used for another request", body = snapgate_core::ErrorBody),
        (status = 429, description = "dry runs over `quota.dry_runs_per_minute` (`dry_run_rate_limited`, `Retry-After`)", body = snapgate_core::ErrorBody)))]
pub async fn delete(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams((instance, state)): PathParams<(Uuid, Uuid)>,
    QueryParams(q): QueryParams<DryRunQuery>,
    IdempotencyKey(idempotency_key): IdempotencyKey,
) -> Result<Response, ApiError> {
    let input = ChangeInput {
        dry_run: q.dry_run,
        idempotency_key,
    };
    operation_response(app.service.delete(&caller, instance, state, input).await?)
}

#[utoipa::path(post, path = "/v1/instances/{instance_uuid}/states/apply", tag = "states",
    operation_id = "apply_state", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path), DryRunQuery,
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "@idempotency_key",
            description = "Makes retries safe: a key of the client's choosing (1–255 printable ASCII characters, no space), new for each request and the same on its retries. A retry gets the first answer back, from any gateway; the key with another request is a 422. Kept 24 h (`api.idempotency_key_ttl_secs`); ignored by dry runs.")),
    request_body = ApplyBody,
    responses((status = 202, body = OperationResponse, headers(("Location" = String), ("Idempotent-Replayed" = String, description = "`true` when this is the stored answer of an earlier request with the same Idempotency-Key"))),
        (status = 200, description = "dry run verdict", body = snapgate_core::service::DryRunVerdict),
        (status = 403, body = snapgate_core::ErrorBody),
        (status = 404, body = snapgate_core::ErrorBody),
        (status = 409, description = "`duplicate_name`, `instance_busy`, `state_not_available`, `instance_not_running`, `state_on_other_host`, or `idempotency_key_in_use`: a request with the same Idempotency-Key is still being processed (`Retry-After`)",
            body = snapgate_core::ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying (`idempotency_key_in_use`)"))),
        (status = 422, description = "`idempotency_key_reused`: the Idempotency-Key was used for another request", body = snapgate_core::ErrorBody),
        (status = 429, description = "dry runs over `quota.dry_runs_per_minute` (`dry_run_rate_limited`, `Retry-After`)", body = snapgate_core::ErrorBody)))]
pub async fn apply(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(instance): PathParams<Uuid>,
    QueryParams(q): QueryParams<DryRunQuery>,
    IdempotencyKey(idempotency_key): IdempotencyKey,
    Body(body): Body<ApplyBody>,
) -> Result<Response, ApiError> {
    let input = ChangeInput {
        dry_run: q.dry_run,
        idempotency_key,
    };
    operation_response(
        app.service
            .apply(&caller, instance, body.uuid, input)
            .await?,
    )
}

fn operation_response(change: StateChange) -> Result<Response, ApiError> {
    match change {
        StateChange::DryRun(v) => Ok(dry_run_response(v)),
        StateChange::Accepted(a) => {
            let location = format!("/v1/operations/{}", a.operation.uuid);
            let (warnings, replayed) = (a.warnings.clone(), a.replayed);
            Ok(accepted(
                location,
                &warnings,
                replayed,
                Json(OperationResponse {
                    operation: a.operation,
                    warnings: a.warnings,
                }),
            ))
        }
    }
}

fn accepted(
    location: String,
    warnings: &[String],
    replayed: bool,
    body: impl IntoResponse,
) -> Response {
    let mut response = (StatusCode::ACCEPTED, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        response.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    crate::warnings::append(response.headers_mut(), warnings);
    response
}

fn dry_run_response(v: snapgate_core::service::DryRunVerdict) -> Response {
    let warnings = v.warnings.clone();
    let mut response = (StatusCode::OK, Json(v)).into_response();
    crate::warnings::append(response.headers_mut(), &warnings);
    response
}
