//! The small traits through which the service reaches outside systems. One implementation
//! crate per trait: `snapgate-compute` (libvirt), `snapgate-quota` (Redis and in-process),
//! `snapgate-policy` (wasmtime), `snapgate-store` (sea-orm).

pub mod compute;
pub mod events;
pub mod lifecycle;
pub mod placement;
pub mod policy;
pub mod quota;
pub mod quota_truth;
pub mod repository;
pub mod schedules;
pub mod webhooks;

pub use compute::{
    BreakerState, ComputeBackend, ComputeError, HostEvent, HostHealth, JobProgress, ListedInstance,
    SaveRequest, SavedSnapshot, SnapshotProbe,
};
pub use events::{EventFeedSource, EventLog, EventSeqFeed};
pub use lifecycle::{LifecycleStore, PatchOutcome, StatePatch};
pub use placement::{Placement, PlacementStore};
pub use policy::{
    Decision, PolicyEngine, PolicyInput, PolicyOutcome, PolicySave, PolicyState, QuotaUsageView,
};
pub use policy::{NoPolicyAdmin, PolicyAdmin};
pub use quota::{
    QuotaError, QuotaLimits, QuotaReservation, QuotaResource, QuotaStore, QuotaUsage, ResourceUsage,
};
pub use quota_truth::{QuotaTruth, TenantTruth};
pub use repository::{
    CancelRequest, IdempotencyClaim, IdempotencyRecord, KeyClaim, KeyedAnswer, ListPage,
    OperationEnd, OperationEndFeed, RecentSave, RepoError, Repository, TenantTotals,
};
pub use schedules::{ScheduleStore, ScheduleUpdate};
pub use webhooks::{
    AttemptRecord, ClaimedDelivery, NewDelivery, PostOutcome, Recorded, ResolvedTarget,
    TargetError, WebhookRecord, WebhookStore, WebhookTransport,
};
