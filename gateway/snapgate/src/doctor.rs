//! `snapgate doctor`: says in one place what is wrong with a gateway's surroundings — its
//! configuration, database, Redis, every host, authentication and plugins — one line per
//! check, each failure with what to do about it. Exit status 1 when any check fails (warnings
//! do not fail), so monitoring can run it; `--json` for machines.
//!
//! It opens what the gateway would open and changes nothing, except that a host's state
//! directory is made usable through its storage pool exactly as the first save would.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;
use snapgate_compute::{HostConfig, LibvirtBackend, LibvirtOptions};
use snapgate_core::ports::QuotaStore;
use snapgate_quota::{RedisQuotaConfig, RedisQuotaStore};
use snapgate_store::SeaRepository;

use crate::config::{redact_url, Config};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked: `config`, `database`, `redis`, `host:<name>`, `auth`, `plugins`.
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// What to do about a warning or a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            status: Status::Ok,
            detail: detail.into(),
            hint: None,
        }
    }
    fn warn(check: impl Into<String>, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            status: Status::Warn,
            hint: Some(hint.into()),
            ..Self::ok(check, detail)
        }
    }
    fn fail(check: impl Into<String>, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            hint: Some(hint.into()),
            ..Self::ok(check, detail)
        }
    }
}

/// Runs every check and prints them; the exit code is 1 when any failed.
pub async fn run(config_path: Option<&Path>, json: bool) -> ExitCode {
    let checks = checks(config_path).await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        );
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            println!("{mark}  {:<14} {}", c.check, c.detail);
            if let Some(hint) = &c.hint {
                println!("      {:<14} → {hint}", "");
            }
        }
    }
    if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

pub async fn checks(config_path: Option<&Path>) -> Vec<Check> {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                "config",
                e.to_string(),
                "fix the key named above (`snapgate config` prints the effective configuration)",
            )]
        }
    };
    let source = config_path.map_or("embedded defaults and environment".to_owned(), |p| {
        p.display().to_string()
    });
    let mut checks = vec![Check::ok("config", format!("{source}: valid"))];
    checks.push(database(&config).await);
    checks.push(redis(&config).await);
    checks.extend(hosts(&config).await);
    checks.push(auth(&config));
    checks.push(plugins(&config));
    checks
}

async fn database(config: &Config) -> Check {
    let url = config.database_url();
    let shown = redact_url(&url);
    let shown = shown.split('?').next().unwrap_or_default();
    let repo = match SeaRepository::connect(&url).await {
        Ok(r) => r,
        Err(e) => {
            return Check::fail(
                "database",
                format!("{shown}: cannot connect: {e}"),
                "check database.url, that the server runs and that this host may connect",
            )
        }
    };
    match repo.pending_migrations().await {
        Ok(pending) if pending.is_empty() => {
            Check::ok("database", format!("{shown}: reachable, schema up to date"))
        }
        Ok(pending) => Check::warn(
            "database",
            format!(
                "{shown}: reachable, {} migration(s) pending: {}",
                pending.len(),
                pending.join(", ")
            ),
            "the gateway applies them at start; or run `snapgate migrate`",
        ),
        Err(e) => Check::fail(
            "database",
            format!("{shown}: cannot read the migrations: {e}"),
            "the database user needs read access to the schema",
        ),
    }
}

async fn redis(config: &Config) -> Check {
    let Some(r) = &config.redis else {
        return Check::ok(
            "redis",
            "not configured: quotas kept in process (one gateway only)",
        );
    };
    let kind = if r.cluster { "Redis Cluster" } else { "Redis" };
    let shown = r
        .url
        .split(',')
        .map(redact_url)
        .collect::<Vec<_>>()
        .join(",");
    let store_config = if r.cluster {
        RedisQuotaConfig::cluster(r.url.clone(), r.key_prefix.clone())
    } else {
        RedisQuotaConfig::new(r.url.clone(), r.key_prefix.clone())
    };
    let store = match RedisQuotaStore::new(store_config) {
        Ok(s) => s,
        Err(e) => return Check::fail("redis", format!("{kind} {shown}: {e}"), "check redis.url"),
    };
    // Connecting, then one read of the store's own marker: a round trip through the script
    // path every decision takes.
    let reached = match store.connect().await {
        Ok(()) => store.is_primed().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match reached {
        Ok(()) => Check::ok("redis", format!("{kind} {shown}: reachable")),
        Err(e) => Check::fail(
            "redis",
            format!("{kind} {shown}: {e}"),
            "saves answer 503 until it is reachable: check that Redis runs and redis.url \
             (with cluster = true, list seed nodes of that cluster)",
        ),
    }
}

async fn hosts(config: &Config) -> Vec<Check> {
    let mut entries = config.hosts.clone();
    if entries.is_empty() {
        match (
            crate::demo::demo_host_uri(&config.data_dir),
            crate::demo::demo_state_dir(&config.data_dir),
        ) {
            (Ok(uri), Ok(dir)) => entries.push(crate::config::HostEntry {
                name: "demo".into(),
                uri,
                state_dir: Some(dir),
            }),
            (Err(e), _) | (_, Err(e)) => {
                return vec![Check::fail(
                    "host:demo",
                    format!("cannot prepare the demo cloud: {e}"),
                    "data_dir must be writable",
                )]
            }
        }
    }
    let backend = Arc::new(LibvirtBackend::new(
        entries
            .iter()
            .map(|h| {
                HostConfig::new(h.name.clone(), h.uri.clone())
                    .with_state_dir(config.host_state_dir(h))
            })
            .collect(),
        LibvirtOptions::default().with_resilience(config.compute.resilience()),
    ));
    // All hosts at once: a cloud of hundreds must not take hundreds of timeouts.
    let mut asked = tokio::task::JoinSet::new();
    for (i, h) in entries.iter().enumerate() {
        let (backend, name) = (backend.clone(), h.name.clone());
        asked.spawn(async move { (i, backend.diagnose(&name).await) });
    }
    let mut results = Vec::new();
    while let Some(done) = asked.join_next().await {
        if let Ok(r) = done {
            results.push(r);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results
        .into_iter()
        .map(|(i, result)| host_check(&entries[i], config.compute.connect_timeout_secs, result))
        .collect()
}

fn host_check(
    host: &crate::config::HostEntry,
    connect_timeout_secs: f64,
    result: Result<snapgate_compute::HostDiagnosis, snapgate_core::ports::ComputeError>,
) -> Check {
    let name = format!("host:{}", host.name);
    let d = match result {
        Ok(d) => d,
        Err(e) => {
            return Check::fail(
                name,
                format!("{}: unreachable: {e}", redact_url(&host.uri)),
                format!(
                    "check that libvirtd runs there, the URI, and that it answers within \
                     compute.connect_timeout_secs ({connect_timeout_secs} s)"
                ),
            )
        }
    };
    let hypervisor = d
        .hypervisor_version
        .as_deref()
        .map_or(String::new(), |v| format!(" {v}"));
    let mut detail = format!(
        "{} ({}{hypervisor}, libvirt {}) on {:?}",
        redact_url(&host.uri),
        d.driver,
        d.libvirt_version,
        d.hostname
    );
    let mut problems = Vec::new();
    match &d.external_memory_snapshots {
        Ok(()) => detail.push_str("; internal and external memory snapshots possible"),
        Err(e) => {
            detail.push_str("; internal memory snapshots only");
            problems.push(e.clone());
        }
    }
    match &d.state_dir {
        Ok(dir) => detail.push_str(&format!("; state directory {dir} usable")),
        Err(e) => problems.push(e.clone()),
    }
    if problems.is_empty() {
        Check::ok(name, detail)
    } else if d.state_dir.is_err() {
        Check::fail(
            name,
            format!("{detail}; {}", problems.join("; ")),
            "give hosts.state_dir an absolute directory libvirt may create and write on that host",
        )
    } else {
        Check::warn(name, detail, problems.join("; "))
    }
}

fn auth(config: &Config) -> Check {
    if !config.auth.is_configured() {
        return if config.hosts.is_empty() {
            Check::warn(
                "auth",
                "demo mode: no [auth], demo tokens in data_dir",
                "configure [auth] (token_file or jwt) before serving real hosts",
            )
        } else {
            Check::fail(
                "auth",
                crate::config::MISSING_AUTH,
                "configure [auth] (token_file or jwt)",
            )
        };
    }
    match snapgate_api::Authenticator::from_config(&config.auth.to_auth_config()) {
        Ok(_) => {
            let mut kinds = Vec::new();
            if config.auth.token_file.is_some() {
                kinds.push("static tokens");
            }
            if config.auth.jwt.is_some() {
                kinds.push("JWT");
            }
            Check::ok("auth", format!("{}: loaded", kinds.join(" and ")))
        }
        Err(e) => Check::fail(
            "auth",
            format!("{e:#}"),
            "fix [auth]: the token file must be readable and the JWT settings complete",
        ),
    }
}

fn plugins(config: &Config) -> Check {
    if config.policy.plugins.is_empty() {
        return Check::ok("plugins", "none configured: every request is allowed");
    }
    let limits = crate::serve::policy_limits(config);
    match snapgate_policy::WasmPolicyEngine::load(config.policy.plugins.clone(), limits) {
        Ok(engine) => {
            let names: Vec<String> = engine
                .chain_info()
                .plugins
                .iter()
                .map(|p| format!("{} ({:?})", p.name, p.mode).to_lowercase())
                .collect();
            Check::ok(
                "plugins",
                format!("{} loaded: {}", names.len(), names.join(", ")),
            )
        }
        Err(e) => Check::fail(
            "plugins",
            format!("{e:#}"),
            "fix policy.plugins: the file must exist and export the snapgate:policy contract \
             (`snapgate plugin check FILE` says more)",
        ),
    }
}
