//! Save, apply, delete, list and get: the states API's flows.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::require;
use super::idempotency::{usable_key, CanonicalRequest};
use super::{validate, Service};
use crate::auth::{Caller, Role};
use crate::events::{EventKind, NewEvent};
use crate::ports::repository::DecisionRecord;
use crate::ports::{
    Decision, IdempotencyClaim, ListPage, PolicyInput, PolicyOutcome, PolicySave, PolicyState,
    QuotaError, QuotaLimits, QuotaReservation, RepoError, SnapshotProbe,
};
use crate::{
    CpuCompatibility, CpuInfo, Instance, Operation, OperationKind, OperationStatus, SaveMode,
    ServiceError, SnapshotKind, State, StateStatus,
};

/// A save request, already parsed.
#[derive(Debug, Clone)]
pub struct SaveInput {
    pub name: String,
    pub description: Option<String>,
    /// Overrides the configured save mode.
    pub mode: Option<SaveMode>,
    pub dry_run: bool,
    /// When the state is to be deleted (validated: in the future, within
    /// `lifecycle.max_expiry`).
    pub expires_at: Option<chrono::DateTime<Utc>>,
    /// Set by the scheduler only: the schedule making this save.
    pub schedule_id: Option<Uuid>,
    /// The `Idempotency-Key` header, as sent (validated by the service).
    pub idempotency_key: Option<String>,
}

/// How an apply or delete is asked for.
#[derive(Debug, Clone, Default)]
pub struct ChangeInput {
    pub dry_run: bool,
    /// The `Idempotency-Key` header, as sent (validated by the service).
    pub idempotency_key: Option<String>,
}

/// What the policy chain is asked about besides the instance: a save's request, or the state
/// an apply or delete acts on.
enum Subject<'a> {
    Save(PolicySave),
    State(&'a State),
}

/// What an accepted state-changing call returns: the state and the operation doing the work.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub state: State,
    pub operation: Operation,
    /// Warnings from the policy chain.
    pub warnings: Vec<String>,
    /// The stored answer of an earlier request with the same `Idempotency-Key`.
    pub replayed: bool,
}

/// The verdict of a dry run: what would happen, with nothing changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DryRunVerdict {
    pub dry_run: bool,
    pub allowed: bool,
    pub operation: OperationKind,
    /// The enforcing plugin that would deny, with its code and reason.
    pub denied_by: Option<String>,
    pub denial_code: Option<String>,
    pub denial_reason: Option<String>,
    pub warnings: Vec<String>,
    pub decisions: Vec<Decision>,
}

/// Either work accepted, or a dry run's verdict.
#[derive(Debug, Clone)]
pub enum StateChange {
    Accepted(Box<Accepted>),
    DryRun(DryRunVerdict),
}

impl Service {
    pub async fn list_states(
        &self,
        caller: &Caller,
        instance: Uuid,
        limit: Option<u64>,
        marker: Option<Uuid>,
    ) -> Result<ListPage, ServiceError> {
        require(caller, Role::Reader)?;
        let visible = self.visible_instance(caller, instance).await?;
        let limit = match limit {
            None => self.settings.default_page_size,
            Some(0) => {
                return Err(ServiceError::bad_request(
                    "invalid_parameter",
                    "limit must be at least 1",
                ))
            }
            Some(n) => n.min(self.settings.max_page_size),
        };
        let mut page = match self.repo.list_states(instance, limit, marker).await {
            Err(RepoError::NotFound) => {
                return Err(ServiceError::bad_request(
                    "invalid_marker",
                    "marker is not a state of this instance",
                ))
            }
            other => other?,
        };
        // Another tenant's states of the same instance (after an ownership change) stay hidden.
        page.items
            .retain(|s| caller.can_see(&s.tenant_id) || s.tenant_id == visible.owner);
        Ok(page)
    }

    pub async fn get_state(
        &self,
        caller: &Caller,
        instance: Uuid,
        state: Uuid,
    ) -> Result<State, ServiceError> {
        require(caller, Role::Reader)?;
        let (_, state) = self
            .visible_instance_and_state(caller, instance, state)
            .await?;
        Ok(state)
    }

    pub async fn save(
        self: &Arc<Self>,
        caller: &Caller,
        instance: Uuid,
        input: SaveInput,
    ) -> Result<StateChange, ServiceError> {
        if input.dry_run {
            self.take_dry_run(caller)?;
        }
        // Stored as validated: NFC, so names that differ only in normalisation collide (409).
        let mut input = input;
        input.name = validate::state_name(&input.name)?;
        input.description = input
            .description
            .as_deref()
            .map(validate::description)
            .transpose()?;
        if let Some(at) = input.expires_at {
            input.expires_at = Some(self.valid_expiry(at)?);
        }
        let key = usable_key(input.idempotency_key.take(), input.dry_run)?;
        let request = CanonicalRequest {
            operation: OperationKind::Save,
            instance,
            state: None,
            name: Some(&input.name),
            description: input.description.as_deref(),
            mode: input.mode,
            expires_at: input.expires_at,
        };
        self.keyed(caller, key, &request, |claim| {
            self.save_validated(caller, instance, input.clone(), claim)
        })
        .await
    }

    /// A save from its validated input on: find, authorize, quota, policy, record, dispatch.
    async fn save_validated(
        self: &Arc<Self>,
        caller: &Caller,
        instance: Uuid,
        input: SaveInput,
        claim: Option<IdempotencyClaim>,
    ) -> Result<StateChange, ServiceError> {
        // The caller's own quota limits are read beside the lookups: one database round trip
        // fewer in a row before the 202. Another tenant's (an operator acting on its
        // instance) are read when needed.
        let (visible, own_limits) = tokio::join!(
            self.visible_instance(caller, instance),
            self.repo.quota_limits(&caller.tenant)
        );
        let (inst, tenant) = visible?.live()?;
        require(caller, Role::Member)?;
        let mode = input.mode.unwrap_or(self.settings.save_mode);
        let kind = self.snapshot_kind(&inst, mode).await?;
        // Everything the caller asked for, for the policy chain.
        let asked = PolicySave {
            name: input.name.clone(),
            description: input.description.clone(),
            mode,
            kind,
            expires_at: input.expires_at,
        };

        // Microseconds: what both databases keep, so the 202 body equals later reads.
        let now = Utc::now().trunc_subsecs(6);
        let op_id = Uuid::now_v7();
        let estimate = estimate_bytes(&inst);
        let reservation = QuotaReservation {
            tenant: tenant.clone(),
            operation: op_id,
            states: 1,
            bytes: estimate,
            operations: 1,
            saves: 1,
        };
        if input.dry_run {
            let (limits, quota_denial) = self.check_quota(&reservation, true).await?;
            let outcome = self
                .evaluate_policy(
                    caller,
                    &tenant,
                    &limits,
                    &inst,
                    OperationKind::Save,
                    Subject::Save(asked),
                    true,
                )
                .await?;
            if quota_denial.is_none() && outcome.denial.is_none() {
                self.compute.check_save(&inst, kind).await?;
            }
            return Ok(StateChange::DryRun(verdict(
                OperationKind::Save,
                outcome,
                quota_denial,
            )));
        }
        let limits = match own_limits {
            Ok(limits) if tenant == caller.tenant => limits,
            _ => self.repo.quota_limits(&tenant).await?,
        };
        let limits = self
            .reserve_within(&reservation, true, limits, instance, OperationKind::Save)
            .await?;

        let outcome = self
            .evaluate_policy(
                caller,
                &tenant,
                &limits,
                &inst,
                OperationKind::Save,
                Subject::Save(asked),
                false,
            )
            .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                self.release_quietly(&tenant, op_id).await;
                return Err(e);
            }
        };
        // The operator's policy speaks first; then the hard technical check, still before any
        // work (a domain that cannot get a memory snapshot is refused with a clear code).
        if outcome.denial.is_none() {
            if let Err(e) = self.compute.check_save(&inst, kind).await {
                self.release_quietly(&tenant, op_id).await;
                return Err(e.into());
            }
        }

        let state_id = Uuid::now_v7();
        let parent = inst
            .current_snapshot
            .as_deref()
            .and_then(|n| Uuid::parse_str(n).ok());
        let state = State {
            uuid: state_id,
            name: input.name,
            date: now,
            instance_uuid: instance,
            tenant_id: tenant.clone(),
            status: StateStatus::Saving,
            description: input.description,
            host: inst.host.clone(),
            size_bytes: None,
            memory_bytes: None,
            includes_memory: true,
            disk_formats: inst
                .disks
                .iter()
                .map(|d| d.format.clone().unwrap_or_else(|| "unknown".into()))
                .collect(),
            cpu: Some(inst.cpu.clone()),
            snapshot_kind: kind,
            parent,
            error: None,
            updated_at: now,
            cpu_xml: inst.cpu_xml.clone(),
            snapshot_xml: None,
            expires_at: input.expires_at,
            schedule_id: input.schedule_id,
        };
        let op = self.new_operation(op_id, OperationKind::Save, &state, now, estimate);
        let accepted = Accepted {
            state,
            operation: op,
            warnings: outcome.warnings,
            replayed: false,
        };
        let begun = match self.keyed_answer(claim.as_ref(), &accepted) {
            Ok(answer) => {
                self.repo
                    .begin_keyed_save(&accepted.state, &accepted.operation, answer.as_ref())
                    .await
            }
            Err(e) => {
                self.release_quietly(&tenant, op_id).await;
                return Err(e);
            }
        };
        if let Err(e) = begun {
            self.release_quietly(&tenant, op_id).await;
            return Err(e.into());
        }
        super::audit::accepted(caller, &accepted.operation, &accepted.state);
        self.spawn_operation(accepted.operation.clone(), accepted.state.clone());
        Ok(StateChange::Accepted(Box::new(accepted)))
    }

    pub async fn apply(
        self: &Arc<Self>,
        caller: &Caller,
        instance: Uuid,
        state: Uuid,
        input: ChangeInput,
    ) -> Result<StateChange, ServiceError> {
        self.change_state(caller, instance, state, OperationKind::Apply, input)
            .await
    }

    pub async fn delete(
        self: &Arc<Self>,
        caller: &Caller,
        instance: Uuid,
        state: Uuid,
        input: ChangeInput,
    ) -> Result<StateChange, ServiceError> {
        self.change_state(caller, instance, state, OperationKind::Delete, input)
            .await
    }

    /// Apply and delete share one flow: find, authorize, policy, lock, dispatch.
    async fn change_state(
        self: &Arc<Self>,
        caller: &Caller,
        instance: Uuid,
        state_id: Uuid,
        kind: OperationKind,
        input: ChangeInput,
    ) -> Result<StateChange, ServiceError> {
        let dry_run = input.dry_run;
        if dry_run {
            self.take_dry_run(caller)?;
        }
        let key = usable_key(input.idempotency_key, dry_run)?;
        let request = CanonicalRequest {
            operation: kind,
            instance,
            state: Some(state_id),
            name: None,
            description: None,
            mode: None,
            expires_at: None,
        };
        self.keyed(caller, key, &request, |claim| {
            self.change_state_claimed(caller, instance, state_id, kind, dry_run, claim)
        })
        .await
    }

    async fn change_state_claimed(
        self: &Arc<Self>,
        caller: &Caller,
        instance: Uuid,
        state_id: Uuid,
        kind: OperationKind,
        dry_run: bool,
        claim: Option<IdempotencyClaim>,
    ) -> Result<StateChange, ServiceError> {
        let (visible, state) = self
            .visible_instance_and_state(caller, instance, state_id)
            .await?;
        require(caller, Role::Member)?;
        // Apply needs a good state; a delete also cleans up a state whose save failed.
        let (from, to): (&[StateStatus], StateStatus) = match kind {
            OperationKind::Apply => (&[StateStatus::Available], StateStatus::Applying),
            _ => (
                &[StateStatus::Available, StateStatus::Error],
                StateStatus::Deleting,
            ),
        };
        if !from.contains(&state.status) {
            return Err(ServiceError::StateNotAvailable(state.status.to_string()));
        }
        let (inst, tenant) = visible.live()?;
        self.check_files_follow(&inst, &state).await?;

        let op_id = Uuid::now_v7();
        // Applies and deletes hold an operation slot, but go on when the quota store is down:
        // they free resources or touch none.
        let reservation = QuotaReservation {
            tenant: tenant.clone(),
            operation: op_id,
            states: 0,
            bytes: 0,
            operations: 1,
            saves: 0,
        };
        if dry_run {
            let (limits, quota_denial) = self.check_quota(&reservation, false).await?;
            let outcome = self
                .evaluate_policy(
                    caller,
                    &tenant,
                    &limits,
                    &inst,
                    kind,
                    Subject::State(&state),
                    true,
                )
                .await?;
            return Ok(StateChange::DryRun(verdict(kind, outcome, quota_denial)));
        }
        let limits = self.reserve(&reservation, false, instance, kind).await?;

        let outcome = match self
            .evaluate_policy(
                caller,
                &tenant,
                &limits,
                &inst,
                kind,
                Subject::State(&state),
                false,
            )
            .await
        {
            Ok(o) => o,
            Err(e) => {
                self.release_quietly(&tenant, op_id).await;
                return Err(e);
            }
        };

        let now = Utc::now().trunc_subsecs(6);
        let mut op = self.new_operation(op_id, kind, &state, now, 0);
        op.host = inst.host.clone();
        let mut state = state;
        state.status = to;
        state.updated_at = now;
        let accepted = Accepted {
            state,
            operation: op,
            warnings: outcome.warnings,
            replayed: false,
        };
        let begun = match self.keyed_answer(claim.as_ref(), &accepted) {
            Ok(answer) => {
                self.repo
                    .begin_keyed_state_operation(&accepted.operation, from, to, answer.as_ref())
                    .await
            }
            Err(e) => {
                self.release_quietly(&tenant, op_id).await;
                return Err(e);
            }
        };
        if let Err(e) = begun {
            self.release_quietly(&tenant, op_id).await;
            return Err(e.into());
        }
        super::audit::accepted(caller, &accepted.operation, &accepted.state);
        self.spawn_operation(accepted.operation.clone(), accepted.state.clone());
        Ok(StateChange::Accepted(Box::new(accepted)))
    }

    /// Refuses, before any work, an apply or delete of a kept external state whose files are
    /// on another host than the instance now runs on: they are host-local and cannot follow.
    /// The state stays listed and usable once the instance is back. Internal states follow
    /// (their data is inside the disks) and are defined again on the new host when used.
    async fn check_files_follow(&self, inst: &Instance, state: &State) -> Result<(), ServiceError> {
        if state.snapshot_kind != SnapshotKind::External
            || state.host == inst.host
            || state.status != StateStatus::Available
        {
            return Ok(());
        }
        // The operator may have brought the snapshot along (shared storage, redefined by hand).
        let probe = self
            .compute
            .probe(&inst.host, inst.uuid, &state.snapshot_name())
            .await?;
        if probe == SnapshotProbe::Present {
            return Ok(());
        }
        Err(ServiceError::StateOnOtherHost {
            holder: state.host.clone(),
            current: inst.host.clone(),
        })
    }

    /// The kind of snapshot a save makes. libvirt cannot mix internal and external snapshots
    /// of one domain (it refuses to delete or revert across them), so `auto` follows the kind of
    /// the states the instance already keeps; with none, external: a live external save stops
    /// the guest only for the end of the save, an internal one for all of it (a 1 GiB guest
    /// under TCG: 0.41 s against 1.5 s, docs/BENCHMARKS.md).
    async fn snapshot_kind(
        &self,
        inst: &Instance,
        mode: SaveMode,
    ) -> Result<SnapshotKind, ServiceError> {
        Ok(match mode {
            SaveMode::Internal => SnapshotKind::Internal,
            SaveMode::External => SnapshotKind::External,
            // With no snapshot in libvirt there is no kind to follow.
            SaveMode::Auto if inst.current_snapshot.is_none() => SnapshotKind::External,
            SaveMode::Auto => {
                let page = self.repo.list_states(inst.uuid, 20, None).await?;
                match page.items.iter().find(|s| s.status != StateStatus::Error) {
                    Some(s) => s.snapshot_kind,
                    None => SnapshotKind::External,
                }
            }
        })
    }

    /// Reserves quota. `required` (saves) fails closed when the store is down unless the
    /// gateway is configured to fail open; other operations go on.
    async fn reserve(
        &self,
        r: &QuotaReservation,
        required: bool,
        instance: Uuid,
        kind: OperationKind,
    ) -> Result<QuotaLimits, ServiceError> {
        let limits = self.repo.quota_limits(&r.tenant).await?;
        self.reserve_within(r, required, limits, instance, kind)
            .await
    }

    /// [`Service::reserve`] with the tenant's limits already read (`None`: the defaults).
    async fn reserve_within(
        &self,
        r: &QuotaReservation,
        required: bool,
        limits: Option<QuotaLimits>,
        instance: Uuid,
        kind: OperationKind,
    ) -> Result<QuotaLimits, ServiceError> {
        let limits = limits.unwrap_or(self.settings.default_limits);
        match self
            .quota
            .reserve(r, &limits, self.settings.quota_lease)
            .await
        {
            Ok(()) => Ok(limits),
            Err(QuotaError::Unavailable(cause)) if !required || self.settings.quota_fail_open => {
                tracing::warn!(%cause, tenant = %r.tenant, operation = %r.operation, "quota store unavailable; going on without a reservation");
                metrics::counter!("snapgate_quota_fail_open_total", "required" => required.to_string()).increment(1);
                Ok(limits)
            }
            Err(e) => {
                if let QuotaError::Exceeded { resource, .. } = &e {
                    metrics::counter!("snapgate_quota_rejections_total", "resource" => resource.as_str()).increment(1);
                }
                self.quota_refused(&r.tenant, instance, kind, &limits, &e);
                Err(e.into())
            }
        }
    }

    /// A dry run's quota step: the same decision as [`Service::reserve`], asked as a check
    /// that reserves nothing. A refusal is part of the verdict, not an error.
    async fn check_quota(
        &self,
        r: &QuotaReservation,
        required: bool,
    ) -> Result<(QuotaLimits, Option<ServiceError>), ServiceError> {
        let limits = self
            .repo
            .quota_limits(&r.tenant)
            .await?
            .unwrap_or(self.settings.default_limits);
        match self.quota.check(r, &limits).await {
            Ok(()) => Ok((limits, None)),
            Err(QuotaError::Unavailable(cause)) if !required || self.settings.quota_fail_open => {
                tracing::warn!(%cause, tenant = %r.tenant, "quota store unavailable; dry run goes on without a quota check");
                Ok((limits, None))
            }
            Err(e @ (QuotaError::Exceeded { .. } | QuotaError::RateLimited { .. })) => {
                Ok((limits, Some(e.into())))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Dry runs cost the gateway work (libvirt, the policy chain) and change nothing, so a
    /// tenant gets a budget of them (`dry_runs_per_minute`).
    fn take_dry_run(&self, caller: &Caller) -> Result<(), ServiceError> {
        self.dry_runs
            .take(&caller.tenant)
            .map_err(|retry_after_secs| {
                metrics::counter!("snapgate_dry_runs_refused_total").increment(1);
                ServiceError::Throttled {
                    code: "dry_run_rate_limited",
                    message: format!(
                        "at most {} dry runs per minute per tenant",
                        self.settings.dry_runs_per_minute
                    ),
                    retry_after_secs,
                }
            })
    }

    pub(super) async fn release_quietly(&self, tenant: &str, op: Uuid) {
        if let Err(e) = self.quota.release(tenant, op).await {
            // The lease lapses by itself; the reconciler also drops reservations of dead operations.
            tracing::warn!(error = %e, %tenant, operation = %op, "could not release a quota reservation");
        }
    }

    /// Builds the policy input, runs the chain, records the decisions, and turns an enforcing
    /// denial into an error. With no plugin for the operation, nothing is built or asked.
    #[allow(clippy::too_many_arguments)]
    async fn evaluate_policy(
        &self,
        caller: &Caller,
        tenant: &str,
        limits: &QuotaLimits,
        inst: &Instance,
        kind: OperationKind,
        subject: Subject<'_>,
        dry_run: bool,
    ) -> Result<PolicyOutcome, ServiceError> {
        let (state, save) = match subject {
            Subject::Save(asked) => (None, Some(asked)),
            Subject::State(state) => (Some(state), None),
        };
        if !self.policy.wants(kind) {
            return Ok(PolicyOutcome::default());
        }
        let now = Utc::now();
        // The input's parts come from three systems; ask them at once.
        let (quota, instance_state_count, target_host_cpu, cpu_compatibility) = tokio::join!(
            async { self.quota.usage(tenant, limits).await.unwrap_or_default() },
            self.repo.count_states(inst.uuid),
            async { self.compute.host_cpu(&inst.host).await.unwrap_or_default() },
            async {
                match (kind, state.and_then(|s| s.cpu_xml.as_deref())) {
                    (OperationKind::Apply, Some(xml)) => self
                        .compute
                        .compare_cpu(&inst.host, inst.uuid, xml)
                        .await
                        .unwrap_or(CpuCompatibility::Unknown),
                    _ => CpuCompatibility::Unknown,
                }
            },
        );
        let instance_state_count = instance_state_count?.try_into().unwrap_or(u32::MAX);
        let input = PolicyInput {
            operation: kind,
            tenant: tenant.to_owned(),
            roles: caller.role_names(),
            request_time: now,
            instance: inst.clone(),
            instance_state_count,
            state: state.map(|s| PolicyState {
                uuid: s.uuid,
                name: s.name.clone(),
                saved_on_host: s.host.clone(),
                cpu: s.cpu.clone().unwrap_or_else(CpuInfo::default),
                size_bytes: s.size_bytes.unwrap_or(0),
                age_seconds: (now - s.date).num_seconds().max(0),
            }),
            save,
            target_host: inst.host.clone(),
            target_host_cpu,
            cpu_compatibility,
            quota,
        };
        let outcome = self.policy.evaluate(&input).await;
        if !outcome.decisions.is_empty() {
            let records: Vec<DecisionRecord> = outcome
                .decisions
                .iter()
                .map(|d| DecisionRecord {
                    id: Uuid::now_v7(),
                    time: now,
                    tenant: tenant.to_owned(),
                    instance_uuid: inst.uuid,
                    operation: kind,
                    dry_run,
                    decision: d.clone(),
                })
                .collect();
            // Losing a decision record must not fail the request; it is logged.
            if let Err(e) = self.repo.record_decisions(&records).await {
                tracing::error!(error = %e, "could not record policy decisions");
            }
        }
        if let Some((plugin, code, reason)) = &outcome.denial {
            if !dry_run {
                self.refused(NewEvent {
                    instance_uuid: Some(inst.uuid),
                    state_uuid: state.map(|s| s.uuid),
                    ..NewEvent::new(
                        EventKind::PolicyDenied,
                        tenant,
                        serde_json::json!({
                            "operation": kind.as_str(),
                            "plugin": plugin,
                            "code": code,
                            "reason": reason,
                            "state_name": state.map(|s| s.name.clone())
                                .or_else(|| input.save.as_ref().map(|s| s.name.clone())),
                        }),
                    )
                });
                return Err(ServiceError::PolicyDenied {
                    plugin: plugin.clone(),
                    code: code.clone(),
                    reason: reason.clone(),
                    warnings: outcome.warnings.clone(),
                });
            }
        }
        Ok(outcome)
    }
}

/// Internal snapshots need every disk in qcow2; anything else gets external ones.
/// Bytes a save is expected to take: the guest's memory plus, for the disks, nothing until
/// measured (their growth since the last snapshot is not known in advance). Corrected to the
/// measured size when the save ends.
fn estimate_bytes(inst: &Instance) -> i64 {
    inst.memory_bytes.max(0)
}

impl Service {
    /// A new operation, held by this gateway at the first lease epoch.
    fn new_operation(
        &self,
        id: Uuid,
        kind: OperationKind,
        state: &State,
        now: chrono::DateTime<Utc>,
        reserved_bytes: i64,
    ) -> Operation {
        // Recorded as running: the work is handed to a task the moment the record commits, and
        // one write less per operation matters on SQLite's single writer.
        Operation {
            uuid: id,
            kind,
            status: OperationStatus::Running,
            instance_uuid: state.instance_uuid,
            state_uuid: state.uuid,
            tenant_id: state.tenant_id.clone(),
            host: state.host.clone(),
            error: None,
            created_at: now,
            updated_at: now,
            started_at: Some(now),
            finished_at: None,
            reserved_bytes,
            lease_epoch: 0,
            lease_owner: Some(self.settings.gateway_id.clone()),
            progress: None,
            may_cancel: false,
            cancel_requested_at: None,
        }
        .with_may_cancel()
    }
}

/// The verdict of a dry run. A quota refusal comes first (a real call would stop there, before
/// the policy chain); it is reported as denied by `quota` with the error's code.
fn verdict(
    kind: OperationKind,
    outcome: PolicyOutcome,
    quota_denial: Option<ServiceError>,
) -> DryRunVerdict {
    let (denied_by, denial_code, denial_reason) = match (quota_denial, outcome.denial) {
        (Some(e), _) => (
            Some("quota".to_owned()),
            Some(e.code().to_owned()),
            Some(e.to_string()),
        ),
        (None, Some((p, c, r))) => (Some(p), Some(c), Some(r)),
        (None, None) => (None, None, None),
    };
    DryRunVerdict {
        dry_run: true,
        allowed: denied_by.is_none(),
        operation: kind,
        denied_by,
        denial_code,
        denial_reason,
        warnings: outcome.warnings,
        decisions: outcome.decisions,
    }
}
