//! `RedisQuotaStore`: quotas shared by every gateway through one Redis node or a Redis Cluster.
//!
//! Each decision is one Lua script (atomic on the server) over the keys of one tenant, all in
//! the tenant's hash slot; see `src/lua/common.lua` for the data layout. The connection is made
//! on first use (a gateway starts even while Redis is down) and reconnects by itself after.
//! Every call is bounded by `call_timeout`: a dead Redis, or a cluster slot whose master died and
//! is not yet replaced, gives `QuotaError::Unavailable` quickly instead of hanging requests.
//!
//! A tenant's data is trusted only on the Redis process that rebuilt it from the database
//! (`rebuild.rs`): a replica promoted after a failover, or a restarted node, answers STALE and
//! the tenant is rebuilt from the database (the [`QuotaTruth`]) before the decision is retried.

mod connection;
mod keys;
mod rebuild;
mod scripts;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::RedisError;
use snapgate_core::ports::{
    QuotaError, QuotaLimits, QuotaReservation, QuotaResource, QuotaStore, QuotaTruth, QuotaUsage,
    RecentSave, TenantTotals,
};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::book::Want;
use crate::outcome::{EndOutcome, FreeOutcome, RenewOutcome, ReserveOutcome, Tally};
use crate::{duration_ms, DEFAULT_MARKER_TTL};
use connection::{RedisClient, RedisConnection};
pub use keys::tenant_key_part;
use keys::TenantKeys;
use scripts::{Lua, Scripts};

#[derive(Debug, Clone)]
pub struct RedisQuotaConfig {
    /// `redis://host:port/db`; for a cluster, comma-separated seed nodes
    /// (`redis://10.0.0.1:6379,redis://10.0.0.2:6379`).
    pub url: String,
    /// Talk to a Redis Cluster (slot routing, failover) instead of one node.
    pub cluster: bool,
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
    /// See [`crate::DEFAULT_RESERVATION_GRACE`].
    pub reservation_grace: Duration,
}

impl RedisQuotaConfig {
    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: false,
            key_prefix: key_prefix.into(),
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(1),
            marker_ttl: DEFAULT_MARKER_TTL,
            reservation_grace: crate::DEFAULT_RESERVATION_GRACE,
        }
    }

    /// The same, for the seed nodes of a Redis Cluster.
    pub fn cluster(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            cluster: true,
            ..Self::new(url, key_prefix)
        }
    }
}

/// The database's truth and the lease given to reservations recreated from it.
struct TruthSource {
    truth: Arc<dyn QuotaTruth>,
    lease: Duration,
}

pub struct RedisQuotaStore {
    client: RedisClient,
    connection: OnceCell<RedisConnection>,
    scripts: Scripts,
    config: RedisQuotaConfig,
    truth: OnceLock<TruthSource>,
}

impl std::fmt::Debug for RedisQuotaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuotaStore")
            .field("key_prefix", &self.config.key_prefix)
            .field("cluster", &self.config.cluster)
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
        let client = RedisClient::open(&config.url, config.cluster)
            .map_err(|e| QuotaError::Unavailable(format!("invalid redis url: {e}")))?;
        Ok(Self {
            client,
            connection: OnceCell::new(),
            scripts: Scripts::new(),
            config,
            truth: OnceLock::new(),
        })
    }

    /// Where a tenant's usage is read when its Redis data can no longer be trusted (a promoted
    /// replica, a restarted node, lost keys); reservations recreated from it get `lease`.
    /// Without one (tools, unit tests) such a tenant starts again from zero. Set once.
    pub fn set_truth(&self, truth: Arc<dyn QuotaTruth>, lease: Duration) {
        if self.truth.set(TruthSource { truth, lease }).is_err() {
            tracing::warn!("quota truth source already set; keeping the first");
        }
    }

    pub fn config(&self) -> &RedisQuotaConfig {
        &self.config
    }

    /// Connects (and on a single node loads the scripts) now rather than on the first request.
    pub async fn connect(&self) -> Result<(), QuotaError> {
        self.call("connect", async { self.connection().await.map(|_| ()) })
            .await
    }

    async fn connection(&self) -> Result<RedisConnection, RedisError> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                let mut con = self
                    .client
                    .connect(self.config.connect_timeout, self.config.response_timeout)
                    .await?;
                // On a cluster each node caches a script on its first EVAL instead: a SCRIPT
                // LOAD goes to every master and would fail the start while one is down.
                if !self.client.is_cluster() {
                    for script in self.scripts.all() {
                        script.load(&mut con).await?;
                    }
                }
                Ok::<_, RedisError>(con)
            })
            .await?;
        Ok(connection.clone())
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
        script: &Lua,
        keys: &[String],
        args: &[String],
    ) -> Result<T, QuotaError> {
        self.call(what, async {
            let mut con = self.connection().await?;
            script.run::<T, _>(&mut con, keys, args).await
        })
        .await
    }

    /// A script that answers STALE for a tenant not to be trusted on this Redis process: the
    /// tenant is rebuilt from the database and the script runs again.
    async fn run_fresh<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        tenant: &str,
        script: &Lua,
        keys: &[String],
        args: &[String],
    ) -> Result<T, QuotaError> {
        // Twice is enough unless the slot moves again between the rebuild and the retry.
        for _ in 0..3 {
            let reply = self
                .call(what, async {
                    let mut con = self.connection().await?;
                    match script.run::<T, _>(&mut con, keys, args).await {
                        Ok(value) => Ok(Some(value)),
                        Err(e) if e.code() == Some("SGSTALE") => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            match reply {
                Some(value) => return Ok(value),
                None => self.rebuild_tenant(tenant).await?,
            }
        }
        Err(QuotaError::Unavailable(format!(
            "redis {what}: tenant {tenant:?} kept needing a rebuild (slots moving?)"
        )))
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
            keys.owner(),
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
        let reply: Vec<i64> = self
            .run_fresh("reserve", &r.tenant, &self.scripts.reserve, &keys, &args)
            .await?;
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
        let keys = [k.in_use(), k.reservations(), k.saves(), k.owner()];
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
        // The script cannot write: a stale tenant is rebuilt here and asked again.
        let reply: Vec<i64> = self
            .run_fresh("check", &r.tenant, &self.scripts.check, &keys, &args)
            .await?;
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
        let keys = [
            k.in_use(),
            k.reservations(),
            k.ended(operation),
            k.owner(),
            k.rebuild(),
        ];
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
        let keys = [
            k.reservations(),
            k.saves(),
            k.ended(operation),
            k.owner(),
            k.rebuild(),
        ];
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
        let keys = [k.in_use(), k.freed(operation), k.owner(), k.rebuild()];
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

    /// `QuotaStore::add_in_use`. A tenant not fresh on its Redis process gets nothing added:
    /// it is rebuilt from the database, which records the addition already.
    pub async fn add_in_use_outcome(
        &self,
        tenant: &str,
        operation: Uuid,
        states: i64,
        bytes: i64,
    ) -> Result<(), QuotaError> {
        let k = self.keys(tenant);
        let keys = [k.in_use(), k.ended(operation), k.owner(), k.rebuild()];
        let args = [
            states.max(0).to_string(),
            bytes.max(0).to_string(),
            self.marker_ttl_ms(),
        ];
        let added = self
            .call("add_in_use", async {
                let mut con = self.connection().await?;
                match self
                    .scripts
                    .add_in_use
                    .run::<i64, _>(&mut con, &keys, &args)
                    .await
                {
                    Ok(code) => Ok(Some(code)),
                    Err(e) if e.code() == Some("SGSTALE") => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        match added {
            Some(0 | 1) => Ok(()),
            Some(other) => Err(bad_reply("add_in_use", other)),
            None => self.rebuild_tenant(tenant).await,
        }
    }

    /// Raw counts of one tenant (after dropping lapsed leases and old saves).
    pub async fn tally(&self, tenant: &str) -> Result<Tally, QuotaError> {
        let k = self.keys(tenant);
        let keys = [k.in_use(), k.reservations(), k.saves(), k.owner()];
        let reply: Vec<i64> = self
            .run_fresh("usage", tenant, &self.scripts.usage, &keys, &[])
            .await?;
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

    async fn add_in_use(
        &self,
        tenant: &str,
        operation: Uuid,
        states: i64,
        bytes: i64,
        _lease: Duration,
    ) -> Result<(), QuotaError> {
        self.add_in_use_outcome(tenant, operation, states, bytes)
            .await
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
