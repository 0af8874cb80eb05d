//! `GET /v1/events`: the event log as Server-Sent Events (issue 12, point 4).
//!
//! Only HTTP here: the service opens the stream (tenant wall, per-tenant stream limit, where it
//! starts) and reads the log from the database, so every gateway serves the same stream.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::State as AppStateExt;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{self, Stream};
use serde::Deserialize;
use snapgate_core::events::{Event, EventKind};
use snapgate_core::service::{EventStream, EventStreamRequest, STREAM_KEEP_ALIVE};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Resume after this event `seq` (the `Last-Event-ID` header wins when both are sent).
    /// Without either, the stream starts at the newest event: live events only.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Comma-separated event kinds (`state.saved,state.failed`); all when absent.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kinds: Option<String>,
    /// Only events about this instance.
    pub instance: Option<Uuid>,
    /// Operators only: one tenant's events. A tenant's caller always reads its own tenant;
    /// this parameter is ignored for it.
    pub tenant: Option<String>,
}

fn parse_kinds(text: Option<&str>) -> Result<Vec<EventKind>, ApiError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            k.parse::<EventKind>().map_err(|_| {
                ApiError::bad_request(
                    "unknown_event_type",
                    format!(
                        "unknown event type {k:?}; known: {}",
                        EventKind::ALL
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
        })
        .collect()
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|seq| *seq >= 0)
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_event_id",
                "Last-Event-ID must be the seq of an event (a non-negative integer)",
            )
        })
}

fn sse_event(event: &Event) -> SseEvent {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .id(event.seq.to_string())
        .event(event.kind.as_str())
        .data(data)
}

/// The events, one SSE message each; ends when the gateway shuts down.
fn messages(stream: EventStream) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(
        (stream, VecDeque::<Event>::new()),
        |(mut stream, mut queue)| async move {
            loop {
                if let Some(event) = queue.pop_front() {
                    return Some((Ok(sse_event(&event)), (stream, queue)));
                }
                match stream.next_batch().await {
                    Ok(Some(batch)) => queue.extend(batch),
                    Ok(None) => return None,
                    Err(e) => {
                        // The client reconnects with Last-Event-ID and misses nothing.
                        tracing::warn!(error = %e, position = stream.position(), "event stream ended: cannot read the log");
                        return None;
                    }
                }
            }
        },
    )
}

/// Server-Sent Events: `id: <seq>`, `event: <kind>`, `data: <Event JSON>`; a comment every
/// 15 s keeps the connection alive. Resume with `Last-Event-ID` (or `?after=`).
#[utoipa::path(get, path = "/v1/events", tag = "events",
    operation_id = "stream_events", security(("bearer" = [])),
    params(EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "resume after this event seq")),
    responses(
        (status = 200, description = "a stream of events (`text/event-stream`), each `data` an Event", content_type = "text/event-stream", body = Event),
        (status = 400, description = "`unknown_event_type`, `invalid_event_id`", body = snapgate_core::ErrorBody),
        (status = 429, description = "the tenant holds `api.max_event_streams_per_tenant` streams on this gateway already (`too_many_event_streams`, `Retry-After`)", body = snapgate_core::ErrorBody)))]
pub async fn stream(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    QueryParams(q): QueryParams<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let kinds = parse_kinds(q.kinds.as_deref())?;
    let after = match last_event_id(&headers)? {
        Some(seq) => Some(seq),
        None => q.after,
    };
    let opened = app
        .service
        .open_event_stream(
            &caller,
            EventStreamRequest {
                after,
                kinds,
                instance: q.instance,
                tenant: q.tenant,
            },
        )
        .await?;
    Ok(Sse::new(messages(opened)).keep_alive(KeepAlive::new().interval(STREAM_KEEP_ALIVE)))
}
