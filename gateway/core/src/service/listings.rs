//! Listings across the cloud, each through the tenant wall: the caller itself, the instances it
//! may see, tenants with their quotas, the compute hosts, and the operations in flight. What a
//! console (or any client) needs to show a tenant or an operator their world without knowing
//! uuids beforehand. Read-only; authorized here like every other call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::require;
use super::{QuotaView, Service};
use crate::auth::{Caller, Role};
use crate::ports::{BreakerState, ComputeBackend};
use crate::{Operation, ServiceError};

/// Instances described at once on their hosts for one page of the listing.
const DESCRIBE_FAN_OUT: usize = 8;

/// Who the caller is, as the gateway sees its token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallerView {
    pub tenant_id: String,
    /// The highest role held: `reader`, `member` or `admin`.
    pub role: Role,
    /// Every role held (each implies the ones below it).
    pub roles: Vec<String>,
    /// Cloud operator scope: sees every tenant.
    pub operator: bool,
    pub subject: String,
}

/// Where an instance's owner comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OwnerSource {
    /// An operator's `PUT /v1/instances/{instance}/owner`.
    Assigned,
    /// The domain's metadata (Nova's project or snapgate's owner element).
    Metadata,
}

/// One instance as the listing shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstanceSummary {
    pub uuid: Uuid,
    /// The host the placement index last saw the instance on.
    pub host: String,
    /// The owning tenant; `null` for an unowned instance (listed to the operator only).
    pub owner: Option<String>,
    pub owner_source: Option<OwnerSource>,
    /// The host answered for the instance just now; when `false` (host down, instance gone
    /// since the last inventory) the fields below are `null`.
    pub reachable: bool,
    /// The domain's name.
    pub name: Option<String>,
    pub running: Option<bool>,
    pub vcpus: Option<u32>,
    pub memory_bytes: Option<i64>,
}

/// One page of instances, by uuid.
#[derive(Debug, Clone)]
pub struct InstancePage {
    pub items: Vec<InstanceSummary>,
    pub more: bool,
}

/// A compute host as the gateway knows it right now (from its circuit breaker, in memory).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HostView {
    pub name: String,
    /// The breaker is closed: calls go through.
    pub up: bool,
    /// `closed`, `half_open` or `open`.
    pub breaker: BreakerState,
    /// A connection is open (hosts connect on first use).
    pub connected: bool,
    /// Instances the placement index records on the host.
    pub instances: u64,
}

/// An operation not yet finished, with the tenant it runs for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperationInFlight {
    #[serde(flatten)]
    pub operation: Operation,
    pub tenant_id: String,
}

impl Service {
    /// The caller as its token made it. Any role.
    pub fn whoami(&self, caller: &Caller) -> CallerView {
        CallerView {
            tenant_id: caller.tenant.clone(),
            role: caller.role,
            roles: caller.role_names(),
            operator: caller.is_operator(),
            subject: caller.subject.clone(),
        }
    }

    /// The instances the caller may see, by uuid, from the placement index (every host's
    /// inventory) and the owners operators assigned; each page's instances are described on
    /// their hosts at once. A tenant's caller lists its own tenant's instances; the operator
    /// every instance, unowned ones included. An instance whose host was never read (down
    /// since before the gateway started) is not listed until it is.
    pub async fn list_instances(
        &self,
        caller: &Caller,
        limit: Option<u64>,
        marker: Option<Uuid>,
    ) -> Result<InstancePage, ServiceError> {
        require(caller, Role::Reader)?;
        let limit = self.page_size(limit)?;
        let (placements, assigned) = tokio::join!(
            self.placements.all_placements(),
            self.repo.owner_assignments()
        );
        let assigned: HashMap<Uuid, String> = assigned?.into_iter().collect();
        let visible: Vec<(Uuid, String, Option<String>, Option<OwnerSource>)> = placements?
            .into_iter()
            .filter_map(|p| {
                let (owner, source) = match assigned.get(&p.instance) {
                    Some(t) => (Some(t.clone()), Some(OwnerSource::Assigned)),
                    None => match p.owner_tenant {
                        Some(t) => (Some(t), Some(OwnerSource::Metadata)),
                        None => (None, None),
                    },
                };
                let sees = match &owner {
                    Some(t) => caller.can_see(t),
                    None => caller.is_operator(),
                };
                sees.then_some((p.instance, p.host, owner, source))
            })
            .collect();
        let start = match marker {
            None => 0,
            Some(m) => match visible.iter().position(|(uuid, ..)| *uuid == m) {
                Some(i) => i + 1,
                // A marker the caller cannot see is refused like an unknown one.
                None => {
                    return Err(ServiceError::bad_request(
                        "invalid_marker",
                        "marker is not an instance of this listing",
                    ))
                }
            },
        };
        let page: Vec<_> = visible
            .into_iter()
            .skip(start)
            .take(limit as usize + 1)
            .collect();
        let more = page.len() > limit as usize;
        let page: Vec<_> = page.into_iter().take(limit as usize).collect();
        let described = describe_all(
            self.compute.clone(),
            page.iter().map(|(u, h, ..)| (*u, h.clone())).collect(),
        )
        .await;
        let items = page
            .into_iter()
            .map(|(uuid, host, owner, owner_source)| {
                let live = described.get(&uuid);
                InstanceSummary {
                    uuid,
                    host,
                    owner,
                    owner_source,
                    reachable: live.is_some(),
                    name: live.map(|i| i.name.clone()),
                    running: live.map(|i| i.running),
                    vcpus: live.map(|i| i.vcpus),
                    memory_bytes: live.map(|i| i.memory_bytes),
                }
            })
            .collect();
        Ok(InstancePage { items, more })
    }

    /// Tenants with their limits and usage, by id. The operator sees every tenant the gateway
    /// knows of (limits of their own, kept states, owned instances); a tenant's caller only its
    /// own.
    pub async fn list_tenants(&self, caller: &Caller) -> Result<Vec<QuotaView>, ServiceError> {
        require(caller, Role::Reader)?;
        let tenants: BTreeSet<String> = if caller.is_operator() {
            let (limits, totals, placements, assigned) = tokio::join!(
                self.repo.tenants_with_limits(),
                self.repo.tenant_totals(),
                self.placements.all_placements(),
                self.repo.owner_assignments()
            );
            let mut set: BTreeSet<String> = limits?.into_iter().collect();
            set.extend(totals?.into_iter().map(|t| t.tenant));
            set.extend(placements?.into_iter().filter_map(|p| p.owner_tenant));
            set.extend(assigned?.into_iter().map(|(_, t)| t));
            set.insert(caller.tenant.clone());
            set
        } else {
            BTreeSet::from([caller.tenant.clone()])
        };
        let mut views = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            views.push(self.get_quota(caller, &tenant).await?);
        }
        Ok(views)
    }

    /// The compute hosts with their breaker state and how many instances the placement index
    /// records on each. Operator scope only: hosts are the cloud's, not a tenant's.
    pub async fn list_hosts(&self, caller: &Caller) -> Result<Vec<HostView>, ServiceError> {
        if !caller.is_operator() {
            return Err(ServiceError::Forbidden(
                "this call needs operator scope".into(),
            ));
        }
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for p in self.placements.all_placements().await? {
            *counts.entry(p.host).or_default() += 1;
        }
        let mut hosts: Vec<HostView> = self
            .hosts_health()
            .into_iter()
            .map(|h| HostView {
                instances: counts.get(&h.host).copied().unwrap_or(0),
                up: h.breaker == BreakerState::Closed,
                breaker: h.breaker,
                connected: h.connected,
                name: h.host,
            })
            .collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(hosts)
    }

    /// Operations not yet finished (pending or running), oldest first: the caller's tenant's,
    /// or every tenant's for the operator.
    pub async fn list_operations_in_flight(
        &self,
        caller: &Caller,
    ) -> Result<Vec<OperationInFlight>, ServiceError> {
        require(caller, Role::Reader)?;
        Ok(self
            .repo
            .unfinished_operations()
            .await?
            .into_iter()
            .filter(|op| caller.can_see(&op.tenant_id))
            .map(|op| OperationInFlight {
                tenant_id: op.tenant_id.clone(),
                operation: op,
            })
            .collect())
    }

    /// A page size from the caller's `limit`: the default when absent, at most the maximum.
    fn page_size(&self, limit: Option<u64>) -> Result<u64, ServiceError> {
        match limit {
            None => Ok(self.settings.default_page_size),
            Some(0) => Err(ServiceError::bad_request(
                "invalid_parameter",
                "limit must be at least 1",
            )),
            Some(n) => Ok(n.min(self.settings.max_page_size)),
        }
    }
}

/// Describes each instance on its host, [`DESCRIBE_FAN_OUT`] at a time; an instance its host
/// could not describe is left out.
async fn describe_all(
    compute: Arc<dyn ComputeBackend>,
    instances: Vec<(Uuid, String)>,
) -> HashMap<Uuid, crate::Instance> {
    let permits = Arc::new(tokio::sync::Semaphore::new(DESCRIBE_FAN_OUT));
    let mut set = tokio::task::JoinSet::new();
    for (uuid, host) in instances {
        let compute = compute.clone();
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            match compute.describe(&host, uuid).await {
                Ok(instance) => Some((uuid, instance)),
                Err(e) => {
                    tracing::debug!(%uuid, %host, error = %e, "listing: instance not described");
                    None
                }
            }
        });
    }
    let mut found = HashMap::new();
    while let Some(done) = set.join_next().await {
        if let Ok(Some((uuid, instance))) = done {
            found.insert(uuid, instance);
        }
    }
    found
}
