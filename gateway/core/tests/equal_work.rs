//! "Not yours" and "does not exist" must not be told apart, not even by the work the gateway
//! does to answer: both paths make the same calls to the database and to libvirt. The real
//! repository (SQLite) and the real compute backend (libvirt's test driver) are wrapped by
//! counters that only record the name of each call and delegate.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use snapgate_compute::{HostConfig, LibvirtBackend, LibvirtOptions};
use snapgate_core::auth::{Caller, Role};
use snapgate_core::ports::policy::{AllowAll, NoPolicyAdmin};
use snapgate_core::ports::repository::{DecisionFilter, DecisionRecord};
use snapgate_core::ports::OperationEndFeed;
use snapgate_core::ports::{
    ComputeBackend, ComputeError, ListPage, QuotaLimits, RecentSave, RepoError, Repository,
    SaveRequest, SavedSnapshot, SnapshotProbe, TenantTotals,
};
use snapgate_core::service::{Backends, SaveInput, Service, ServiceSettings, StateChange};
use snapgate_core::{
    CpuCompatibility, CpuInfo, Instance, Operation, ServiceError, SnapshotKind, State, StateStatus,
};
use snapgate_quota::MemoryQuotaStore;
use snapgate_store::SeaRepository;
use uuid::Uuid;

const NOVA_APP: &str = "5a9e0c1e-0000-4000-8000-000000000003";
const WEB: &str = "5a9e0c1e-0000-4000-8000-000000000001";
const NOVA_TENANT: &str = "11111111-1111-1111-1111-111111111111";

type Log = Arc<Mutex<Vec<&'static str>>>;

struct CountingRepo {
    inner: SeaRepository,
    log: Log,
}

impl CountingRepo {
    fn note(&self, call: &'static str) {
        self.log.lock().unwrap().push(call);
    }
}

#[async_trait]
impl Repository for CountingRepo {
    async fn ping(&self) -> Result<(), RepoError> {
        self.note("repo.ping");
        self.inner.ping().await
    }
    async fn begin_save(&self, state: &State, op: &Operation) -> Result<(), RepoError> {
        self.note("repo.begin_save");
        self.inner.begin_save(state, op).await
    }
    async fn begin_state_operation(
        &self,
        op: &Operation,
        from: &[StateStatus],
        to: StateStatus,
    ) -> Result<(), RepoError> {
        self.note("repo.begin_state_operation");
        self.inner.begin_state_operation(op, from, to).await
    }
    async fn mark_running(&self, op: Uuid, at: DateTime<Utc>) -> Result<(), RepoError> {
        self.note("repo.mark_running");
        self.inner.mark_running(op, at).await
    }
    async fn touch_operation(&self, op: Uuid, at: DateTime<Utc>) -> Result<(), RepoError> {
        self.note("repo.touch_operation");
        self.inner.touch_operation(op, at).await
    }
    async fn finish_operation(
        &self,
        op: &Operation,
        state: Option<&State>,
    ) -> Result<(), RepoError> {
        self.note("repo.finish_operation");
        self.inner.finish_operation(op, state).await
    }
    async fn get_state(&self, uuid: Uuid) -> Result<Option<State>, RepoError> {
        self.note("repo.get_state");
        self.inner.get_state(uuid).await
    }
    async fn list_states(
        &self,
        instance: Uuid,
        limit: u64,
        marker: Option<Uuid>,
    ) -> Result<ListPage, RepoError> {
        self.note("repo.list_states");
        self.inner.list_states(instance, limit, marker).await
    }
    async fn count_states(&self, instance: Uuid) -> Result<u64, RepoError> {
        self.note("repo.count_states");
        self.inner.count_states(instance).await
    }
    async fn get_operation(&self, uuid: Uuid) -> Result<Option<Operation>, RepoError> {
        self.note("repo.get_operation");
        self.inner.get_operation(uuid).await
    }
    async fn unfinished_operations(&self) -> Result<Vec<Operation>, RepoError> {
        self.note("repo.unfinished_operations");
        self.inner.unfinished_operations().await
    }
    async fn purge_operations(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        self.note("repo.purge_operations");
        self.inner.purge_operations(before).await
    }
    async fn tenant_totals(&self) -> Result<Vec<TenantTotals>, RepoError> {
        self.note("repo.tenant_totals");
        self.inner.tenant_totals().await
    }
    async fn saves_since(&self, since: DateTime<Utc>) -> Result<Vec<RecentSave>, RepoError> {
        self.note("repo.saves_since");
        self.inner.saves_since(since).await
    }
    async fn states_of_instance(&self, instance: Uuid) -> Result<Vec<State>, RepoError> {
        self.note("repo.states_of_instance");
        self.inner.states_of_instance(instance).await
    }
    async fn finished_operations(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, RepoError> {
        self.note("repo.finished_operations");
        self.inner.finished_operations(ids).await
    }
    async fn operation_end_feed(&self) -> Result<Option<Box<dyn OperationEndFeed>>, RepoError> {
        self.note("repo.operation_end_feed");
        self.inner.operation_end_feed().await
    }
    async fn purge_decisions(&self, before: DateTime<Utc>, batch: u64) -> Result<u64, RepoError> {
        self.note("repo.purge_decisions");
        self.inner.purge_decisions(before, batch).await
    }
    async fn instance_owner(&self, instance: Uuid) -> Result<Option<String>, RepoError> {
        self.note("repo.instance_owner");
        self.inner.instance_owner(instance).await
    }
    async fn set_instance_owner(
        &self,
        instance: Uuid,
        owner: Option<&str>,
        states_to: Option<&str>,
    ) -> Result<Vec<TenantTotals>, RepoError> {
        self.note("repo.set_instance_owner");
        self.inner
            .set_instance_owner(instance, owner, states_to)
            .await
    }
    async fn quota_limits(&self, tenant: &str) -> Result<Option<QuotaLimits>, RepoError> {
        self.note("repo.quota_limits");
        self.inner.quota_limits(tenant).await
    }
    async fn set_quota_limits(
        &self,
        tenant: &str,
        limits: Option<&QuotaLimits>,
    ) -> Result<(), RepoError> {
        self.note("repo.set_quota_limits");
        self.inner.set_quota_limits(tenant, limits).await
    }
    async fn record_decisions(&self, records: &[DecisionRecord]) -> Result<(), RepoError> {
        self.note("repo.record_decisions");
        self.inner.record_decisions(records).await
    }
    async fn list_decisions(
        &self,
        filter: &DecisionFilter,
    ) -> Result<Vec<DecisionRecord>, RepoError> {
        self.note("repo.list_decisions");
        self.inner.list_decisions(filter).await
    }
}

struct CountingCompute {
    inner: LibvirtBackend,
    log: Log,
}

impl CountingCompute {
    fn note(&self, call: &'static str) {
        self.log.lock().unwrap().push(call);
    }
}

#[async_trait]
impl ComputeBackend for CountingCompute {
    fn hosts(&self) -> Vec<String> {
        self.inner.hosts()
    }
    async fn locate(&self, instance: Uuid) -> Result<Instance, ComputeError> {
        self.note("compute.locate");
        self.inner.locate(instance).await
    }
    async fn check_save(
        &self,
        instance: &Instance,
        kind: SnapshotKind,
    ) -> Result<(), ComputeError> {
        self.note("compute.check_save");
        self.inner.check_save(instance, kind).await
    }
    async fn save(&self, host: &str, req: SaveRequest) -> Result<SavedSnapshot, ComputeError> {
        self.note("compute.save");
        self.inner.save(host, req).await
    }
    async fn apply(&self, host: &str, instance: Uuid, name: &str) -> Result<(), ComputeError> {
        self.note("compute.apply");
        self.inner.apply(host, instance, name).await
    }
    async fn delete(&self, host: &str, instance: Uuid, name: &str) -> Result<(), ComputeError> {
        self.note("compute.delete");
        self.inner.delete(host, instance, name).await
    }
    async fn probe(
        &self,
        host: &str,
        instance: Uuid,
        name: &str,
    ) -> Result<SnapshotProbe, ComputeError> {
        self.note("compute.probe");
        self.inner.probe(host, instance, name).await
    }
    async fn list_snapshots(
        &self,
        host: &str,
        instance: Uuid,
    ) -> Result<Vec<String>, ComputeError> {
        self.note("compute.list_snapshots");
        self.inner.list_snapshots(host, instance).await
    }
    async fn redefine_snapshot(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_xml: &str,
    ) -> Result<(), ComputeError> {
        self.note("compute.redefine_snapshot");
        self.inner
            .redefine_snapshot(host, instance, snapshot_xml)
            .await
    }
    async fn host_cpu(&self, host: &str) -> Result<CpuInfo, ComputeError> {
        self.note("compute.host_cpu");
        self.inner.host_cpu(host).await
    }
    async fn compare_cpu(
        &self,
        host: &str,
        instance: Uuid,
        cpu_xml: &str,
    ) -> Result<CpuCompatibility, ComputeError> {
        self.note("compute.compare_cpu");
        self.inner.compare_cpu(host, instance, cpu_xml).await
    }
    async fn ping(&self, host: &str) -> Result<(), ComputeError> {
        self.note("compute.ping");
        self.inner.ping(host).await
    }
}

struct Fixture {
    service: Arc<Service>,
    log: Log,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("db.sqlite").display()
        );
        let repo = SeaRepository::connect(&url).await.unwrap();
        repo.migrate().await.unwrap();
        let node = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/demo-node.xml");
        let uri = format!("test://{}", node.canonicalize().unwrap().display());
        let compute = LibvirtBackend::new(
            vec![HostConfig::new("demo", uri).with_state_dir(dir.path().join("states"))],
            LibvirtOptions::default(),
        );
        let log: Log = Arc::default();
        let service = Service::new(
            Backends {
                repo: Arc::new(CountingRepo {
                    inner: repo,
                    log: log.clone(),
                }),
                compute: Arc::new(CountingCompute {
                    inner: compute,
                    log: log.clone(),
                }),
                quota: Arc::new(MemoryQuotaStore::new()),
                policy: Arc::new(AllowAll),
                policy_admin: Arc::new(NoPolicyAdmin),
            },
            ServiceSettings {
                default_limits: QuotaLimits::UNLIMITED,
                ..ServiceSettings::default()
            },
        );
        Fixture {
            service,
            log,
            _dir: dir,
        }
    }

    /// Runs `call` and returns its error and the port calls it made, sorted (calls made at
    /// once through `join!` may come in either order).
    async fn calls<F, T>(&self, call: F) -> (ServiceError, Vec<&'static str>)
    where
        F: std::future::Future<Output = Result<T, ServiceError>>,
        T: std::fmt::Debug,
    {
        self.log.lock().unwrap().clear();
        let err = call.await.expect_err("must be refused");
        let mut calls = std::mem::take(&mut *self.log.lock().unwrap());
        calls.sort_unstable();
        (err, calls)
    }
}

fn save_input() -> SaveInput {
    SaveInput {
        name: "n".into(),
        description: None,
        mode: None,
        dry_run: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_yours_and_missing_make_the_same_port_calls() {
    let fx = Fixture::new().await;
    let svc = &fx.service;
    let nova = Caller::new(NOVA_TENANT, Role::Member);
    let StateChange::Accepted(accepted) = svc
        .save(&nova, NOVA_APP.parse().unwrap(), save_input())
        .await
        .unwrap()
    else {
        panic!("not a dry run")
    };
    let done = svc
        .wait_operation(&nova, accepted.operation.uuid, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(done.finished, "{:?}", done.operation);
    let (their_instance, their_state, their_op) = (
        accepted.state.instance_uuid,
        accepted.state.uuid,
        accepted.operation.uuid,
    );
    let web: Uuid = WEB.parse().unwrap();

    for caller in [
        Caller::new("demo", Role::Member),
        Caller::new("demo", Role::Reader),
    ] {
        let c = &caller;
        let missing = Uuid::new_v4();
        let pairs = [
            (
                "list",
                fx.calls(svc.list_states(c, their_instance, None, None))
                    .await,
                fx.calls(svc.list_states(c, missing, None, None)).await,
            ),
            (
                "get, their instance",
                fx.calls(svc.get_state(c, their_instance, their_state))
                    .await,
                fx.calls(svc.get_state(c, missing, missing)).await,
            ),
            (
                "get, their state on our instance",
                fx.calls(svc.get_state(c, web, their_state)).await,
                fx.calls(svc.get_state(c, web, missing)).await,
            ),
            (
                "save",
                fx.calls(svc.save(c, their_instance, save_input())).await,
                fx.calls(svc.save(c, missing, save_input())).await,
            ),
            (
                "apply, their instance",
                fx.calls(svc.apply(c, their_instance, their_state, false))
                    .await,
                fx.calls(svc.apply(c, missing, missing, false)).await,
            ),
            (
                "apply, their state on our instance",
                fx.calls(svc.apply(c, web, their_state, false)).await,
                fx.calls(svc.apply(c, web, missing, false)).await,
            ),
            (
                "delete, their instance",
                fx.calls(svc.delete(c, their_instance, their_state, true))
                    .await,
                fx.calls(svc.delete(c, missing, missing, true)).await,
            ),
            (
                "delete, their state on our instance",
                fx.calls(svc.delete(c, web, their_state, false)).await,
                fx.calls(svc.delete(c, web, missing, false)).await,
            ),
            (
                "operation",
                fx.calls(svc.get_operation(c, their_op)).await,
                fx.calls(svc.get_operation(c, missing)).await,
            ),
        ];
        for (what, (theirs_err, theirs_calls), (missing_err, missing_calls)) in pairs {
            assert_eq!(theirs_err.status(), 404, "{what}: {theirs_err}");
            assert_eq!(
                (theirs_err.code(), theirs_err.to_string()),
                (missing_err.code(), missing_err.to_string()),
                "{what}: the same answer"
            );
            assert_eq!(theirs_calls, missing_calls, "{what}: the same work");
            assert!(
                !theirs_calls.is_empty(),
                "{what}: the wrapper saw the calls"
            );
        }
    }
}
