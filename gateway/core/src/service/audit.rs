//! The audit trail: one log line (target `snapgate::audit`) when a state change is accepted —
//! who asked, in which tenant, what on which instance and state — and one when it ends, with
//! its outcome. The operation id joins the two (the end may be written by another gateway that
//! took the operation over). Filter on the target to ship only these lines
//! (`RUST_LOG=warn,snapgate::audit=info` keeps them and little else).

use crate::auth::Caller;
use crate::{Operation, State};

pub(super) fn accepted(caller: &Caller, op: &Operation, state: &State) {
    tracing::info!(
        target: "snapgate::audit",
        actor = %caller.subject,
        tenant = %op.tenant_id,
        action = op.kind.as_str(),
        instance = %op.instance_uuid,
        state_id = %op.state_uuid,
        state_name = %state.name,
        operation_id = %op.uuid,
        host = %op.host,
        outcome = "accepted",
        "{} accepted", op.kind.as_str()
    );
}

pub(super) fn ended(op: &Operation) {
    let code = op.error.as_ref().map_or("", |e| e.code.as_str());
    tracing::info!(
        target: "snapgate::audit",
        tenant = %op.tenant_id,
        action = op.kind.as_str(),
        instance = %op.instance_uuid,
        state_id = %op.state_uuid,
        operation_id = %op.uuid,
        host = %op.host,
        outcome = op.status.as_str(),
        error_code = code,
        "{} {}", op.kind.as_str(), op.status.as_str()
    );
}
