//! The event log (issue 12, point 4): every change is one event in a persisted, ordered log.
//!
//! An event is appended with one plain INSERT (no lock, no counter) and has no public order yet;
//! the sequencer ([`crate::service::EventBus`]) numbers committed events densely (`seq` 1, 2,
//! 3 …), one pass at a time, so a reader that has seen every event up to `seq = k` never later
//! sees a new one at or below `k`. The contract both readers (SSE, webhooks) rely on is
//! `docs/ARCHITECTURE.md`'s "Events".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::TenantId;

/// What happened. Serialized as the dotted strings of [`EventKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventKind {
    #[serde(rename = "state.saved")]
    StateSaved,
    #[serde(rename = "state.applied")]
    StateApplied,
    #[serde(rename = "state.deleted")]
    StateDeleted,
    #[serde(rename = "state.failed")]
    StateFailed,
    #[serde(rename = "state.expired")]
    StateExpired,
    #[serde(rename = "operation.progress")]
    OperationProgress,
    #[serde(rename = "operation.cancelled")]
    OperationCancelled,
    #[serde(rename = "schedule.run")]
    ScheduleRun,
    #[serde(rename = "schedule.skipped")]
    ScheduleSkipped,
    #[serde(rename = "quota.exceeded")]
    QuotaExceeded,
    #[serde(rename = "policy.denied")]
    PolicyDenied,
}

impl EventKind {
    pub const ALL: &'static [EventKind] = &[
        EventKind::StateSaved,
        EventKind::StateApplied,
        EventKind::StateDeleted,
        EventKind::StateFailed,
        EventKind::StateExpired,
        EventKind::OperationProgress,
        EventKind::OperationCancelled,
        EventKind::ScheduleRun,
        EventKind::ScheduleSkipped,
        EventKind::QuotaExceeded,
        EventKind::PolicyDenied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::StateSaved => "state.saved",
            EventKind::StateApplied => "state.applied",
            EventKind::StateDeleted => "state.deleted",
            EventKind::StateFailed => "state.failed",
            EventKind::StateExpired => "state.expired",
            EventKind::OperationProgress => "operation.progress",
            EventKind::OperationCancelled => "operation.cancelled",
            EventKind::ScheduleRun => "schedule.run",
            EventKind::ScheduleSkipped => "schedule.skipped",
            EventKind::QuotaExceeded => "quota.exceeded",
            EventKind::PolicyDenied => "policy.denied",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event kind: {s}"))
    }
}

/// An event to append: no `seq` yet (the sequencer gives it one after its transaction commits).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event's id (webhooks send it as `webhook-id`).
    pub id: Uuid,
    pub kind: EventKind,
    pub tenant: TenantId,
    pub instance_uuid: Option<Uuid>,
    pub state_uuid: Option<Uuid>,
    pub operation_uuid: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    /// A JSON object with the kind's details (docs/API.md, "Events").
    pub data: serde_json::Value,
}

impl NewEvent {
    /// An event of `kind` in `tenant` now, with a fresh id and no subjects.
    pub fn new(kind: EventKind, tenant: impl Into<TenantId>, data: serde_json::Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind,
            tenant: tenant.into(),
            instance_uuid: None,
            state_uuid: None,
            operation_uuid: None,
            occurred_at: Utc::now(),
            data,
        }
    }
}

/// A numbered event, as readers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// The public order: dense, increasing, the SSE `id:` (resume with `Last-Event-ID`).
    pub seq: i64,
    pub id: Uuid,
    pub kind: EventKind,
    pub tenant: String,
    pub instance_uuid: Option<Uuid>,
    pub state_uuid: Option<Uuid>,
    pub operation_uuid: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    /// The kind's details (docs/API.md, "Events").
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Which events a reader wants. Empty `kinds` means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub tenant: Option<String>,
    pub kinds: Vec<EventKind>,
    pub instance: Option<Uuid>,
}

impl EventFilter {
    /// Whether `event` passes (the same test the store's query makes).
    pub fn matches(&self, event: &Event) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == event.tenant)
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self.instance.is_none_or(|i| event.instance_uuid == Some(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_as_their_strings() {
        for kind in EventKind::ALL {
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), *kind);
        }
        assert!("state.nope".parse::<EventKind>().is_err());
    }
}
