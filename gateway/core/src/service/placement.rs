//! Where instances live: the placement index (`PlacementStore`) in front of the compute hosts.
//!
//! - A lookup asks the database for the instance's host, then that one host. When the record is
//!   missing or stale (the host no longer has the instance), the other hosts are searched in
//!   parallel (`ComputeBackend::search`, bounded fan-out) and the record is corrected.
//! - The index is kept fresh in the background: each host's inventory (one listing call) at
//!   start, every `placement_refresh`, and when a host's connection comes back; in between,
//!   from libvirt's domain lifecycle events (defined, undefined, started, migrated).

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::Service;
use crate::ports::{ComputeError, HostEvent, Placement};
use crate::Instance;

/// Inventories read at once in a refresh of every host.
const INVENTORY_CONCURRENCY: usize = 16;

/// What a lookup found, with what the index knew of the instance before asking any host.
pub(super) struct Located {
    pub instance: Result<Instance, ComputeError>,
    /// The index's record, when there was one (its owner stands in while the host is down).
    pub recorded: Option<Placement>,
}

impl Service {
    /// Finds an instance: on its recorded host first, else on every other host in parallel.
    pub(super) async fn find_instance(&self, uuid: Uuid) -> Located {
        let recorded = match self.placements.placement(uuid).await {
            Ok(p) => p,
            Err(e) => {
                // The index is an optimisation: without it, every host is asked.
                tracing::warn!(error = %e, instance = %uuid, "placement index unreadable; searching every host");
                None
            }
        };
        let mut skip = None;
        if let Some(p) = &recorded {
            match self.compute.describe(&p.host, uuid).await {
                Ok(found) => {
                    if found.owner_tenant != p.owner_tenant {
                        self.remember(&found).await;
                    }
                    return Located {
                        instance: Ok(found),
                        recorded,
                    };
                }
                // Moved or removed: look everywhere else.
                Err(ComputeError::InstanceNotFound(_)) => skip = Some(p.host.clone()),
                // The recorded host is no longer configured.
                Err(ComputeError::UnknownHost(_)) => {}
                // The host is down (or refused): its instance waits for it, other hosts are
                // not asked (the instance is where the index says until a host says otherwise).
                Err(e) => {
                    return Located {
                        instance: Err(e),
                        recorded,
                    }
                }
            }
        }
        let instance = match self.compute.search(uuid, skip.as_deref()).await {
            Ok(found) => {
                if let Some(old) = &skip {
                    tracing::info!(instance = %uuid, from = %old, to = %found.host, "instance moved; placement corrected");
                    metrics::counter!("snapgate_placement_corrections_total").increment(1);
                }
                self.remember(&found).await;
                Ok(found)
            }
            Err(ComputeError::InstanceNotFound(id)) => {
                if let Some(host) = &skip {
                    self.forget(host, &[uuid]).await;
                }
                Err(ComputeError::InstanceNotFound(id))
            }
            Err(e) => Err(e),
        };
        Located { instance, recorded }
    }

    /// Records where an instance was found (a failed write only costs a later search).
    async fn remember(&self, found: &Instance) {
        let p = Placement {
            instance: found.uuid,
            host: found.host.clone(),
            owner_tenant: found.owner_tenant.clone(),
        };
        if let Err(e) = self.placements.record_placements(&[p]).await {
            tracing::warn!(error = %e, instance = %found.uuid, "could not record the instance's placement");
        }
    }

    async fn forget(&self, host: &str, instances: &[Uuid]) {
        if let Err(e) = self.placements.forget_placements(host, instances).await {
            tracing::warn!(error = %e, %host, "could not forget placements");
        }
    }

    /// Reads one host's inventory and makes the index agree with it: one listing call, plus
    /// one metadata read per instance the index did not have on this host.
    pub async fn refresh_host_placements(&self, host: &str) -> Result<(), ComputeError> {
        // Records first, listing second: a record an event adds in between is not in `known`,
        // so it cannot be taken for one the listing no longer shows.
        let recorded = match self.placements.placements_on_host(host).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, %host, "placement index unreadable; inventory not applied");
                return Ok(());
            }
        };
        let listed = self.compute.list_instances(host).await?;
        let known: HashSet<Uuid> = recorded.iter().map(|p| p.instance).collect();
        let here: HashSet<Uuid> = listed.iter().map(|l| l.uuid).collect();
        let (mut active, mut inactive) = (Vec::new(), Vec::new());
        for l in listed.iter().filter(|l| !known.contains(&l.uuid)) {
            let owner_tenant = match self.compute.instance_owner(host, l.uuid).await {
                Ok(owner) => owner,
                // Undefined between the listing and now.
                Err(ComputeError::InstanceNotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let p = Placement {
                instance: l.uuid,
                host: host.to_owned(),
                owner_tenant,
            };
            if l.active {
                active.push(p);
            } else {
                inactive.push(p);
            }
        }
        let gone: Vec<Uuid> = known.difference(&here).copied().collect();
        let written = async {
            // A running copy takes the record over from another host; a defined-only one (the
            // source of a migration may keep its definition) only fills a gap.
            self.placements.record_placements(&active).await?;
            self.placements.record_new_placements(&inactive).await?;
            self.placements.forget_placements(host, &gone).await
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %e, %host, "could not apply the host's inventory");
        }
        tracing::debug!(%host, listed = listed.len(), added = active.len() + inactive.len(), removed = gone.len(), "placement inventory applied");
        metrics::counter!("snapgate_placement_inventories_total", "host" => host.to_owned())
            .increment(1);
        Ok(())
    }

    /// Reads every host's inventory, a few at a time. A host that cannot be asked keeps its
    /// records (its instances are still there as far as anyone knows).
    pub async fn refresh_placements(self: &Arc<Self>) {
        let limit = Arc::new(tokio::sync::Semaphore::new(INVENTORY_CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for host in self.compute.hosts() {
            let (service, limit) = (self.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire().await;
                if let Err(e) = service.refresh_host_placements(&host).await {
                    tracing::warn!(%host, error = %e, "host inventory not read");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Applies one host event to the index.
    async fn apply_host_event(self: &Arc<Self>, event: HostEvent) {
        match event {
            HostEvent::InstanceSeen {
                host,
                instance,
                active,
            } => {
                let owner_tenant = match self.compute.instance_owner(&host, instance).await {
                    Ok(owner) => owner,
                    Err(e) => {
                        tracing::debug!(%host, %instance, error = %e, "event for an instance that cannot be read now");
                        return;
                    }
                };
                let p = [Placement {
                    instance,
                    host,
                    owner_tenant,
                }];
                let written = if active {
                    self.placements.record_placements(&p).await
                } else {
                    self.placements.record_new_placements(&p).await
                };
                if let Err(e) = written {
                    tracing::warn!(error = %e, %instance, "could not record a placement event");
                }
            }
            HostEvent::InstanceGone { host, instance } => self.forget(&host, &[instance]).await,
            HostEvent::Reconnected { host } => {
                if let Err(e) = self.refresh_host_placements(&host).await {
                    tracing::warn!(%host, error = %e, "inventory after a reconnection not read");
                }
            }
        }
    }

    /// Keeps the placement index fresh until the returned handle is aborted: every host's
    /// inventory now and every `placement_refresh`, and host events as they come.
    pub fn spawn_placement(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        // Subscribed before the first inventory, so nothing between the two is missed.
        let mut events = self.compute.subscribe();
        tokio::spawn(async move {
            let mut listening = true;
            let mut tick = tokio::time::interval(service.settings.placement_refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        service.refresh_placements().await;
                        tracing::debug!("placement inventories read");
                    }
                    event = events.recv(), if listening => match event {
                        Ok(event) => service.apply_host_event(event).await,
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "host events missed; reading every inventory");
                            service.refresh_placements().await;
                        }
                        // The backend is gone (shutdown): inventories alone from now on.
                        Err(RecvError::Closed) => listening = false,
                    },
                }
            }
        })
    }
}
