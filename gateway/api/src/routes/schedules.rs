//! `/v1/instances/{instance_uuid}/schedules`: saves on a cron timetable with a retention
//! (issue 12, point 2).

use axum::extract::State as AppStateExt;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use snapgate_core::service::{RetentionEdit, ScheduleEdit, ScheduleInput};
use snapgate_core::{Retention, SaveMode, Schedule};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::{Body, PathParams};
use crate::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// Five fields (`minute hour day-of-month month day-of-week`), six (seconds first) or
    /// seven (a year last); `L`, `#`, `W`, names and `@hourly`/`@daily`/`@weekly`/`@monthly`.
    #[schema(min_length = 1, max_length = 255)]
    pub cron: String,
    /// IANA time zone the timetable and the name's fields are read in; `UTC` when absent.
    #[schema(min_length = 1, max_length = 64)]
    pub time_zone: Option<String>,
    /// The name of each state: text with the date fields `%Y %m %d %H %M %S` (at least one)
    /// and `%%`; every name it makes must follow the name rules.
    #[schema(min_length = 2, max_length = 255)]
    pub name_pattern: String,
    /// The save mode; the gateway's configured mode when absent.
    pub mode: Option<SaveMode>,
    /// `true` when absent.
    pub enabled: Option<bool>,
    /// No rule set (or absent): nothing is deleted.
    pub retention: Option<Retention>,
}

/// A JSON merge-patch of a schedule: a field left out stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulePatchBody {
    #[schema(min_length = 1, max_length = 255)]
    pub cron: Option<String>,
    #[schema(min_length = 1, max_length = 64)]
    pub time_zone: Option<String>,
    #[schema(min_length = 2, max_length = 255)]
    pub name_pattern: Option<String>,
    /// `null`: the gateway's configured mode.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<SaveMode>)]
    pub mode: Option<Option<SaveMode>>,
    pub enabled: Option<bool>,
    /// Merged rule by rule (`null` removes a rule); `"retention": null` removes them all.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RetentionPatchBody>)]
    pub retention: Option<Option<RetentionPatchBody>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionPatchBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub keep_last: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub keep_hourly: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub keep_daily: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub keep_weekly: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub keep_monthly: Option<Option<u32>>,
}

/// Tells a member sent as `null` (`Some(None)`) from one left out (`None`, by `default`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Decoded by the CLI too.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    /// Oldest first (a tenant has at most `lifecycle.max_schedules_per_tenant`).
    pub values: Vec<Schedule>,
}

#[utoipa::path(get, path = "/v1/instances/{instance_uuid}/schedules", tag = "schedules",
    operation_id = "list_schedules", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path)),
    responses((status = 200, body = ScheduleList), (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn list(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(instance): PathParams<Uuid>,
) -> Result<Json<ScheduleList>, ApiError> {
    let values = app.service.list_schedules(&caller, instance).await?;
    Ok(Json(ScheduleList { values }))
}

#[utoipa::path(post, path = "/v1/instances/{instance_uuid}/schedules", tag = "schedules",
    operation_id = "create_schedule", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path)), request_body = ScheduleBody,
    responses((status = 201, body = Schedule, headers(("Location" = String))),
        (status = 403, description = "`forbidden` (role), `schedule_limit_exceeded`", body = snapgate_core::ErrorBody),
        (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn create(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(instance): PathParams<Uuid>,
    Body(body): Body<ScheduleBody>,
) -> Result<Response, ApiError> {
    let input = ScheduleInput {
        cron: body.cron,
        time_zone: body.time_zone,
        name_pattern: body.name_pattern,
        mode: body.mode,
        enabled: body.enabled,
        retention: body.retention,
    };
    let schedule = app
        .service
        .create_schedule(&caller, instance, input)
        .await?;
    let location = format!("/v1/instances/{instance}/schedules/{}", schedule.uuid);
    let mut response = (StatusCode::CREATED, Json(schedule)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/v1/instances/{instance_uuid}/schedules/{schedule_uuid}",
    tag = "schedules", operation_id = "get_schedule", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path), ("schedule_uuid" = Uuid, Path)),
    responses((status = 200, body = Schedule), (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn get(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams((instance, id)): PathParams<(Uuid, Uuid)>,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(app.service.get_schedule(&caller, instance, id).await?))
}

#[utoipa::path(patch, path = "/v1/instances/{instance_uuid}/schedules/{schedule_uuid}",
    tag = "schedules", operation_id = "update_schedule", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path), ("schedule_uuid" = Uuid, Path)),
    request_body = SchedulePatchBody,
    responses((status = 200, body = Schedule), (status = 403, body = snapgate_core::ErrorBody),
        (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn update(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams((instance, id)): PathParams<(Uuid, Uuid)>,
    Body(body): Body<SchedulePatchBody>,
) -> Result<Json<Schedule>, ApiError> {
    let edit = ScheduleEdit {
        cron: body.cron,
        time_zone: body.time_zone,
        name_pattern: body.name_pattern,
        mode: body.mode,
        enabled: body.enabled,
        retention: body.retention.map(|r| {
            r.map(|r| RetentionEdit {
                keep_last: r.keep_last,
                keep_hourly: r.keep_hourly,
                keep_daily: r.keep_daily,
                keep_weekly: r.keep_weekly,
                keep_monthly: r.keep_monthly,
            })
        }),
    };
    Ok(Json(
        app.service
            .update_schedule(&caller, instance, id, edit)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/instances/{instance_uuid}/schedules/{schedule_uuid}",
    tag = "schedules", operation_id = "delete_schedule", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path), ("schedule_uuid" = Uuid, Path)),
    responses((status = 204, description = "deleted; the states it made stay"),
        (status = 403, body = snapgate_core::ErrorBody),
        (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn delete(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams((instance, id)): PathParams<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    app.service.delete_schedule(&caller, instance, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
