//! The placement index: which compute host each instance lives on, with the owner its domain
//! metadata names, so that finding an instance costs one call to one host instead of a call to
//! every host. The sea-orm implementation is `snapgate-store` (`instance_placements`).
//!
//! The index is a cache of what the hosts say, never the truth: a record can be stale (the
//! instance moved or was removed), and the service corrects it whenever a lookup misses.

use async_trait::async_trait;
use uuid::Uuid;

use super::RepoError;
use crate::TenantId;

/// Where one instance was last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub instance: Uuid,
    pub host: String,
    /// The owner in the domain's metadata when it was seen (an admin's assignment in
    /// `instance_owners` still wins over it).
    pub owner_tenant: Option<TenantId>,
}

#[async_trait]
pub trait PlacementStore: Send + Sync + 'static {
    async fn placement(&self, instance: Uuid) -> Result<Option<Placement>, RepoError>;

    /// Instances recorded on `host`.
    async fn placements_on_host(&self, host: &str) -> Result<Vec<Placement>, RepoError>;

    /// Every recorded placement, by instance uuid (the listing of instances).
    async fn all_placements(&self) -> Result<Vec<Placement>, RepoError>;

    /// Records each placement, replacing any record of the same instance (on any host).
    async fn record_placements(&self, placements: &[Placement]) -> Result<(), RepoError>;

    /// Records each placement whose instance has no record yet; existing records stay.
    async fn record_new_placements(&self, placements: &[Placement]) -> Result<(), RepoError>;

    /// Forgets the instances that are still recorded on `host` (a record that meanwhile moved
    /// to another host stays).
    async fn forget_placements(&self, host: &str, instances: &[Uuid]) -> Result<(), RepoError>;
}
