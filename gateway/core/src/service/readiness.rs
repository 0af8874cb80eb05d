//! Readiness: can this gateway serve? The database and the compute hosts gate it (ready while
//! at least one host is up: a host that is down costs only its own instances, so it must not
//! take every gateway out of the load balancer); the quota store is reported but does not gate
//! it (reads, applies and deletes go on without it). Nothing here waits on a dead host: hosts
//! are reported from their circuit breakers, in memory.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::Service;
use crate::ports::BreakerState;

/// One dependency's answer. `error` carries backend text (host names, driver messages): it is
/// for operators, served only where the gateway is configured to show detail. Hosts also say
/// their breaker's state (`closed`, `open`, `half_open`) and whether a connection is open.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
}

/// How long readiness waits for the quota store: it only reports it, and a Redis failover
/// must not make every gateway's health check time out at once.
const QUOTA_CHECK_BOUND: std::time::Duration = std::time::Duration::from_millis(500);

impl Check {
    fn of<E: std::fmt::Display>(r: Result<(), E>) -> Self {
        match r {
            Ok(()) => Check {
                ok: true,
                error: None,
                breaker: None,
                connected: None,
            },
            Err(e) => Check {
                ok: false,
                error: Some(e.to_string()),
                breaker: None,
                connected: None,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    /// The database answered and at least one compute host is up.
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
        let quota = async {
            match tokio::time::timeout(QUOTA_CHECK_BOUND, self.quota.is_primed()).await {
                Ok(r) => Check::of(r.map(|_| ())),
                Err(_) => Check::of(Err("no answer within 500 ms")),
            }
        };
        let (database, quota) = tokio::join!(database, quota);
        let hosts: BTreeMap<String, Check> = self
            .hosts_health()
            .into_iter()
            .map(|h| {
                let ok = h.breaker == BreakerState::Closed;
                let check = Check {
                    ok,
                    error: h.error,
                    breaker: Some(h.breaker.as_str()),
                    connected: Some(h.connected),
                };
                (h.host, check)
            })
            .collect();
        let some_host_up = hosts.is_empty() || hosts.values().any(|c| c.ok);
        Readiness {
            ready: database.ok && some_host_up,
            database,
            hosts,
            quota,
        }
    }
}
