//! The gateway's one typed configuration: embedded defaults, then a TOML file, then
//! `SNAPGATE_…` environment variables (`__` separates levels: `SNAPGATE_DATABASE__URL`).
//! Validated at start; every problem is reported with the key it concerns.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use snapgate_api::AuthConfig;
use snapgate_core::ports::QuotaLimits;
use snapgate_core::SaveMode;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the gateway listens. Loopback by default.
    pub listen: SocketAddr,
    /// Files the gateway owns: the SQLite database, generated tokens, the plugin cache.
    /// Relative paths are taken from the working directory. (State files are the hosts':
    /// see `hosts.state_dir`.)
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub redis: Option<RedisConfig>,
    /// Compute hosts. Empty means the embedded demo cloud (libvirt's test driver).
    pub hosts: Vec<HostEntry>,
    /// How hosts are reached, judged down and found: timeouts, keepalive, breaker, placement.
    pub compute: ComputeConfig,
    pub snapshots: SnapshotConfig,
    pub quota: QuotaConfig,
    pub auth: AuthSection,
    pub policy: PolicyConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
    /// Expiry and schedules.
    pub lifecycle: crate::lifecycle_config::LifecycleConfig,
    /// The event log (`GET /v1/events`).
    pub events: EventsConfig,
    /// Webhooks: which targets are called, timeouts, retries.
    pub webhooks: crate::webhooks_config::WebhooksConfig,
}

/// The event log: how long events are kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events older than this are purged by the maintenance loop (clients resuming from an
    /// older `Last-Event-ID` get what is left). Fractions allowed; default one week.
    pub retention_hours: f64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            retention_hours: 168.0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8774)),
            data_dir: PathBuf::from("data"),
            database: DatabaseConfig::default(),
            redis: None,
            hosts: Vec::new(),
            compute: ComputeConfig::default(),
            snapshots: SnapshotConfig::default(),
            quota: QuotaConfig::default(),
            auth: AuthSection::default(),
            policy: PolicyConfig::default(),
            api: ApiConfig::default(),
            log: LogConfig::default(),
            lifecycle: Default::default(),
            events: EventsConfig::default(),
            webhooks: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` or `postgres://user@host/db`. Default: SQLite in `data_dir`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`; with `cluster`, comma-separated seed nodes of the cluster.
    pub url: String,
    /// A Redis Cluster: keys are routed by slot, a failed master's replica takes over.
    #[serde(default)]
    pub cluster: bool,
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
}

fn default_prefix() -> String {
    "snapgate".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub name: String,
    /// libvirt URI, e.g. `qemu:///system` or `qemu+ssh://node1/system`.
    pub uri: String,
    /// Where the host keeps the files of external states: an absolute path *on that host*,
    /// reached only through libvirt. Default: `snapshots.state_dir`, else
    /// `/var/lib/libvirt/snapgate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeConfig {
    /// Opening a connection to a host may take this long before the host is judged down.
    pub connect_timeout_secs: f64,
    /// A read call (describe, inventory, CPU) may take this long before the host is judged
    /// down. Snapshot calls are bounded by keepalive instead.
    pub call_timeout_secs: f64,
    /// libvirt keepalive probe interval on idle connections (0 turns keepalive off) and how
    /// many may go unanswered before libvirt closes the connection.
    pub keepalive_interval_secs: u64,
    pub keepalive_count: u32,
    /// Background reconnection of a host that is down: first wait, doubled up to the max.
    pub reconnect_min_secs: f64,
    pub reconnect_max_secs: f64,
    /// Hosts asked at once when an instance is not where the placement index says.
    pub search_fan_out: usize,
    /// How often every host's inventory is read into the placement index (libvirt lifecycle
    /// events keep it fresh in between).
    pub placement_refresh_secs: f64,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 5.0,
            call_timeout_secs: 10.0,
            keepalive_interval_secs: 5,
            keepalive_count: 3,
            reconnect_min_secs: 1.0,
            reconnect_max_secs: 60.0,
            search_fan_out: 32,
            placement_refresh_secs: 300.0,
        }
    }
}

impl ComputeConfig {
    pub fn resilience(&self) -> snapgate_compute::HostResilience {
        use std::time::Duration;
        snapgate_compute::HostResilience {
            connect_timeout: Duration::from_secs_f64(self.connect_timeout_secs),
            call_timeout: Duration::from_secs_f64(self.call_timeout_secs),
            keepalive_interval: Duration::from_secs(self.keepalive_interval_secs),
            keepalive_count: self.keepalive_count,
            reconnect_min: Duration::from_secs_f64(self.reconnect_min_secs),
            reconnect_max: Duration::from_secs_f64(self.reconnect_max_secs),
            search_fan_out: self.search_fan_out,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// `auto` (external, the live save that pauses the guest least, unless the instance keeps
    /// internal states), `internal` or `external`.
    pub mode: SaveMode,
    /// State directory of hosts that set none of their own (absolute, a path on the hosts);
    /// default `/var/lib/libvirt/snapgate`.
    pub state_dir: Option<PathBuf>,
    /// How long finished operations stay readable.
    pub operation_retention_secs: u64,
    /// An unfinished operation without a heartbeat for this long is reconciled.
    pub stale_after_secs: f64,
    /// How often the reconciler runs.
    pub maintenance_interval_secs: f64,
    /// How long shutdown waits for running operations.
    pub shutdown_grace_secs: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            mode: SaveMode::Auto,
            state_dir: None,
            operation_retention_secs: 7 * 24 * 3600,
            stale_after_secs: 60.0,
            maintenance_interval_secs: 30.0,
            shutdown_grace_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Limits of tenants with none of their own; `-1` is unlimited.
    pub defaults: QuotaLimits,
    /// Lifetime of a reservation (renewed while its operation runs).
    pub lease_secs: u64,
    /// When Redis is unreachable, let saves through instead of answering 503.
    pub fail_open: bool,
    /// How often usage is recomputed from the database while no operation runs.
    pub rebuild_interval_secs: u64,
    /// How long a rebuild keeps a reservation whose operation the database does not show yet
    /// (its save may still be writing it). Longer than any accepting write; a reservation whose
    /// operation never appears counts against the tenant this long after it was made.
    pub reservation_grace_secs: u64,
    /// Dry runs (`?dry_run=true`) one tenant may make per minute on one gateway; more answer
    /// 429 `dry_run_rate_limited`. 0 turns dry runs off.
    pub dry_runs_per_minute: u32,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            defaults: QuotaLimits {
                states: 50,
                state_bytes: 200 << 30,
                concurrent_operations: 5,
                saves_per_hour: 60,
            },
            lease_secs: 15 * 60,
            fail_open: false,
            rebuild_interval_secs: 300,
            reservation_grace_secs: 60,
            dry_runs_per_minute: 60,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    pub token_file: Option<PathBuf>,
    pub jwt: Option<snapgate_api::JwtConfig>,
}

impl AuthSection {
    pub fn to_auth_config(&self) -> AuthConfig {
        AuthConfig {
            token_file: self.token_file.clone(),
            jwt: self.jwt.clone(),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.token_file.is_some() || self.jwt.is_some()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Wall-clock budget of one plugin evaluation, in milliseconds.
    pub deadline_ms: u64,
    /// Memory cap of one plugin instance, in MiB.
    pub memory_mib: usize,
    /// Compiled-plugin cache; default `<data_dir>/plugin-cache`.
    pub cache_dir: Option<PathBuf>,
    /// Fresh instances kept ready per plugin, made off the request path (0 turns it off;
    /// at most 32). Each is used once, so nothing leaks between requests.
    pub prewarm_instances: usize,
    /// Recorded decisions older than this are purged by the maintenance loop.
    pub decision_retention_secs: u64,
    /// The chain, in order.
    pub plugins: Vec<snapgate_policy::PluginSpec>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 5,
            memory_mib: 16,
            cache_dir: None,
            prewarm_instances: 8,
            decision_retention_secs: 30 * 24 * 3600,
            plugins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub max_body_bytes: usize,
    pub max_wait_secs: u64,
    pub default_page_size: u64,
    pub max_page_size: u64,
    /// The operator's listener: `/metrics`, `/readyz` with each check's detail, `/healthz`.
    /// No token: keep it on loopback or a management network. Unset: no metrics are served
    /// and readiness answers with its status only.
    pub admin_listen: Option<SocketAddr>,
    /// Requests served at once on the public listener (`/healthz` aside); more answer 503
    /// `overloaded` with `Retry-After`.
    pub max_requests_in_flight: usize,
    /// A request not answered within this answers 504 `request_timeout` (its work still
    /// finishes). `/wait` gets `max_wait_secs` on top.
    pub request_timeout_secs: f64,
    /// Waits (`/v1/operations/{id}/wait`) one tenant may hold open at once on one gateway;
    /// more answer 429 `too_many_waits`.
    pub max_waits_per_tenant: usize,
    /// How long the answer to a save, apply or delete sent with an `Idempotency-Key` is kept
    /// for its retries (1 s to 30 days). Then the maintenance loop purges it and the key may be
    /// used anew.
    pub idempotency_key_ttl_secs: u64,
    /// Event streams (`GET /v1/events`) one tenant may hold open at once on one gateway; more
    /// answer 429 `too_many_event_streams`.
    pub max_event_streams_per_tenant: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_wait_secs: 300,
            default_page_size: 50,
            max_page_size: 500,
            admin_listen: None,
            max_requests_in_flight: 1024,
            request_timeout_secs: 30.0,
            max_waits_per_tenant: 64,
            idempotency_key_ttl_secs: 24 * 3600,
            max_event_streams_per_tenant: 16,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter, e.g. `info,snapgate=debug`. `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Why a configuration with hosts but no `[auth]` is refused.
pub const MISSING_AUTH: &str = "[auth] is missing: with [[hosts]] configured, authentication \
     must be configured too ([auth] token_file and/or [auth.jwt]); demo tokens are made only \
     in demo mode (no [[hosts]] and no [auth])";

/// Idempotency keys are kept at most this long: a retry comes within minutes or hours, and
/// every key kept is a row.
pub const MAX_IDEMPOTENCY_KEY_TTL_SECS: u64 = 30 * 24 * 3600;

/// What `snapgate config` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// `url` with the password of its user part (`scheme://user:password@host`) and any
/// `password`/`sslpassword` query parameter replaced by [`REDACTED`].
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &base[s + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:{REDACTED}{}",
                    &base[..s + 3],
                    &userinfo[..colon],
                    &base[at..]
                ),
                None => base.to_owned(),
            }
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("password")
                        || k.eq_ignore_ascii_case("sslpassword") =>
                {
                    format!("{k}={REDACTED}")
                }
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{out}?{}", params.join("&"));
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// Defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Invalid {
                    key: "--config",
                    message: format!("{} does not exist", f.display()),
                });
            }
            figment = figment.merge(Toml::file(f));
        }
        figment = figment.merge(Env::prefixed("SNAPGATE_").split("__").ignore(&[
            "url",
            "token",
            "config",
            "test_pg_url",
            "test_redis_url",
        ]));
        let mut config: Config = figment.extract().map_err(Box::new)?;
        if let Some(dir) = file.and_then(Path::parent) {
            config.resolve_plugin_files(dir);
        }
        config.validate()?;
        Ok(config)
    }

    /// Relative plugin files are taken from the config file's directory (`dir`), so a config
    /// means the same files whatever directory the gateway starts in.
    fn resolve_plugin_files(&mut self, dir: &Path) {
        for plugin in &mut self.policy.plugins {
            if plugin.file.is_relative() {
                plugin.file = dir.join(&plugin.file);
            }
        }
    }

    /// The configuration with every secret replaced by [`REDACTED`], for `snapgate config`:
    /// the HS256 secret and the passwords in the database, Redis and host URLs.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if let Some(jwt) = c.auth.jwt.as_mut() {
            if jwt.hs256_secret.is_some() {
                jwt.hs256_secret = Some(REDACTED.into());
            }
        }
        if let Some(url) = c.database.url.as_mut() {
            *url = redact_url(url);
        }
        if let Some(r) = c.redis.as_mut() {
            // A cluster's url lists its seed nodes, each with its own user part.
            r.url = r
                .url
                .split(',')
                .map(redact_url)
                .collect::<Vec<_>>()
                .join(",");
        }
        for h in &mut c.hosts {
            h.uri = redact_url(&h.uri);
        }
        c
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if let Some(jwt) = &self.auth.jwt {
            match snapgate_api::auth::check_jwt_config(jwt) {
                Err(snapgate_api::auth::AuthSetupError::InvalidJwt { key, message }) => {
                    return invalid(key, message)
                }
                Err(e) => return invalid("auth.jwt", e.to_string()),
                Ok(()) => {}
            }
        }
        if let Some(url) = &self.database.url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return invalid(
                    "database.url",
                    format!("{url:?} must start with sqlite: or postgres://"),
                );
            }
        }
        if let Some(r) = &self.redis {
            let mut urls = r.url.split(',').map(str::trim);
            let valid = |u: &str| u.starts_with("redis://") || u.starts_with("rediss://");
            if !(if r.cluster {
                urls.all(valid)
            } else {
                valid(&r.url)
            }) {
                return invalid(
                    "redis.url",
                    format!(
                        "{:?} must start with redis:// (a cluster: redis:// URLs separated by commas)",
                        r.url
                    ),
                );
            }
            if r.key_prefix.is_empty() || r.key_prefix.contains(['{', '}']) {
                return invalid(
                    "redis.key_prefix",
                    "must be non-empty and contain no braces".into(),
                );
            }
        }
        let mut names = std::collections::HashSet::new();
        for h in &self.hosts {
            if h.name.is_empty() || !names.insert(h.name.as_str()) {
                return invalid(
                    "hosts",
                    format!("host names must be unique and non-empty ({:?})", h.name),
                );
            }
            if !h.uri.contains(":/") {
                return invalid("hosts", format!("{:?} is not a libvirt URI", h.uri));
            }
            if let Some(dir) = &h.state_dir {
                if !dir.is_absolute() {
                    return invalid(
                        "hosts.state_dir",
                        format!(
                            "{} of host {:?} must be an absolute path on that host",
                            dir.display(),
                            h.name
                        ),
                    );
                }
            }
        }
        if let Some(dir) = &self.snapshots.state_dir {
            if !dir.is_absolute() {
                return invalid(
                    "snapshots.state_dir",
                    format!("{} must be an absolute path on the hosts", dir.display()),
                );
            }
        }
        if !self.hosts.is_empty() && !self.auth.is_configured() {
            return invalid("auth", MISSING_AUTH.into());
        }
        let c = &self.compute;
        for (key, secs) in [
            ("compute.connect_timeout_secs", c.connect_timeout_secs),
            ("compute.call_timeout_secs", c.call_timeout_secs),
            ("compute.reconnect_min_secs", c.reconnect_min_secs),
            ("compute.placement_refresh_secs", c.placement_refresh_secs),
        ] {
            // Also refuses NaN and infinity, which Duration cannot hold.
            if !(secs > 0.0 && secs <= 86_400.0) {
                return invalid(key, "must be more than 0 and at most 86400".into());
            }
        }
        if !(c.reconnect_max_secs >= c.reconnect_min_secs && c.reconnect_max_secs <= 86_400.0) {
            return invalid(
                "compute.reconnect_max_secs",
                "must be at least compute.reconnect_min_secs and at most 86400".into(),
            );
        }
        if c.keepalive_interval_secs > 0 && c.keepalive_count == 0 {
            return invalid(
                "compute.keepalive_count",
                "must be at least 1 while keepalive is on".into(),
            );
        }
        if c.keepalive_interval_secs > i32::MAX as u64 {
            return invalid("compute.keepalive_interval_secs", "is too large".into());
        }
        if c.search_fan_out == 0 {
            return invalid("compute.search_fan_out", "must be at least 1".into());
        }
        for r in snapgate_core::ports::QuotaResource::ALL {
            if self.quota.defaults.get(r) < -1 {
                return invalid(
                    "quota.defaults",
                    format!("{} must be -1 (unlimited) or at least 0", r.as_str()),
                );
            }
        }
        if self.quota.lease_secs == 0 {
            return invalid("quota.lease_secs", "must be at least 1".into());
        }
        if self.quota.reservation_grace_secs == 0 {
            return invalid(
                "quota.reservation_grace_secs",
                "must be at least 1 (a rebuild would free the units of saves being accepted)"
                    .into(),
            );
        }
        if !(self.snapshots.stale_after_secs > 0.0
            && self.snapshots.maintenance_interval_secs > 0.0)
        {
            return invalid(
                "snapshots",
                "stale_after_secs and maintenance_interval_secs must be positive".into(),
            );
        }
        if self.api.default_page_size == 0 || self.api.default_page_size > self.api.max_page_size {
            return invalid(
                "api.default_page_size",
                "must be between 1 and api.max_page_size".into(),
            );
        }
        if self.api.max_requests_in_flight == 0 {
            return invalid("api.max_requests_in_flight", "must be at least 1".into());
        }
        if !(self.api.request_timeout_secs > 0.0 && self.api.request_timeout_secs.is_finite()) {
            return invalid("api.request_timeout_secs", "must be positive".into());
        }
        if self.api.max_waits_per_tenant == 0 {
            return invalid("api.max_waits_per_tenant", "must be at least 1".into());
        }
        if self.api.max_event_streams_per_tenant == 0 {
            return invalid(
                "api.max_event_streams_per_tenant",
                "must be at least 1".into(),
            );
        }
        // At most ten years: kept as a `Duration` of seconds.
        if !(self.events.retention_hours > 0.0 && self.events.retention_hours <= 87_600.0) {
            return invalid(
                "events.retention_hours",
                "must be positive and at most 87600 (ten years)".into(),
            );
        }
        if !(1..=MAX_IDEMPOTENCY_KEY_TTL_SECS).contains(&self.api.idempotency_key_ttl_secs) {
            return invalid(
                "api.idempotency_key_ttl_secs",
                format!("must be between 1 and {MAX_IDEMPOTENCY_KEY_TTL_SECS} (30 days)"),
            );
        }
        if self.api.admin_listen == Some(self.listen) {
            return invalid(
                "api.admin_listen",
                "must differ from listen (it serves what the public side must not)".into(),
            );
        }
        if self.policy.decision_retention_secs == 0 {
            return invalid(
                "policy.decision_retention_secs",
                "must be at least 1".into(),
            );
        }
        if let Err((key, message)) = self.lifecycle.check() {
            return invalid(key, message);
        }
        if let Err((key, message)) = self.webhooks.check() {
            return invalid(key, message);
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format", "must be text or json".into());
        }
        if self.policy.deadline_ms == 0 || self.policy.memory_mib == 0 {
            return invalid(
                "policy",
                "deadline_ms and memory_mib must be at least 1".into(),
            );
        }
        if self.policy.prewarm_instances > snapgate_policy::PolicyLimits::MAX_PREWARM_INSTANCES {
            return invalid(
                "policy.prewarm_instances",
                "must be between 0 and 32".into(),
            );
        }
        let mut plugin_names = std::collections::HashSet::new();
        for p in &self.policy.plugins {
            if !plugin_names.insert(p.name.as_str()) {
                return invalid(
                    "policy.plugins",
                    format!("plugin name {:?} is used twice", p.name),
                );
            }
            if let Err(message) = p.validate() {
                return invalid("policy.plugins", message);
            }
            if serde_json::from_str::<serde_json::Value>(&p.config).is_err() {
                return invalid(
                    "policy.plugins",
                    format!("config of plugin {:?} is not JSON", p.name),
                );
            }
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("snapgate.db").display()
            )
        })
    }

    /// The state directory of a host: its own, else `snapshots.state_dir`, else the default.
    pub fn host_state_dir(&self, host: &HostEntry) -> PathBuf {
        host.state_dir
            .clone()
            .or_else(|| self.snapshots.state_dir.clone())
            .unwrap_or_else(|| PathBuf::from(snapgate_compute::DEFAULT_STATE_DIR))
    }

    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.policy
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugin-cache"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = Config::default();
        c.database.url = Some("mysql://x".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("database.url"));
        let c = Config {
            hosts: vec![
                HostEntry {
                    name: "a".into(),
                    uri: "test:///default".into(),
                    state_dir: None,
                };
                2
            ],
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("hosts"));
        let mut c = Config::default();
        c.compute.call_timeout_secs = 0.0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("compute.call_timeout_secs"));
        let mut c = Config::default();
        c.compute.reconnect_max_secs = 0.5;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("compute.reconnect_max_secs"));
        let mut c = Config::default();
        c.quota.defaults.states = -2;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("quota.defaults"));
        let mut c = Config::default();
        c.api.admin_listen = Some(c.listen);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("api.admin_listen"));
        for ttl in [0, MAX_IDEMPOTENCY_KEY_TTL_SECS + 1] {
            let mut c = Config::default();
            c.api.idempotency_key_ttl_secs = ttl;
            assert!(c
                .validate()
                .unwrap_err()
                .to_string()
                .contains("api.idempotency_key_ttl_secs"));
        }
        let mut c = Config::default();
        c.api.max_requests_in_flight = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("api.max_requests_in_flight"));
    }

    fn with_hosts() -> Config {
        Config {
            hosts: vec![HostEntry {
                name: "compute-1".into(),
                uri: "qemu+ssh://compute-1/system".into(),
                state_dir: None,
            }],
            ..Config::default()
        }
    }

    #[test]
    fn a_zero_reservation_grace_is_refused_and_absent_is_a_minute() {
        assert_eq!(Config::default().quota.reservation_grace_secs, 60);
        let mut c = Config::default();
        c.quota.reservation_grace_secs = 0;
        let error = c.validate().unwrap_err().to_string();
        assert!(error.contains("quota.reservation_grace_secs"), "{error}");
    }

    #[test]
    fn hosts_without_auth_are_refused_naming_the_section() {
        let error = with_hosts().validate().unwrap_err().to_string();
        assert!(error.contains("[auth] is missing"), "{error}");
        let mut c = with_hosts();
        c.auth.token_file = Some("/etc/snapgate/tokens.toml".into());
        c.validate().unwrap();
        // Auth without hosts: the demo cloud behind the configured authentication.
        let mut c = Config::default();
        c.auth.token_file = Some("/etc/snapgate/tokens.toml".into());
        c.validate().unwrap();
    }

    fn jwt(secret: &str) -> snapgate_api::JwtConfig {
        toml::from_str(&format!("hs256_secret = {secret:?}")).unwrap()
    }

    #[test]
    fn a_short_or_empty_hs256_secret_is_refused() {
        for secret in ["", "s3cret", &"x".repeat(31)] {
            let mut c = Config::default();
            c.auth.jwt = Some(jwt(secret));
            let error = c.validate().unwrap_err().to_string();
            assert!(
                error.contains("auth.jwt.hs256_secret"),
                "{secret:?}: {error}"
            );
        }
        let mut c = Config::default();
        c.auth.jwt = Some(jwt(&"x".repeat(32)));
        c.validate().unwrap();
    }

    #[test]
    fn redacted_hides_every_secret() {
        let secret = "an-hs256-secret-that-is-long-enough";
        let mut c = with_hosts();
        c.auth.jwt = Some(jwt(secret));
        c.database.url = Some(
            "postgres://snapgate:pg-pass@db.example/snapgate?sslmode=require&password=pg-pass2"
                .into(),
        );
        c.redis = Some(RedisConfig {
            url: "rediss://:redis-pass@cache.example:6380/0".into(),
            cluster: false,
            key_prefix: "snapgate".into(),
        });
        let printed = toml::to_string_pretty(&c.redacted()).unwrap();
        for leaked in [secret, "pg-pass", "redis-pass"] {
            assert!(!printed.contains(leaked), "{leaked} in\n{printed}");
        }
        // A cluster's seed nodes, each redacted and all still listed.
        let mut cluster = c.clone();
        cluster.redis = Some(RedisConfig {
            url: "redis://:seed-pass-1@10.0.0.1:7000,redis://u:seed-pass-2@10.0.0.2:7000".into(),
            cluster: true,
            key_prefix: "snapgate".into(),
        });
        let seeds = cluster.redacted().redis.unwrap().url;
        assert_eq!(
            seeds,
            "redis://:<redacted>@10.0.0.1:7000,redis://u:<redacted>@10.0.0.2:7000"
        );
        assert!(printed.contains("postgres://snapgate:<redacted>@db.example/snapgate?sslmode=require&password=<redacted>"), "{printed}");
        assert!(
            printed.contains("rediss://:<redacted>@cache.example:6380/0"),
            "{printed}"
        );
        assert!(
            printed.contains("hs256_secret = \"<redacted>\""),
            "{printed}"
        );
        // What holds no secret is printed as it is.
        assert_eq!(
            redact_url("postgres://snapgate@db/x"),
            "postgres://snapgate@db/x"
        );
        assert_eq!(
            redact_url("sqlite://data/snapgate.db?mode=rwc"),
            "sqlite://data/snapgate.db?mode=rwc"
        );
    }

    #[test]
    fn state_dirs_are_absolute_and_per_host() {
        let host = |name: &str, state_dir: Option<&str>| HostEntry {
            name: name.into(),
            uri: "test:///default".into(),
            state_dir: state_dir.map(PathBuf::from),
        };
        let c = Config {
            hosts: vec![host("a", Some("data/states"))],
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("hosts.state_dir") && err.contains("\"a\"") && err.contains("absolute"),
            "{err}"
        );
        let mut c = Config::default();
        c.snapshots.state_dir = Some("states".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("snapshots.state_dir"), "{err}");

        let mut c = Config {
            hosts: vec![host("a", Some("/srv/a")), host("b", None)],
            ..Config::default()
        };
        // Hosts need authentication (demo tokens exist only in demo mode).
        c.auth.token_file = Some("/etc/snapgate/tokens.toml".into());
        c.validate().unwrap();
        assert_eq!(c.host_state_dir(&c.hosts[0]), PathBuf::from("/srv/a"));
        assert_eq!(
            c.host_state_dir(&c.hosts[1]),
            PathBuf::from("/var/lib/libvirt/snapgate")
        );
        c.snapshots.state_dir = Some("/srv/shared".into());
        assert_eq!(c.host_state_dir(&c.hosts[1]), PathBuf::from("/srv/shared"));
    }

    #[test]
    fn a_relative_host_state_dir_in_a_file_names_its_key() {
        let dir = tempfile_dir();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "[[hosts]]\nname = \"h\"\nuri = \"qemu:///system\"\nstate_dir = \"states\"\n",
        )
        .unwrap();
        let err = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(err.contains("hosts.state_dir"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("snapgate-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn file_and_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("snapgate-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9999\"\n[quota.defaults]\nstates = 3\nstate_bytes = -1\nconcurrent_operations = 2\nsaves_per_hour = 10\n").unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.quota.defaults.states, 3);
        std::fs::write(&f, "lisen = \"127.0.0.1:9999\"\n").unwrap();
        let err = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[cfg(test)]
mod example_file {
    /// The documented example parses (plugin files need not exist to parse).
    #[test]
    fn example_config_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/snapgate.example.toml");
        super::Config::load(Some(&path)).unwrap();
    }
}
