//! `RedisQuotaStore`: quotas shared by every gateway through one Redis.
//!
//! Each decision is one Lua script (atomic on the server) over the keys of one tenant; see
//! `src/lua/common.lua` for the data layout. The connection is a `ConnectionManager`, made on
//! first use (a gateway starts even while Redis is down) and reconnecting by itself after.
//! Every call is bounded by `call_timeout`: a dead Redis gives `QuotaError::Unavailable`
//! quickly instead of hanging requests.

mod keys;
mod scripts;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script};
use snapgate_core::ports::{
    QuotaError, QuotaLimits, QuotaReservation, QuotaResource, QuotaStore, QuotaUsage, RecentSave,
    TenantTotals,
};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::book::Want;
use crate::outcome::{EndOutcome, FreeOutcome, RebuildReport, RenewOutcome, ReserveOutcome, Tally};
use crate::{duration_ms, DEFAULT_MARKER_TTL};
pub use keys::tenant_key_part;
use keys::TenantKeys;
use scripts::Scripts;

#[derive(Debug, Clone)]
pub struct RedisQuotaConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Start of every key. Must not contain `{` or `}` (they would take the hash tag).
    pub key_prefix: String,
    /// Limit of one TCP connect attempt.
    pub connect_timeout: Duration,
    /// Limit of one reply on an open connection.
    pub response_timeout: Duration,
    /// Limit of a whole store call, waiting for a reconnect included.
    pub call_timeout: Duration,
    /// How long commit/release/free markers make retries no-ops.
    pub marker_ttl: Duration,
}

impl RedisQuotaConfig {
    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: key_prefix.into(),
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(1),
            marker_ttl: DEFAULT_MARKER_TTL,
        }
    }
}

pub struct RedisQuotaStore {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    scripts: Scripts,
    config: RedisQuotaConfig,
}

impl std::fmt::Debug for RedisQuotaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuotaStore")
            .field("key_prefix", &self.config.key_prefix)
            .field("connected", &self.connection.initialized())
            .finish()
    }
}

impl RedisQuotaStore {
    /// Checks the configuration; connects on first use.
    pub fn new(config: RedisQuotaConfig) -> Result<Self, QuotaError> {
        if config.key_prefix.is_empty() || config.key_prefix.contains(['{', '}']) {
            return Err(QuotaError::Unavailable(format!(
                "invalid redis key prefix {:?}: it must be non-empty and contain no '{{' or '}}'",
                config.key_prefix
            )));
        }
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| QuotaError::Unavailable(format!("invalid redis url: {e}")))?;
        Ok(Self {
            client,
            connection: OnceCell::new(),
            scripts: Scripts::new(),
            config,
        })
    }

    pub fn config(&self) -> &RedisQuotaConfig {
        &self.config
    }

    /// Connects and loads the scripts now rather than on the first request.
    pub async fn connect(&self) -> Result<(), QuotaError> {
        self.call("connect", async { self.connection().await.map(|_| ()) })
            .await
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        let manager = self
            .connection
            .get_or_try_init(|| async {
                // No retries inside the manager: a failed reconnect fails the waiting calls at
                // once, and the next call starts a new attempt. Its built-in backoff starts at
                // 1 s and would hold every call of that time behind it.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.config.connect_timeout)
                    .set_response_timeout(self.config.response_timeout)
                    .set_number_of_retries(0);
                let mut manager =
                    ConnectionManager::new_with_config(self.client.clone(), config).await?;
                self.load_scripts(&mut manager).await?;
                Ok::<_, RedisError>(manager)
            })
            .await?;
        Ok(manager.clone())
    }

    /// SCRIPT LOAD of every script, so the first decisions skip the NOSCRIPT round trip.
    async fn load_scripts(&self, con: &mut ConnectionManager) -> Result<(), RedisError> {
        for script in self.scripts.all() {
            script.load_async(con).await?;
        }
        Ok(())
    }

    /// Bounds `work` by `call_timeout` and turns every failure into `Unavailable`.
    async fn call<T>(
        &self,
        what: &'static str,
        work: impl Future<Output = Result<T, impl std::fmt::Display>>,
    ) -> Result<T, QuotaError> {
        match tokio::time::timeout(self.config.call_timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::warn!(what, error = %e, "redis quota call failed");
                Err(QuotaError::Unavailable(format!("redis {what}: {e}")))
            }
            Err(_) => {
                tracing::warn!(what, timeout = ?self.config.call_timeout, "redis quota call timed out");
                Err(QuotaError::Unavailable(format!(
                    "redis {what}: no answer within {:?}",
                    self.config.call_timeout
                )))
            }
        }
    }

    fn keys(&self, tenant: &str) -> TenantKeys {
        TenantKeys::new(&self.config.key_prefix, tenant)
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, QuotaError> {
        self.call(what, async {
            let mut con = self.connection().await?;
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            invocation.invoke_async::<T>(&mut con).await
        })
        .await
    }

    /// The reserve script, pipelined after registering the tenant (a different slot, so it
    /// cannot happen inside the script). Registering first means a tenant with a reservation
    /// is always known to `rebuild`; a registered tenant without one is harmless.
    async fn run_reserve(
        &self,
        tenant: &str,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<i64>, QuotaError> {
        let script = &self.scripts.reserve;
        let mut pipe = redis::pipe();
        pipe.cmd("SADD")
            .arg(keys::tenants(&self.config.key_prefix))
            .arg(tenant)
            .ignore();
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        self.call("reserve", async {
            let mut con = self.connection().await?;
            match pipe.query_async::<(Vec<i64>,)>(&mut con).await {
                Err(e) if e.kind() == ErrorKind::NoScriptError => {
                    // Redis lost its script cache (restart, SCRIPT FLUSH): load and retry; the
                    // SADD is idempotent and the script did not run.
                    script.load_async(&mut con).await?;
                    pipe.query_async::<(Vec<i64>,)>(&mut con).await
                }
                other => other,
            }
        })
        .await
        .map(|(reply,)| reply)
    }

    pub async fn reserve_outcome(
        &self,
        r: &QuotaReservation,
        limits: &QuotaLimits,
        lease: Duration,
    ) -> Result<ReserveOutcome, QuotaError> {
        let keys = self.keys(&r.tenant);
        let want = Want::of(r);
        let keys = [
            keys.in_use(),
            keys.reservations(),
            keys.saves(),
            keys.ended(r.operation),
        ];
        let args = [
            r.operation.to_string(),
            want.states.to_string(),
            want.bytes.to_string(),
            want.operations.to_string(),
            want.saves.to_string(),
            duration_ms(lease).to_string(),
            limits.states.to_string(),
            limits.state_bytes.to_string(),
            limits.concurrent_operations.to_string(),
            limits.saves_per_hour.to_string(),
        ];
        let reply = self.run_reserve(&r.tenant, &keys, &args).await?;
        decode_reserve(&reply)
    }

    /// `QuotaStore::check`: the reserve decision, read-only on the server.
    pub async fn check_outcome(
        &self,
        r: &QuotaReservation,
        limits: &QuotaLimits,
    ) -> Result<(), QuotaError> {
        let k = self.keys(&r.tenant);
        let want = Want::of(r);
        let keys = [k.in_use(), k.reservations(), k.saves()];
        let args = [
            want.states.to_string(),
            want.bytes.to_string(),
            want.operations.to_string(),
            want.saves.to_string(),
            limits.states.to_string(),
            limits.state_bytes.to_string(),
            limits.concurrent_operations.to_string(),
            limits.saves_per_hour.to_string(),
        ];
        let reply: Vec<i64> = self.run("check", &self.scripts.check, &keys, &args).await?;
        decode_reserve(&reply).map(|_| ())
    }

    pub async fn renew_outcome(
        &self,
        tenant: &str,
        operation: Uuid,
        lease: Duration,
    ) -> Result<RenewOutcome, QuotaError> {
        let k = self.keys(tenant);
        let keys = [k.reservations(), k.saves(), k.ended(operation)];
        let args = [operation.to_string(), duration_ms(lease).to_string()];
        let code: i64 = self.run("renew", &self.scripts.renew, &keys, &args).await?;
        match code {
            0 => Ok(RenewOutcome::Renewed),
            1 => Ok(RenewOutcome::OperationEnded),
            2 => Ok(RenewOutcome::NoLease),
            other => Err(bad_reply("renew", other)),
        }
    }

    pub async fn commit_outcome(
        &self,
        tenant: &str,
        operation: Uuid,
        actual_bytes: Option<i64>,
    ) -> Result<EndOutcome, QuotaError> {
        let k = self.keys(tenant);
        let keys = [k.in_use(), k.reservations(), k.ended(operation)];
        let bytes = actual_bytes
            .map(|b| b.max(0).to_string())
            .unwrap_or_default();
        let args = [operation.to_string(), bytes, self.marker_ttl_ms()];
        let code: i64 = self
            .run("commit", &self.scripts.commit, &keys, &args)
            .await?;
        decode_end("commit", code)
    }

    pub async fn release_outcome(
        &self,
        tenant: &str,
        operation: Uuid,
    ) -> Result<EndOutcome, QuotaError> {
        let k = self.keys(tenant);
        let keys = [k.reservations(), k.saves(), k.ended(operation)];
        let args = [operation.to_string(), self.marker_ttl_ms()];
        let code: i64 = self
            .run("release", &self.scripts.release, &keys, &args)
            .await?;
        decode_end("release", code)
    }

    pub async fn free_outcome(
        &self,
        tenant: &str,
        operation: Uuid,
        states: i64,
        bytes: i64,
    ) -> Result<FreeOutcome, QuotaError> {
        let k = self.keys(tenant);
        let keys = [k.in_use(), k.freed(operation)];
        let args = [
            states.max(0).to_string(),
            bytes.max(0).to_string(),
            self.marker_ttl_ms(),
        ];
        let code: i64 = self.run("free", &self.scripts.free, &keys, &args).await?;
        match code {
            0 => Ok(FreeOutcome::Freed),
            1 => Ok(FreeOutcome::AlreadyFreed),
            other => Err(bad_reply("free", other)),
        }
    }

    /// Raw counts of one tenant (after dropping lapsed leases and old saves).
    pub async fn tally(&self, tenant: &str) -> Result<Tally, QuotaError> {
        let k = self.keys(tenant);
        let keys = [k.in_use(), k.reservations(), k.saves()];
        let reply: Vec<i64> = self.run("usage", &self.scripts.usage, &keys, &[]).await?;
        match reply[..] {
            [states, bytes, reserved_states, reserved_bytes, reserved_operations, reserved_saves, window] => {
                Ok(Tally {
                    states,
                    bytes,
                    reserved_states,
                    reserved_bytes,
                    reserved_operations,
                    reserved_saves,
                    window,
                })
            }
            _ => Err(QuotaError::Unavailable(format!(
                "redis usage: unexpected reply {reply:?}"
            ))),
        }
    }

    /// Tenants the store knows: every tenant that ever reserved since the last flush.
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

    /// `QuotaStore::rebuild`, reporting what changed.
    pub async fn rebuild_report(
        &self,
        totals: &[TenantTotals],
        saves: &[RecentSave],
        live: &[QuotaReservation],
        lease: Duration,
    ) -> Result<RebuildReport, QuotaError> {
        let mut tenants: BTreeMap<String, TenantTruth> = BTreeMap::new();
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

        let lease_ms = duration_ms(lease).to_string();
        let mut report = RebuildReport::default();
        for (tenant, truth) in &tenants {
            let k = self.keys(tenant);
            let mut keys = vec![k.in_use(), k.reservations(), k.saves()];
            let mut args = vec![
                truth.states.to_string(),
                truth.bytes.to_string(),
                lease_ms.clone(),
                truth.live.len().to_string(),
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
            let [dropped, recreated, restored_saves] = reply[..] else {
                return Err(QuotaError::Unavailable(format!(
                    "redis rebuild: unexpected reply {reply:?}"
                )));
            };
            report.dropped += dropped;
            report.recreated += recreated;
            report.restored_saves += restored_saves;
        }

        let registry = keys::tenants(&self.config.key_prefix);
        let primed = keys::primed(&self.config.key_prefix);
        let names: Vec<&String> = tenants.keys().collect();
        self.call("rebuild", async {
            let mut con = self.connection().await?;
            let mut pipe = redis::pipe();
            if !names.is_empty() {
                pipe.cmd("SADD").arg(&registry).arg(&names).ignore();
            }
            pipe.cmd("SET").arg(&primed).arg(unix_seconds()).ignore();
            pipe.query_async::<()>(&mut con).await
        })
        .await?;
        Ok(report)
    }

    fn marker_ttl_ms(&self) -> String {
        duration_ms(self.config.marker_ttl).max(1).to_string()
    }
}

#[async_trait]
impl QuotaStore for RedisQuotaStore {
    async fn reserve(
        &self,
        r: &QuotaReservation,
        limits: &QuotaLimits,
        lease: Duration,
    ) -> Result<(), QuotaError> {
        self.reserve_outcome(r, limits, lease).await.map(|_| ())
    }

    async fn check(&self, r: &QuotaReservation, limits: &QuotaLimits) -> Result<(), QuotaError> {
        self.check_outcome(r, limits).await
    }

    async fn renew(
        &self,
        tenant: &str,
        operation: Uuid,
        lease: Duration,
    ) -> Result<(), QuotaError> {
        crate::log_renew(
            tenant,
            operation,
            self.renew_outcome(tenant, operation, lease).await?,
        );
        Ok(())
    }

    async fn commit(
        &self,
        tenant: &str,
        operation: Uuid,
        actual_bytes: Option<i64>,
    ) -> Result<(), QuotaError> {
        crate::log_end(
            "commit",
            tenant,
            operation,
            self.commit_outcome(tenant, operation, actual_bytes).await?,
        );
        Ok(())
    }

    async fn release(&self, tenant: &str, operation: Uuid) -> Result<(), QuotaError> {
        crate::log_end(
            "release",
            tenant,
            operation,
            self.release_outcome(tenant, operation).await?,
        );
        Ok(())
    }

    async fn free(
        &self,
        tenant: &str,
        operation: Uuid,
        states: i64,
        bytes: i64,
    ) -> Result<(), QuotaError> {
        self.free_outcome(tenant, operation, states, bytes)
            .await
            .map(|_| ())
    }

    async fn usage(&self, tenant: &str, limits: &QuotaLimits) -> Result<QuotaUsage, QuotaError> {
        Ok(self.tally(tenant).await?.usage(limits))
    }

    /// One script per tenant (each in its own slot), then the primed marker. Not atomic across
    /// tenants: the caller reads the database and rebuilds while no decision it cares about
    /// runs (startup, or the reconciler after a flush).
    async fn rebuild(
        &self,
        totals: &[TenantTotals],
        saves: &[RecentSave],
        live: &[QuotaReservation],
        lease: Duration,
    ) -> Result<(), QuotaError> {
        let report = self.rebuild_report(totals, saves, live, lease).await?;
        tracing::info!(
            dropped = report.dropped,
            recreated = report.recreated,
            restored_saves = report.restored_saves,
            "redis quotas rebuilt"
        );
        Ok(())
    }

    async fn is_primed(&self) -> Result<bool, QuotaError> {
        let key = keys::primed(&self.config.key_prefix);
        self.call("is_primed", async {
            let mut con = self.connection().await?;
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<bool>(&mut con)
                .await
        })
        .await
    }
}

/// What the database says of one tenant, for its rebuild script.
#[derive(Default)]
struct TenantTruth<'a> {
    states: i64,
    bytes: i64,
    live: Vec<&'a QuotaReservation>,
    saves: Vec<&'a RecentSave>,
}

fn decode_reserve(reply: &[i64]) -> Result<ReserveOutcome, QuotaError> {
    match *reply {
        [0, 0] => Ok(ReserveOutcome::Reserved),
        [0, 1] => Ok(ReserveOutcome::OperationEnded),
        [0, 2] => Ok(ReserveOutcome::AlreadyReserved),
        [1, resource, limit, in_use, reserved, requested] => {
            let resource = usize::try_from(resource - 1)
                .ok()
                .and_then(|i| QuotaResource::ALL.get(i).copied())
                .ok_or_else(|| {
                    QuotaError::Unavailable(format!("redis reserve: unknown resource {resource}"))
                })?;
            Err(QuotaError::Exceeded {
                resource,
                limit,
                in_use,
                reserved,
                requested,
            })
        }
        [2, secs] => Err(QuotaError::RateLimited {
            retry_after_secs: secs.max(1) as u64,
        }),
        _ => Err(QuotaError::Unavailable(format!(
            "redis reserve: unexpected reply {reply:?}"
        ))),
    }
}

fn decode_end(what: &str, code: i64) -> Result<EndOutcome, QuotaError> {
    match code {
        0 => Ok(EndOutcome::Done),
        1 => Ok(EndOutcome::AlreadyEnded),
        2 => Ok(EndOutcome::NoReservation),
        other => Err(bad_reply(what, other)),
    }
}

fn bad_reply(what: &str, code: i64) -> QuotaError {
    QuotaError::Unavailable(format!("redis {what}: unexpected reply {code}"))
}

/// Seconds since the epoch, for operators reading the primed marker.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
