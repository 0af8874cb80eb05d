//! Readiness: can this gateway serve? The database and every compute host gate it; the quota
//! store is reported but does not (reads, applies and deletes go on without it).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::Service;

/// One dependency's answer. `error` carries backend text (host names, driver messages): it is
/// for operators, served only where the gateway is configured to show detail.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    fn of<E: std::fmt::Display>(r: Result<(), E>) -> Self {
        match r {
            Ok(()) => Check {
                ok: true,
                error: None,
            },
            Err(e) => Check {
                ok: false,
                error: Some(e.to_string()),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    /// The database and every compute host answered.
    pub ready: bool,
    pub database: Check,
    pub hosts: BTreeMap<String, Check>,
    pub quota: Check,
}

impl Service {
    /// Asks the database, the hosts and the quota store at once. A probe, not a tenant's
    /// call: it needs no caller, and what it returns is for the operator (the HTTP layer
    /// decides who sees the detail).
    pub async fn readiness(&self) -> Readiness {
        let database = async { Check::of(self.repo.ping().await) };
        let hosts = async {
            let mut hosts = BTreeMap::new();
            for host in self.compute.hosts() {
                let r = self.compute.ping(&host).await;
                hosts.insert(host, Check::of(r));
            }
            hosts
        };
        let quota = async { Check::of(self.quota.is_primed().await.map(|_| ())) };
        let (database, hosts, quota) = tokio::join!(database, hosts, quota);
        Readiness {
            ready: database.ok && hosts.values().all(|c| c.ok),
            database,
            hosts,
            quota,
        }
    }
}
