//! sea-orm entities, one per table. They mirror `migrations/` column for column; the domain
//! types never leave `convert`, so a schema detail (JSON text, status strings) stays here.

pub mod events;
pub mod idempotency_keys;
pub mod instance_locks;
pub mod instance_owners;
pub mod instance_placements;
pub mod instance_states;
pub mod operations;
pub mod policy_decisions;
pub mod quota_limits;
pub mod schedules;
pub mod webhook_deliveries;
pub mod webhooks;
