//! `snapgate serve`: wires the configured backends into the service and serves the API.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use snapgate_api::{ApiLimits, AppState, Authenticator};
use snapgate_compute::{HostConfig, LibvirtBackend, LibvirtOptions};
use snapgate_core::ports::policy::AllowAll;
use snapgate_core::ports::{
    EventFeedSource, EventLog, LifecycleStore, NoPolicyAdmin, PlacementStore, PolicyAdmin,
    PolicyEngine, QuotaStore, Repository, ScheduleStore, WebhookStore,
};
use snapgate_core::service::{Backends, RepositoryQuotaTruth, Service, ServiceSettings};
use snapgate_policy::{PolicyLimits, WasmPolicyEngine};
use snapgate_quota::{MemoryQuotaStore, RedisQuotaConfig, RedisQuotaStore};
use snapgate_store::SeaRepository;
use tokio::net::TcpListener;

use crate::config::{redact_url, Config};
use crate::demo;

/// Opens the database and runs pending migrations.
pub async fn open_database(config: &Config) -> anyhow::Result<SeaRepository> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        demo::create_private_dir(&config.data_dir)
            .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    }
    let repo = SeaRepository::connect(&url)
        .await
        .with_context(|| format!("cannot open the database at {}", redact_url(&url)))?;
    repo.migrate().await.context("database migration failed")?;
    Ok(repo)
}

/// A gateway with everything opened, ready to serve.
pub struct Gateway {
    pub config: Config,
    pub service: Arc<Service>,
    pub state: AppState,
    /// Also reloaded on SIGHUP (the operator's signal, not an API call).
    policy_admin: Arc<dyn PolicyAdmin>,
    has_policy: bool,
}

/// `config_path` is re-read on a policy reload, so an operator can change the chain in place.
pub async fn build(
    mut config: Config,
    config_path: Option<std::path::PathBuf>,
) -> anyhow::Result<Gateway> {
    let metrics = crate::telemetry::metrics_handle();
    let store = Arc::new(open_database(&config).await?);
    let repo: Arc<dyn Repository> = store.clone();
    let lifecycle: Arc<dyn LifecycleStore> = store.clone();
    let schedules: Arc<dyn ScheduleStore> = store.clone();
    let events: Arc<dyn EventLog> = store.clone();
    let event_feeds: Arc<dyn EventFeedSource> = store.clone();
    let webhooks: Arc<dyn WebhookStore> = store.clone();
    let placements: Arc<dyn PlacementStore> = store;

    // Demo mode is no hosts and no `[auth]`; the configuration's validation refused hosts
    // without `[auth]`, and demo tokens are never made outside demo mode.
    let demo_mode = config.hosts.is_empty() && !config.auth.is_configured();
    if config.hosts.is_empty() {
        let uri = demo::demo_host_uri(&config.data_dir)
            .context("cannot write the demo cloud's node file")?;
        tracing::info!(%uri, demo_tokens = demo_mode, "no hosts configured: serving the embedded demo cloud (libvirt test driver)");
        config.hosts.push(crate::config::HostEntry {
            name: "demo".into(),
            uri,
            state_dir: Some(
                demo::demo_state_dir(&config.data_dir)
                    .context("cannot resolve the demo cloud's state directory")?,
            ),
        });
    }
    let hosts = config
        .hosts
        .iter()
        .map(|h| {
            HostConfig::new(h.name.clone(), h.uri.clone()).with_state_dir(config.host_state_dir(h))
        })
        .collect();
    let compute = Arc::new(LibvirtBackend::new(
        hosts,
        LibvirtOptions::default().with_resilience(config.compute.resilience()),
    ));

    let quota: Arc<dyn QuotaStore> = match &config.redis {
        Some(r) => {
            let store_config = if r.cluster {
                RedisQuotaConfig::cluster(r.url.clone(), r.key_prefix.clone())
            } else {
                RedisQuotaConfig::new(r.url.clone(), r.key_prefix.clone())
            };
            let store_config = RedisQuotaConfig {
                reservation_grace: Duration::from_secs(config.quota.reservation_grace_secs),
                ..store_config
            };
            let store = RedisQuotaStore::new(store_config)
                .context("cannot set up the Redis quota store")?;
            // A tenant whose Redis data cannot be trusted (a promoted replica, a restarted
            // node) is rebuilt from the database before any decision for it.
            store.set_truth(
                Arc::new(RepositoryQuotaTruth::new(repo.clone())),
                Duration::from_secs(config.quota.lease_secs),
            );
            // Redis down at start is not fatal: saves answer 503 until it is back.
            if let Err(e) = store.connect().await {
                tracing::warn!(error = %e, "Redis is unreachable at start; saves are refused until it answers");
            }
            Arc::new(store)
        }
        None => {
            tracing::info!("no Redis configured: quotas are kept in process (one gateway only)");
            Arc::new(
                MemoryQuotaStore::new().with_reservation_grace(Duration::from_secs(
                    config.quota.reservation_grace_secs,
                )),
            )
        }
    };

    let (policy, policy_engine): (Arc<dyn PolicyEngine>, Option<Arc<WasmPolicyEngine>>) =
        if config.policy.plugins.is_empty() {
            (Arc::new(AllowAll), None)
        } else {
            let engine = Arc::new(
                WasmPolicyEngine::load(config.policy.plugins.clone(), policy_limits(&config))
                    .context("cannot load the policy chain")?,
            );
            (engine.clone(), Some(engine))
        };

    // Demo mode: the console's sign-in form says where the demo tokens are.
    let mut demo_tokens_dir = None;
    let auth_config = if config.auth.is_configured() {
        config.auth.to_auth_config()
    } else {
        anyhow::ensure!(demo_mode, "{}", crate::config::MISSING_AUTH);
        let tokens =
            demo::ensure_demo_tokens(&config.data_dir).context("cannot write the demo tokens")?;
        tracing::warn!(
            admin = %tokens.admin_token_path.display(), member = %tokens.member_token_path.display(),
            operator = %tokens.operator_token_path.display(),
            "demo mode (no hosts, no [auth]): tokens for tenant {:?} and the cloud operator", demo::DEMO_TENANT
        );
        demo_tokens_dir = Some(config.data_dir.display().to_string());
        snapgate_api::AuthConfig {
            token_file: Some(tokens.token_file),
            jwt: None,
        }
    };
    let auth =
        Arc::new(Authenticator::from_config(&auth_config).context("authentication configuration")?);

    let settings = ServiceSettings {
        save_mode: config.snapshots.mode,
        operation_retention: Duration::from_secs(config.snapshots.operation_retention_secs),
        default_limits: config.quota.defaults,
        quota_lease: Duration::from_secs(config.quota.lease_secs),
        stale_after: Duration::from_secs_f64(config.snapshots.stale_after_secs),
        quota_fail_open: config.quota.fail_open,
        quota_rebuild_interval: Duration::from_secs(config.quota.rebuild_interval_secs),
        default_page_size: config.api.default_page_size,
        max_page_size: config.api.max_page_size,
        max_waits_per_tenant: config.api.max_waits_per_tenant,
        dry_runs_per_minute: config.quota.dry_runs_per_minute,
        decision_retention: Duration::from_secs(config.policy.decision_retention_secs),
        idempotency_key_ttl: Duration::from_secs(config.api.idempotency_key_ttl_secs),
        placement_refresh: Duration::from_secs_f64(config.compute.placement_refresh_secs),
        gateway_id: gateway_id(),
        lifecycle: config.lifecycle.settings(),
        event_retention: Duration::from_secs_f64(config.events.retention_hours * 3600.0),
        max_event_streams_per_tenant: config.api.max_event_streams_per_tenant,
        webhooks: config.webhooks.settings(),
    };
    let policy_admin: Arc<dyn PolicyAdmin> = match &policy_engine {
        Some(engine) => Arc::new(ChainAdmin {
            engine: engine.clone(),
            config: config.clone(),
            config_path,
        }),
        None => Arc::new(NoPolicyAdmin),
    };
    let service = Service::new(
        Backends {
            repo,
            compute,
            placements,
            quota,
            policy,
            policy_admin: policy_admin.clone(),
            lifecycle,
            schedules,
            events,
            event_feeds,
            webhooks,
            webhook_transport: Arc::new(crate::webhook_transport::HttpTransport),
        },
        settings,
    );
    let limits = ApiLimits {
        max_body_bytes: config.api.max_body_bytes,
        max_wait_secs: config.api.max_wait_secs,
        max_requests_in_flight: config.api.max_requests_in_flight,
        request_timeout: Duration::from_secs_f64(config.api.request_timeout_secs),
    };
    let state = AppState {
        service: service.clone(),
        auth,
        metrics: Some(metrics),
        limits,
        console: snapgate_api::console::ConsoleOptions { demo_tokens_dir },
    };
    Ok(Gateway {
        config,
        service,
        state,
        policy_admin,
        has_policy: policy_engine.is_some(),
    })
}

/// The `[policy]` limits as the policy engine takes them.
pub fn policy_limits(config: &Config) -> PolicyLimits {
    PolicyLimits {
        deadline: Duration::from_millis(config.policy.deadline_ms),
        memory_bytes: config.policy.memory_mib << 20,
        cache_dir: Some(config.plugin_cache_dir()),
        prewarm_instances: config.policy.prewarm_instances,
    }
}

/// Reload from the configuration file the gateway started with (re-read, so an operator can
/// change the chain and send SIGHUP).
struct ChainAdmin {
    engine: Arc<WasmPolicyEngine>,
    config: Config,
    config_path: Option<std::path::PathBuf>,
}

#[async_trait]
impl PolicyAdmin for ChainAdmin {
    async fn reload(&self) -> Result<serde_json::Value, String> {
        let plugins = match &self.config_path {
            Some(path) => {
                Config::load(Some(path))
                    .map_err(|e| e.to_string())?
                    .policy
                    .plugins
            }
            None => self.config.policy.plugins.clone(),
        };
        let engine = self.engine.clone();
        // Compiling plugins is CPU work: keep it off the async workers.
        tokio::task::spawn_blocking(move || engine.reload(plugins))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        tracing::info!("policy chain reloaded");
        Ok(self.chain())
    }

    fn chain(&self) -> serde_json::Value {
        serde_json::to_value(self.engine.chain_info()).unwrap_or_default()
    }
}

impl Gateway {
    /// Reconciles, then serves until SIGINT/SIGTERM; SIGHUP reloads the policy chain.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        let report = self
            .service
            .reconcile(true)
            .await
            .context("start-up reconciliation failed")?;
        tracing::info!(?report, "start-up reconciliation done");
        let maintenance = self.service.spawn_maintenance(Duration::from_secs_f64(
            self.config.snapshots.maintenance_interval_secs,
        ));
        let scheduler = self
            .service
            .spawn_scheduler(self.config.lifecycle.schedule_check_interval());
        let watcher = self.service.spawn_operation_watcher();
        // The sequencer, its wake-ups and the refusal batcher.
        let events = self.service.spawn_events();
        // Fans events out to webhooks and delivers them (at least once: a delivery cut off by
        // shutdown is sent again once its claim expires).
        let webhooks = self.service.spawn_webhook_dispatcher();
        let hup = self.spawn_reload_on_sighup();
        let (stop_admin, admin) = self.spawn_admin_listener().await?;
        // Reads every host's inventory now, then keeps the placement index fresh.
        let placement = self.service.spawn_placement();

        let addr = listener.local_addr()?;
        tracing::info!(%addr, "snapgate listening");
        let app = snapgate_api::router(self.state.clone());
        let service = self.service.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                // Open event streams never end by themselves: end them, or the graceful
                // shutdown would wait for them forever.
                service.close_events().await;
            })
            .await?;
        // No new scheduled run starts once shutdown has begun; runs under way are drained.
        scheduler.abort();

        tracing::info!(
            in_flight = self.service.operations_in_flight(),
            "shutting down: waiting for running operations"
        );
        let drained = self
            .service
            .drain(Duration::from_secs(
                self.config.snapshots.shutdown_grace_secs,
            ))
            .await;
        if !drained {
            tracing::warn!("operations still running at shutdown; the next start reconciles them");
        }
        maintenance.abort();
        watcher.abort();
        // Refusals of requests answered during the drain.
        self.service.flush_events().await;
        events.abort();
        webhooks.abort();
        hup.abort();
        // The operator's listener stays up through the drain, so it can be watched.
        let _ = stop_admin.send(true);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        placement.abort();
        Ok(())
    }

    /// Serves `/metrics` and readiness detail on `api.admin_listen`, when configured, until
    /// the returned sender says stop.
    async fn spawn_admin_listener(
        &self,
    ) -> anyhow::Result<(
        tokio::sync::watch::Sender<bool>,
        Option<tokio::task::JoinHandle<()>>,
    )> {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let Some(addr) = self.config.api.admin_listen else {
            return Ok((stop, None));
        };
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on api.admin_listen {addr}"))?;
        tracing::info!(%addr, "operator listener (metrics, readiness detail)");
        let app = snapgate_api::admin_router(self.state.clone());
        let handle = tokio::spawn(async move {
            let until_stopped = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(until_stopped)
                .await
            {
                tracing::error!(error = %e, "operator listener failed");
            }
        });
        Ok((stop, Some(handle)))
    }

    fn spawn_reload_on_sighup(&self) -> tokio::task::JoinHandle<()> {
        let admin = self.policy_admin.clone();
        let has_policy = self.has_policy;
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                if !has_policy {
                    tracing::info!("SIGHUP: no policy chain configured");
                    continue;
                }
                match admin.reload().await {
                    Ok(_) => tracing::info!("SIGHUP: policy chain reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: reload refused; the old chain keeps serving")
                    }
                }
            }
        })
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// This process as the holder of operations (`operations.lease_owner`): `hostname/pid`, which
/// tells an operator reading the logs or the table which gateway process held what.
fn gateway_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "snapgate".to_owned());
    format!("{host}/{}", std::process::id())
}
