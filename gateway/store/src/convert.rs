//! Domain records ⇄ table rows. Enums are stored as their `as_str()` text, lists and the CPU
//! description as JSON text, timestamps in UTC truncated to microseconds (PostgreSQL's
//! precision), so both backends give back exactly what they were given.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use snapgate_core::ports::repository::DecisionRecord;
use snapgate_core::ports::{Decision, QuotaLimits, RepoError};
use snapgate_core::{CpuInfo, ErrorInfo, Operation, Progress, State};

use crate::entity::{instance_states, operations, policy_decisions, quota_limits};

/// The precision both backends keep.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn parse<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T, RepoError> {
    text.parse()
        .map_err(|e: String| RepoError::Other(format!("corrupt row: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, RepoError> {
    serde_json::from_str(text)
        .map_err(|e| RepoError::Other(format!("corrupt row: column {column}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, RepoError> {
    serde_json::to_string(value).map_err(|e| RepoError::Other(format!("cannot encode JSON: {e}")))
}

fn error_info(code: Option<String>, message: Option<String>) -> Option<ErrorInfo> {
    match (code, message) {
        (None, None) => None,
        (code, message) => Some(ErrorInfo {
            code: code.unwrap_or_default(),
            message: message.unwrap_or_default(),
        }),
    }
}

pub(crate) fn state_row(s: &State) -> Result<instance_states::ActiveModel, RepoError> {
    Ok(instance_states::ActiveModel {
        uuid: Set(s.uuid),
        name: Set(s.name.clone()),
        date: Set(micros(s.date)),
        instance_uuid: Set(s.instance_uuid),
        tenant_id: Set(s.tenant_id.clone()),
        status: Set(s.status.as_str().to_owned()),
        description: Set(s.description.clone()),
        host: Set(s.host.clone()),
        size_bytes: Set(s.size_bytes),
        memory_bytes: Set(s.memory_bytes),
        includes_memory: Set(s.includes_memory),
        disk_formats: Set(to_json(&s.disk_formats)?),
        cpu: Set(s.cpu.as_ref().map(to_json).transpose()?),
        cpu_xml: Set(s.cpu_xml.clone()),
        snapshot_kind: Set(s.snapshot_kind.as_str().to_owned()),
        parent: Set(s.parent),
        error_code: Set(s.error.as_ref().map(|e| e.code.clone())),
        error_message: Set(s.error.as_ref().map(|e| e.message.clone())),
        updated_at: Set(micros(s.updated_at)),
        snapshot_xml: Set(s.snapshot_xml.clone()),
        expires_at: Set(s.expires_at.map(micros)),
        schedule_id: Set(s.schedule_id),
    })
}

pub(crate) fn state_from_row(m: instance_states::Model) -> Result<State, RepoError> {
    Ok(State {
        uuid: m.uuid,
        name: m.name,
        date: m.date,
        instance_uuid: m.instance_uuid,
        tenant_id: m.tenant_id,
        status: parse(&m.status)?,
        description: m.description,
        host: m.host,
        size_bytes: m.size_bytes,
        memory_bytes: m.memory_bytes,
        includes_memory: m.includes_memory,
        disk_formats: from_json("disk_formats", &m.disk_formats)?,
        cpu: m
            .cpu
            .as_deref()
            .map(|c| from_json::<CpuInfo>("cpu", c))
            .transpose()?,
        snapshot_kind: parse(&m.snapshot_kind)?,
        parent: m.parent,
        error: error_info(m.error_code, m.error_message),
        updated_at: m.updated_at,
        cpu_xml: m.cpu_xml,
        snapshot_xml: m.snapshot_xml,
        expires_at: m.expires_at,
        schedule_id: m.schedule_id,
    })
}

pub(crate) fn operation_row(op: &Operation) -> operations::ActiveModel {
    operations::ActiveModel {
        uuid: Set(op.uuid),
        kind: Set(op.kind.as_str().to_owned()),
        status: Set(op.status.as_str().to_owned()),
        instance_uuid: Set(op.instance_uuid),
        state_uuid: Set(op.state_uuid),
        tenant_id: Set(op.tenant_id.clone()),
        host: Set(op.host.clone()),
        error_code: Set(op.error.as_ref().map(|e| e.code.clone())),
        error_message: Set(op.error.as_ref().map(|e| e.message.clone())),
        created_at: Set(micros(op.created_at)),
        updated_at: Set(micros(op.updated_at)),
        started_at: Set(op.started_at.map(micros)),
        finished_at: Set(op.finished_at.map(micros)),
        reserved_bytes: Set(op.reserved_bytes),
        lease_epoch: Set(op.lease_epoch),
        lease_owner: Set(op.lease_owner.clone()),
        progress_phase: Set(op.progress.as_ref().map(|p| p.phase.clone())),
        progress_bytes_processed: Set(op.progress.as_ref().map(|p| p.bytes_processed)),
        progress_bytes_total: Set(op.progress.as_ref().and_then(|p| p.bytes_total)),
        progress_percent: Set(op.progress.as_ref().and_then(|p| p.percent)),
        progress_updated_at: Set(op.progress.as_ref().map(|p| micros(p.updated_at))),
        cancel_requested_at: Set(op.cancel_requested_at.map(micros)),
    }
}

/// What ending an operation writes, for an `UPDATE … WHERE uuid = ? AND lease_epoch = ?`:
/// every column but the key and the lease (an end never changes who held the operation).
pub(crate) fn operation_update(op: &Operation) -> operations::ActiveModel {
    let mut row = operation_update_all(op);
    if op.progress.is_none() {
        // The ender did not sample the work (a takeover): the last sample written stays.
        row.progress_phase = NotSet;
        row.progress_bytes_processed = NotSet;
        row.progress_bytes_total = NotSet;
        row.progress_percent = NotSet;
        row.progress_updated_at = NotSet;
    }
    row
}

fn operation_update_all(op: &Operation) -> operations::ActiveModel {
    operations::ActiveModel {
        uuid: NotSet,
        lease_epoch: NotSet,
        lease_owner: NotSet,
        // Written by a client's request, never by an end.
        cancel_requested_at: NotSet,
        ..operation_row(op)
    }
}

pub(crate) fn operation_from_row(m: operations::Model) -> Result<Operation, RepoError> {
    Ok(Operation {
        uuid: m.uuid,
        kind: parse(&m.kind)?,
        status: parse(&m.status)?,
        instance_uuid: m.instance_uuid,
        state_uuid: m.state_uuid,
        tenant_id: m.tenant_id,
        host: m.host,
        error: error_info(m.error_code, m.error_message),
        created_at: m.created_at,
        updated_at: m.updated_at,
        started_at: m.started_at,
        finished_at: m.finished_at,
        reserved_bytes: m.reserved_bytes,
        lease_epoch: m.lease_epoch,
        lease_owner: m.lease_owner,
        progress: match (
            m.progress_phase,
            m.progress_bytes_processed,
            m.progress_updated_at,
        ) {
            (Some(phase), Some(bytes_processed), Some(updated_at)) => Some(Progress {
                phase,
                bytes_processed,
                bytes_total: m.progress_bytes_total,
                percent: m.progress_percent,
                updated_at,
            }),
            _ => None,
        },
        may_cancel: false,
        cancel_requested_at: m.cancel_requested_at,
    }
    .with_may_cancel())
}

pub(crate) fn limits_row(
    tenant: &str,
    l: &QuotaLimits,
    now: DateTime<Utc>,
) -> quota_limits::ActiveModel {
    quota_limits::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        states: Set(l.states),
        state_bytes: Set(l.state_bytes),
        concurrent_operations: Set(l.concurrent_operations),
        saves_per_hour: Set(l.saves_per_hour),
        updated_at: Set(micros(now)),
    }
}

pub(crate) fn limits_from_row(m: quota_limits::Model) -> QuotaLimits {
    QuotaLimits {
        states: m.states,
        state_bytes: m.state_bytes,
        concurrent_operations: m.concurrent_operations,
        saves_per_hour: m.saves_per_hour,
    }
}

pub(crate) fn decision_row(r: &DecisionRecord) -> Result<policy_decisions::ActiveModel, RepoError> {
    let d = &r.decision;
    Ok(policy_decisions::ActiveModel {
        id: Set(r.id),
        time: Set(micros(r.time)),
        tenant: Set(r.tenant.clone()),
        instance_uuid: Set(r.instance_uuid),
        operation: Set(r.operation.as_str().to_owned()),
        dry_run: Set(r.dry_run),
        plugin: Set(d.plugin.clone()),
        plugin_sha256: Set(d.plugin_sha256.clone()),
        mode: Set(d.mode.clone()),
        outcome: Set(d.outcome.clone()),
        overridden: Set(d.overridden),
        code: Set(d.code.clone()),
        reason: Set(d.reason.clone()),
        warnings: Set(to_json(&d.warnings)?),
        latency_us: Set(d.latency_us),
    })
}

pub(crate) fn decision_from_row(m: policy_decisions::Model) -> Result<DecisionRecord, RepoError> {
    Ok(DecisionRecord {
        id: m.id,
        time: m.time,
        tenant: m.tenant,
        instance_uuid: m.instance_uuid,
        operation: parse(&m.operation)?,
        dry_run: m.dry_run,
        decision: Decision {
            plugin: m.plugin,
            plugin_sha256: m.plugin_sha256,
            mode: m.mode,
            outcome: m.outcome,
            overridden: m.overridden,
            code: m.code,
            reason: m.reason,
            warnings: from_json("warnings", &m.warnings)?,
            latency_us: m.latency_us,
        },
    })
}
