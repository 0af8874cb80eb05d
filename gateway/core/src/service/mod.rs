//! The service: owns every flow. Handlers call it with a [`Caller`] and plain values; it
//! authorizes, reserves quota, asks the policy chain, dispatches to the compute backend and
//! persists, in that order, and undoes what it did when a later step fails.

mod access;
mod admin;
mod audit;
mod cancel;
mod ending;
mod event_bus;
mod event_log;
mod idempotency;
mod lifecycle;
mod listings;
mod operations;
mod ownership;
mod placement;
mod progress;

mod quota_truth;
mod quotas;
mod readiness;
mod reconcile;
mod retention;
mod runner;
mod schedules;
mod states;
mod throttle;
pub mod timetable;
pub mod validate;
mod waits;
mod webhook_dispatch;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use crate::ports::{
    ComputeBackend, EventFeedSource, EventLog, HostHealth, LifecycleStore, PlacementStore,
    PolicyAdmin, PolicyEngine, QuotaLimits, QuotaStore, Repository, ScheduleStore, WebhookStore,
    WebhookTransport,
};
use crate::SaveMode;

pub use access::{decisions_tenant, require_cloud_admin};
pub use event_bus::{EventBus, READ_FALLBACK_EVERY, SEQUENCE_BATCH, SEQUENCE_EVERY};
pub use event_log::{EventStream, EventStreamRequest, StreamSlot, STREAM_KEEP_ALIVE, STREAM_PAGE};
pub use idempotency::IDEMPOTENCY_PURGE_BATCH;
pub use lifecycle::{LifecycleSettings, StateEdit};
pub use listings::{
    CallerView, HostView, InstancePage, InstanceSummary, OperationInFlight, OwnerSource,
};
pub use operations::WaitOutcome;
pub use quota_truth::{reservation_of, RepositoryQuotaTruth};
pub use quotas::QuotaView;
pub use readiness::{Check, Readiness};
pub use reconcile::ReconcileReport;
pub use schedules::{RetentionEdit, ScheduleEdit, ScheduleInput};
pub use states::{Accepted, ChangeInput, DryRunVerdict, SaveInput, StateChange};
pub use webhook_dispatch::retry_delay;
pub use webhooks::{
    CreatedWebhook, WebhookDetail, WebhookInput, WebhookSettings, MAX_WEBHOOK_URL,
    RECENT_DELIVERIES,
};

/// Settings the service needs (a slice of the gateway's config).
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// How saves are made when the request does not say.
    pub save_mode: SaveMode,
    /// How long finished operations stay readable.
    pub operation_retention: Duration,
    /// Quota limits of tenants with none of their own.
    pub default_limits: QuotaLimits,
    /// Lifetime of a quota reservation; renewed while its operation runs.
    pub quota_lease: Duration,
    /// An unfinished operation not touched for this long belongs to a dead gateway and is
    /// reconciled. Running operations are touched every `stale_after / 4`.
    pub stale_after: Duration,
    /// When Redis is unreachable, let saves through (counted and logged) instead of 503.
    pub quota_fail_open: bool,
    /// How often quota usage is recomputed from the database when no operation is running
    /// (drift correction; it is also rebuilt at start and whenever Redis lost its data).
    pub quota_rebuild_interval: Duration,
    pub default_page_size: u64,
    pub max_page_size: u64,
    /// Waits (`GET /v1/operations/{id}/wait`) one tenant may hold open at once on this
    /// gateway; more answer 429 `too_many_waits`.
    pub max_waits_per_tenant: usize,
    /// Dry runs one tenant may make per minute on this gateway (a burst of as many, refilled
    /// evenly); more answer 429 `dry_run_rate_limited`. 0 turns dry runs off.
    pub dry_runs_per_minute: u32,
    /// Recorded policy decisions older than this are purged by the maintenance loop.
    pub decision_retention: Duration,
    /// How long the answer to a call sent with an `Idempotency-Key` is kept for its retries
    /// (then purged by the maintenance loop, and the key may be used anew).
    pub idempotency_key_ttl: Duration,
    /// How often every host's inventory is read into the placement index (events keep it
    /// fresh in between).
    pub placement_refresh: Duration,
    /// This gateway's name as the holder of the operations it runs or takes over
    /// (`operations.lease_owner`, for logs and operators; `hostname/pid` by default).
    pub gateway_id: String,
    /// Expiry and schedules (issue 12).
    pub lifecycle: LifecycleSettings,
    /// Webhooks (issue 12, point 5).
    pub webhooks: WebhookSettings,
    /// Events older than this are purged by the maintenance loop (`events.retention_hours`).
    pub event_retention: Duration,
    /// `GET /v1/events` streams one tenant may hold open at once on this gateway; more answer
    /// 429 `too_many_event_streams`.
    pub max_event_streams_per_tenant: usize,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            save_mode: SaveMode::Auto,
            operation_retention: Duration::from_secs(7 * 24 * 3600),
            default_limits: QuotaLimits {
                states: 50,
                state_bytes: 200 << 30,
                concurrent_operations: 5,
                saves_per_hour: 60,
            },
            quota_lease: Duration::from_secs(15 * 60),
            stale_after: Duration::from_secs(60),
            quota_fail_open: false,
            quota_rebuild_interval: Duration::from_secs(300),
            default_page_size: 50,
            max_page_size: 500,
            max_waits_per_tenant: 64,
            dry_runs_per_minute: 60,
            decision_retention: Duration::from_secs(30 * 24 * 3600),
            idempotency_key_ttl: Duration::from_secs(24 * 3600),
            placement_refresh: Duration::from_secs(300),
            gateway_id: format!("snapgate/{}", std::process::id()),
            lifecycle: LifecycleSettings::default(),
            webhooks: WebhookSettings::default(),
            event_retention: Duration::from_secs(168 * 3600),
            max_event_streams_per_tenant: 16,
        }
    }
}

/// The outside systems the service drives.
#[derive(Clone)]
pub struct Backends {
    pub repo: Arc<dyn Repository>,
    pub compute: Arc<dyn ComputeBackend>,
    /// The placement index (instance → host); usually the same database as `repo`.
    pub placements: Arc<dyn PlacementStore>,
    pub quota: Arc<dyn QuotaStore>,
    pub policy: Arc<dyn PolicyEngine>,
    /// Reload and listing of the policy chain ([`crate::ports::NoPolicyAdmin`] without one).
    pub policy_admin: Arc<dyn PolicyAdmin>,
    /// State edits, expiry and schedules; usually the same database as `repo`.
    pub lifecycle: Arc<dyn LifecycleStore>,
    /// Schedules and their runs; usually the same database as `repo`.
    pub schedules: Arc<dyn ScheduleStore>,
    /// The event log; usually the same database as `repo`.
    pub events: Arc<dyn EventLog>,
    /// Sequencer announcements from other gateways (PostgreSQL `LISTEN`).
    pub event_feeds: Arc<dyn EventFeedSource>,
    /// Webhooks and their deliveries; usually the same database as `repo`.
    pub webhooks: Arc<dyn WebhookStore>,
    /// The webhooks' HTTP client.
    pub webhook_transport: Arc<dyn WebhookTransport>,
}

pub struct Service {
    repo: Arc<dyn Repository>,
    compute: Arc<dyn ComputeBackend>,
    placements: Arc<dyn PlacementStore>,
    quota: Arc<dyn QuotaStore>,
    policy: Arc<dyn PolicyEngine>,
    policy_admin: Arc<dyn PolicyAdmin>,
    lifecycle: Arc<dyn LifecycleStore>,
    schedules: Arc<dyn ScheduleStore>,
    webhooks: Arc<dyn WebhookStore>,
    webhook_transport: Arc<dyn WebhookTransport>,
    /// The event log's sequencer and wake-ups.
    bus: Arc<EventBus>,
    /// Refusal events waiting for their batched insert.
    refusals: event_log::Refusals,
    /// Open event streams per tenant.
    streams: event_log::StreamSlots,
    /// Set at shutdown: open event streams end.
    closing: tokio::sync::watch::Sender<bool>,
    settings: ServiceSettings,
    /// Who waits for which operation, and the one channel that wakes them (see `waits.rs`).
    waits: waits::Waits,
    /// Per-tenant budget of dry runs.
    dry_runs: throttle::TenantBuckets,
    /// Background work in flight, so shutdown can wait for it.
    tasks: tokio_util_lite::TaskCounter,
    /// When quota usage was last rebuilt from the database.
    last_quota_rebuild: std::sync::Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Service {
    pub fn new(backends: Backends, settings: ServiceSettings) -> Arc<Self> {
        Arc::new(Self {
            repo: backends.repo,
            compute: backends.compute,
            placements: backends.placements,
            quota: backends.quota,
            policy: backends.policy,
            policy_admin: backends.policy_admin,
            lifecycle: backends.lifecycle,
            schedules: backends.schedules,
            webhooks: backends.webhooks,
            webhook_transport: backends.webhook_transport,
            bus: EventBus::new(backends.events, backends.event_feeds),
            refusals: event_log::Refusals::new(),
            streams: event_log::StreamSlots::default(),
            closing: tokio::sync::watch::channel(false).0,
            waits: waits::Waits::new(settings.max_waits_per_tenant),
            dry_runs: throttle::TenantBuckets::per_minute(settings.dry_runs_per_minute),
            settings,
            tasks: tokio_util_lite::TaskCounter::default(),
            last_quota_rebuild: std::sync::Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// Every compute host's breaker state, from memory (never waits on a host).
    pub fn hosts_health(&self) -> Vec<HostHealth> {
        self.compute.health()
    }

    /// Operations this gateway is still running.
    pub fn operations_in_flight(&self) -> usize {
        self.tasks.count()
    }

    /// Waits until background operations of this gateway have ended, or `timeout` passes.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.tasks.wait_idle(timeout).await
    }
}

/// A tiny counter of spawned tasks (tokio-util's TaskTracker without the dependency).
mod tokio_util_lite {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Notify;

    #[derive(Default)]
    pub struct TaskCounter {
        inner: Arc<Inner>,
    }

    #[derive(Default)]
    struct Inner {
        running: AtomicUsize,
        idle: Notify,
    }

    pub struct TaskGuard(Arc<Inner>);

    impl Drop for TaskGuard {
        fn drop(&mut self) {
            if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.0.idle.notify_waiters();
            }
        }
    }

    impl TaskCounter {
        pub fn enter(&self) -> TaskGuard {
            self.inner.running.fetch_add(1, Ordering::AcqRel);
            TaskGuard(self.inner.clone())
        }

        pub fn count(&self) -> usize {
            self.inner.running.load(Ordering::Acquire)
        }

        pub async fn wait_idle(&self, timeout: Duration) -> bool {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let notified = self.inner.idle.notified();
                if self.count() == 0 {
                    return true;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return self.count() == 0;
                }
            }
        }
    }
}
