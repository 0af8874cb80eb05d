//! One connection type for both profiles: a single Redis node (`ConnectionManager`, reconnecting
//! by itself) or a Redis Cluster (`cluster_async::ClusterConnection`, following MOVED/ASK and
//! refreshing its slot map when a node fails). Both are cheap handles to a shared multiplexed
//! connection, cloned per call.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

#[derive(Clone)]
pub(crate) enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Where the store connects: one node, or the seed nodes of a cluster.
#[derive(Clone)]
pub(crate) enum RedisClient {
    Single(redis::Client),
    Cluster(Vec<String>),
}

impl RedisClient {
    /// `url` is one `redis://` URL, or for a cluster a comma-separated list of seed nodes (any
    /// one that answers is enough; the others are discovered).
    pub fn open(url: &str, cluster: bool) -> RedisResult<Self> {
        if cluster {
            let seeds: Vec<String> = url
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            // Parsed now so a bad URL fails at start, not on the first request.
            ClusterClientBuilder::new(seeds.clone()).build()?;
            Ok(RedisClient::Cluster(seeds))
        } else {
            Ok(RedisClient::Single(redis::Client::open(url)?))
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisClient::Cluster(_))
    }

    pub async fn connect(
        &self,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> RedisResult<RedisConnection> {
        match self {
            RedisClient::Single(client) => {
                // No retries inside the manager: a failed reconnect fails the waiting calls at
                // once, and the next call starts a new attempt. Its built-in backoff starts at
                // 1 s and would hold every call of that time behind it.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(connect_timeout)
                    .set_response_timeout(response_timeout)
                    .set_number_of_retries(0);
                let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
                Ok(RedisConnection::Single(manager))
            }
            RedisClient::Cluster(seeds) => {
                // Short waits between retries (the crate's default waits at least 1.28 s): a
                // call that meets a dead master retries on the refreshed slot map within the
                // store's call timeout; while no master serves the slot it fails closed.
                let client = ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(connect_timeout)
                    .response_timeout(response_timeout)
                    .retries(6)
                    .min_retry_wait(10)
                    .max_retry_wait(200)
                    .build()?;
                Ok(RedisConnection::Cluster(
                    client.get_async_connection().await?,
                ))
            }
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}
