//! Helpers shared by the quota tests. Redis tests use the real server at 127.0.0.1:6379 with a
//! random key prefix per test, deleted when the fixture drops (even when the test fails).
#![allow(dead_code)]

pub mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use snapgate_core::ports::{QuotaLimits, QuotaReservation};
use snapgate_quota::{RedisQuotaConfig, RedisQuotaStore};
use uuid::Uuid;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const LONG_LEASE: Duration = Duration::from_secs(3600);

pub fn random_prefix() -> String {
    format!("sgtest-{:016x}", rand::rng().random::<u64>())
}

/// A Redis store over a fresh key prefix; deletes every key of the prefix on drop.
pub struct RedisFixture {
    pub prefix: String,
    pub store: Arc<RedisQuotaStore>,
}

impl RedisFixture {
    pub async fn new() -> Self {
        let prefix = random_prefix();
        let store = Arc::new(redis_store(&prefix));
        store
            .connect()
            .await
            .expect("Redis must run at 127.0.0.1:6379 for these tests");
        Self { prefix, store }
    }

    /// Another store on the same prefix with its own connection: a second gateway.
    pub async fn second_gateway(&self) -> Arc<RedisQuotaStore> {
        let store = Arc::new(redis_store(&self.prefix));
        store.connect().await.expect("second connection");
        store
    }

    /// Deletes this prefix's keys only (other tests share the server): a "flushed Redis".
    pub fn flush(&self) {
        delete_prefix(&self.prefix);
    }

    pub fn keys(&self) -> Vec<String> {
        let mut con = sync_connection();
        redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut con)
            .expect("KEYS")
    }
}

impl Drop for RedisFixture {
    fn drop(&mut self) {
        delete_prefix(&self.prefix);
    }
}

/// A store with patient timeouts: these tests check semantics, not latency, and share two
/// cores with everything else CI runs (the timeout tests build their own configuration).
///
/// Rebuilds here drop every reservation the database does not show, however young (grace
/// zero), so the tests see what dropping does; `redis_store_with_default_grace` keeps the
/// production default.
pub fn redis_store(prefix: &str) -> RedisQuotaStore {
    let mut config = RedisQuotaConfig::new(REDIS_URL, prefix);
    config.reservation_grace = Duration::ZERO;
    config.connect_timeout = Duration::from_secs(5);
    config.response_timeout = Duration::from_secs(5);
    config.call_timeout = Duration::from_secs(10);
    RedisQuotaStore::new(config).expect("valid config")
}

pub fn redis_store_with_default_grace(prefix: &str) -> RedisQuotaStore {
    let mut config = RedisQuotaConfig::new(REDIS_URL, prefix);
    config.connect_timeout = Duration::from_secs(5);
    config.response_timeout = Duration::from_secs(5);
    config.call_timeout = Duration::from_secs(10);
    RedisQuotaStore::new(config).expect("valid config")
}

fn sync_connection() -> redis::Connection {
    let client = redis::Client::open(REDIS_URL).expect("url");
    client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("Redis must run at 127.0.0.1:6379")
}

fn delete_prefix(prefix: &str) {
    let mut con = sync_connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut con)
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut con);
    }
}

pub fn limits(
    states: i64,
    state_bytes: i64,
    concurrent_operations: i64,
    saves_per_hour: i64,
) -> QuotaLimits {
    QuotaLimits {
        states,
        state_bytes,
        concurrent_operations,
        saves_per_hour,
    }
}

/// A save: one state of `bytes`, one operation slot, one save.
pub fn save(tenant: &str, bytes: i64) -> QuotaReservation {
    QuotaReservation {
        tenant: tenant.into(),
        operation: Uuid::new_v4(),
        states: 1,
        bytes,
        operations: 1,
        saves: 1,
    }
}

/// A restore or delete: only an operation slot.
pub fn slot_only(tenant: &str) -> QuotaReservation {
    QuotaReservation {
        tenant: tenant.into(),
        operation: Uuid::new_v4(),
        states: 0,
        bytes: 0,
        operations: 1,
        saves: 0,
    }
}

pub fn tenant() -> String {
    format!("tenant-{}", Uuid::new_v4().simple())
}
