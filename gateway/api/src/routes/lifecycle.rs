//! `PATCH /v1/instances/{instance_uuid}/states/{state_uuid}`: a state's name, description and
//! expiry (issue 12, point 1).

use axum::extract::State as AppStateExt;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use snapgate_core::service::StateEdit;
use snapgate_core::{ServiceError, State};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::{Body, PathParams};
use crate::AppState;

/// A JSON merge-patch (RFC 7396) of a state: a field left out stays as it is; `null` clears
/// `description` or `expires_at`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatePatchBody {
    /// A new name, by the save's rules (docs/API.md, "Names"); unique per instance (409
    /// `duplicate_name`). It cannot be cleared.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, min_length = 1, max_length = 255, pattern = "@state_name")]
    pub name: Option<Option<String>>,
    /// A new description (the save's rules), or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 1024, pattern = "@description")]
    pub description: Option<Option<String>>,
    /// When the state is deleted (RFC 3339; in the future, at most
    /// `lifecycle.max_expiry_days` away), or `null` to keep it until deleted.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// Tells a member sent as `null` (`Some(None)`) from one left out (`None`, by `default`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[utoipa::path(patch, path = "/v1/instances/{instance_uuid}/states/{state_uuid}", tag = "states",
    operation_id = "update_state", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path), ("state_uuid" = Uuid, Path)),
    request_body = StatePatchBody,
    responses((status = 200, description = "the state as it is now", body = State),
        (status = 403, body = snapgate_core::ErrorBody),
        (status = 404, body = snapgate_core::ErrorBody),
        (status = 409, description = "`duplicate_name`, `state_not_available` (an operation is on the state), `state_expired`", body = snapgate_core::ErrorBody)))]
pub async fn update_state(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams((instance, state)): PathParams<(Uuid, Uuid)>,
    Body(body): Body<StatePatchBody>,
) -> Result<Json<State>, ApiError> {
    let name = match body.name {
        Some(None) => {
            return Err(ServiceError::bad_request(
                "invalid_name",
                "a state's name cannot be removed",
            )
            .into())
        }
        Some(Some(name)) => Some(name),
        None => None,
    };
    let edit = StateEdit {
        name,
        description: body.description,
        expires_at: body.expires_at,
    };
    Ok(Json(
        app.service
            .update_state(&caller, instance, state, edit)
            .await?,
    ))
}
