//! The database schema of snapgate, one sea-orm migration per file. The same migrations run on
//! SQLite (single node) and PostgreSQL (production); `snapgate-store` runs them at start and
//! from `snapgate migrate`.
//!
//! Column types are chosen to be portable: UUIDs use sea-orm's `uuid` type (native `uuid` on
//! PostgreSQL, a 16-byte blob on SQLite; both order by the raw bytes, which the pagination
//! tiebreak relies on) and timestamps are `timestamp with time zone` (stored in UTC).

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_create_instance_states;
mod m20261126_000002_create_operations;
mod m20261126_000003_create_instance_locks;
mod m20261126_000004_create_instance_owners;
mod m20261126_000005_create_quota_limits;
mod m20261126_000006_create_policy_decisions;
mod m20261130_000001_add_state_snapshot_xml;
mod m20261201_000007_create_instance_placements;
mod m20261202_lifecycle_000001_state_expiry;
mod m20261202_lifecycle_000002_create_schedules;
mod m20261204_000008_create_idempotency_keys;
mod m20261210_000001_add_operation_lease;
mod m20261215_000001_events;
mod m20261215_000002_webhooks;
mod m20261215_000003_operation_progress;

pub use m20261126_000001_create_instance_states::InstanceStates;
pub use m20261126_000002_create_operations::Operations;
pub use m20261126_000003_create_instance_locks::InstanceLocks;
pub use m20261126_000004_create_instance_owners::InstanceOwners;
pub use m20261126_000005_create_quota_limits::QuotaLimits;
pub use m20261126_000006_create_policy_decisions::PolicyDecisions;
pub use m20261201_000007_create_instance_placements::InstancePlacements;
pub use m20261202_lifecycle_000002_create_schedules::Schedules;
pub use m20261204_000008_create_idempotency_keys::IdempotencyKeys;
pub use m20261215_000001_events::Events;
pub use m20261215_000002_webhooks::{WebhookDeliveries, Webhooks};

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_instance_states::Migration),
            Box::new(m20261126_000002_create_operations::Migration),
            Box::new(m20261126_000003_create_instance_locks::Migration),
            Box::new(m20261126_000004_create_instance_owners::Migration),
            Box::new(m20261126_000005_create_quota_limits::Migration),
            Box::new(m20261126_000006_create_policy_decisions::Migration),
            Box::new(m20261130_000001_add_state_snapshot_xml::Migration),
            Box::new(m20261201_000007_create_instance_placements::Migration),
            Box::new(m20261202_lifecycle_000001_state_expiry::Migration),
            Box::new(m20261202_lifecycle_000002_create_schedules::Migration),
            Box::new(m20261204_000008_create_idempotency_keys::Migration),
            Box::new(m20261210_000001_add_operation_lease::Migration),
            Box::new(m20261215_000001_events::Migration),
            Box::new(m20261215_000002_webhooks::Migration),
            Box::new(m20261215_000003_operation_progress::Migration),
        ]
    }
}
