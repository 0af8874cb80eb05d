//! Rebuilding quota usage from the database: every tenant at once (start, lost data, drift
//! correction), or one tenant whose data this Redis process cannot vouch for.
//!
//! One tenant, safely while its operations go on (`rebuild_tenant`):
//! 1. `rebuild_begin.lua` returns a token (shared by rebuilders running at once), or nothing
//!    when the tenant is already fresh here;
//! 2. the database is read (totals, live operations, and the saves of the last hour, which go
//!    back into the tenant's saves-per-hour window);
//! 3. `rebuild.lua` writes it only if the token is still current. Any commit, release or free
//!    on a stale tenant deletes the token: an operation that ended between 1 and 3 may be
//!    missing from the read, so the rebuild starts again. An end recorded in the database
//!    before the read and reaching Redis after 3 finds no reservation and counts nothing.
//!    (A delete's free after 3 still subtracts: that drift lasts until the periodic rebuild.)

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use snapgate_core::ports::{QuotaError, QuotaReservation, RecentSave, TenantTotals, TenantTruth};
use uuid::Uuid;

use super::{keys, RedisQuotaStore};
use crate::book::Want;
use crate::duration_ms;
use crate::outcome::RebuildReport;

/// Attempts of one tenant's rebuild before giving up (each restart means an operation of the
/// tenant ended meanwhile; five in a row is a tenant too busy to pause, answered 503).
const TENANT_REBUILD_ATTEMPTS: usize = 5;
/// How long an abandoned rebuild token (its gateway died) blocks nothing but itself.
const REBUILD_TOKEN_TTL: Duration = Duration::from_secs(30);

impl RedisQuotaStore {
    /// Rebuilds one tenant from the database unless it is fresh on its Redis process.
    pub(super) async fn rebuild_tenant(&self, tenant: &str) -> Result<(), QuotaError> {
        let k = self.keys(tenant);
        for _ in 0..TENANT_REBUILD_ATTEMPTS {
            let new_token = Uuid::new_v4().to_string();
            let ttl = duration_ms(REBUILD_TOKEN_TTL).to_string();
            let token: Option<String> = self
                .run(
                    "rebuild",
                    &self.scripts.rebuild_begin,
                    &[k.owner(), k.rebuild()],
                    &[new_token, ttl],
                )
                .await?;
            let Some(token) = token else {
                return Ok(());
            };
            let (truth, lease) = match self.truth.get() {
                Some(source) => (
                    source.truth.tenant_truth(tenant).await.map_err(|e| {
                        QuotaError::Unavailable(format!("quota truth of {tenant:?}: {e}"))
                    })?,
                    source.lease,
                ),
                None => (
                    TenantTruth {
                        totals: None,
                        live: Vec::new(),
                        saves: Vec::new(),
                    },
                    Duration::from_secs(15 * 60),
                ),
            };
            let (states, bytes) = truth
                .totals
                .as_ref()
                .map_or((0, 0), |t| (t.states.max(0), t.bytes.max(0)));
            let written = TenantWrite {
                states,
                bytes,
                live: truth.live.iter().collect(),
                saves: truth.saves.iter().collect(),
            };
            if let Some(report) = self.write_tenant(tenant, &token, &written, lease).await? {
                self.register(&[tenant]).await?;
                tracing::info!(
                    tenant,
                    states,
                    bytes,
                    live = written.live.len(),
                    dropped = report.dropped,
                    recreated = report.recreated,
                    restored_saves = report.restored_saves,
                    "quota of a tenant rebuilt from the database (its Redis data was not trusted)"
                );
                metrics::counter!("snapgate_quota_tenant_rebuilds_total").increment(1);
                return Ok(());
            }
        }
        Err(QuotaError::Unavailable(format!(
            "redis rebuild: the quota of tenant {tenant:?} changed during {TENANT_REBUILD_ATTEMPTS} rebuilds"
        )))
    }

    /// `rebuild.lua` for one tenant; `None` when `token` is no longer current. An empty token
    /// writes unconditionally (the full rebuild).
    async fn write_tenant(
        &self,
        tenant: &str,
        token: &str,
        truth: &TenantWrite<'_>,
        lease: Duration,
    ) -> Result<Option<RebuildReport>, QuotaError> {
        let k = self.keys(tenant);
        let mut keys = vec![
            k.in_use(),
            k.reservations(),
            k.saves(),
            k.owner(),
            k.rebuild(),
        ];
        let mut args = vec![
            token.to_owned(),
            truth.states.to_string(),
            truth.bytes.to_string(),
            duration_ms(lease).to_string(),
            truth.live.len().to_string(),
            duration_ms(self.config.reservation_grace).to_string(),
        ];
        for r in &truth.live {
            let want = Want::of(r);
            keys.push(k.ended(r.operation));
            args.extend([
                r.operation.to_string(),
                want.states.to_string(),
                want.bytes.to_string(),
                want.operations.to_string(),
                want.saves.to_string(),
            ]);
        }
        for s in &truth.saves {
            args.extend([s.operation.to_string(), s.at.timestamp_millis().to_string()]);
        }
        let reply: Vec<i64> = self
            .run("rebuild", &self.scripts.rebuild, &keys, &args)
            .await?;
        match reply[..] {
            [-1] => Ok(None),
            [dropped, recreated, restored_saves] => Ok(Some(RebuildReport {
                dropped,
                recreated,
                restored_saves,
            })),
            _ => Err(QuotaError::Unavailable(format!(
                "redis rebuild: unexpected reply {reply:?}"
            ))),
        }
    }

    /// Adds tenants to the registry a full rebuild walks.
    async fn register(&self, tenants: &[&str]) -> Result<(), QuotaError> {
        if tenants.is_empty() {
            return Ok(());
        }
        let registry = keys::tenants(&self.config.key_prefix);
        self.call("rebuild", async {
            let mut con = self.connection().await?;
            redis::cmd("SADD")
                .arg(&registry)
                .arg(tenants)
                .query_async::<()>(&mut con)
                .await
        })
        .await
    }

    /// Tenants the store knows: every tenant rebuilt since the last flush.
    pub async fn known_tenants(&self) -> Result<Vec<String>, QuotaError> {
        let key = keys::tenants(&self.config.key_prefix);
        self.call("tenants", async {
            let mut con = self.connection().await?;
            redis::cmd("SMEMBERS")
                .arg(key)
                .query_async::<Vec<String>>(&mut con)
                .await
        })
        .await
    }

    /// `QuotaStore::rebuild`, reporting what changed: one script per tenant (each in its own
    /// slot, unconditional), then the registry and the primed marker (one key each).
    pub async fn rebuild_report(
        &self,
        totals: &[TenantTotals],
        saves: &[RecentSave],
        live: &[QuotaReservation],
        lease: Duration,
    ) -> Result<RebuildReport, QuotaError> {
        let mut tenants: BTreeMap<String, TenantWrite> = BTreeMap::new();
        for tenant in self.known_tenants().await? {
            tenants.entry(tenant).or_default();
        }
        for t in totals {
            let entry = tenants.entry(t.tenant.clone()).or_default();
            entry.states = t.states.max(0);
            entry.bytes = t.bytes.max(0);
        }
        let mut seen = HashSet::new();
        for r in live.iter().filter(|r| seen.insert(r.operation)) {
            tenants.entry(r.tenant.clone()).or_default().live.push(r);
        }
        for s in saves {
            tenants.entry(s.tenant.clone()).or_default().saves.push(s);
        }

        let mut report = RebuildReport::default();
        for (tenant, truth) in &tenants {
            let written = self
                .write_tenant(tenant, "", truth, lease)
                .await?
                .ok_or_else(|| QuotaError::Unavailable("redis rebuild: refused".into()))?;
            report.dropped += written.dropped;
            report.recreated += written.recreated;
            report.restored_saves += written.restored_saves;
        }

        let names: Vec<&str> = tenants.keys().map(String::as_str).collect();
        self.register(&names).await?;
        let primed = keys::primed(&self.config.key_prefix);
        self.call("rebuild", async {
            let mut con = self.connection().await?;
            redis::cmd("SET")
                .arg(&primed)
                .arg(unix_seconds())
                .query_async::<()>(&mut con)
                .await
        })
        .await?;
        Ok(report)
    }
}

/// What the database says of one tenant, as its rebuild script writes it.
#[derive(Default)]
struct TenantWrite<'a> {
    states: i64,
    bytes: i64,
    live: Vec<&'a QuotaReservation>,
    saves: Vec<&'a RecentSave>,
}

/// Seconds since the epoch, for operators reading the primed marker.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
