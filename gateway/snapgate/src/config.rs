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
    /// Files the gateway owns: the SQLite database, generated tokens, external snapshot files,
    /// the plugin cache. Relative paths are taken from the working directory.
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub redis: Option<RedisConfig>,
    /// Compute hosts. Empty means the embedded demo cloud (libvirt's test driver).
    pub hosts: Vec<HostEntry>,
    pub snapshots: SnapshotConfig,
    pub quota: QuotaConfig,
    pub auth: AuthSection,
    pub policy: PolicyConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8774)),
            data_dir: PathBuf::from("data"),
            database: DatabaseConfig::default(),
            redis: None,
            hosts: Vec::new(),
            snapshots: SnapshotConfig::default(),
            quota: QuotaConfig::default(),
            auth: AuthSection::default(),
            policy: PolicyConfig::default(),
            api: ApiConfig::default(),
            log: LogConfig::default(),
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// `auto` (internal when every disk is qcow2, else external), `internal` or `external`.
    pub mode: SaveMode,
    /// External snapshot files; default `<data_dir>/states`.
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
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_wait_secs: 300,
            default_page_size: 50,
            max_page_size: 500,
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
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
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

    pub fn state_dir(&self) -> PathBuf {
        self.snapshots
            .state_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("states"))
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
                    uri: "test:///default".into()
                };
                2
            ],
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("hosts"));
        let mut c = Config::default();
        c.quota.defaults.states = -2;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("quota.defaults"));
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
