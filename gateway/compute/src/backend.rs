//! [`LibvirtBackend`]: the `ComputeBackend` port over libvirt.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use snapgate_core::ports::{
    ComputeBackend, ComputeError, HostEvent, HostHealth, JobProgress, ListedInstance, SaveRequest,
    SavedSnapshot, SnapshotProbe,
};
use snapgate_core::{CpuCompatibility, CpuInfo, Instance, SnapshotKind, TenantId};
use tokio::sync::broadcast;
use tracing::Instrument;
use uuid::Uuid;
use virt::connect::Connect;

use crate::blocking::{self, Site};
use crate::config::{HostConfig, LibvirtOptions};
use crate::connection::{HostConnection, HostContext, RECONNECT_TICK};
use crate::errors::Fail;

/// How a call is made.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// A read: bounded by the call timeout, and run once more on a fresh connection when the
    /// first attempt fails with a connection error.
    Read,
    /// A snapshot change: never retried (libvirt may have carried out the first attempt) and
    /// not bounded by the call timeout (it can take minutes; keepalive ends a dead host's).
    Mutation,
}

/// Host events kept for a slow subscriber before it is told it lagged.
const EVENT_BUFFER: usize = 4096;

/// Reconnection attempts running at once (each is a thread waiting up to the connect timeout).
const MAX_RECONNECTS: usize = 32;

/// The libvirt compute backend: one kept connection and one circuit breaker per host.
pub struct LibvirtBackend {
    hosts: Arc<Vec<Arc<HostConnection>>>,
    by_name: HashMap<String, usize>,
    /// Each host's state directory (a path on that host), by host name.
    state_dirs: HashMap<String, Arc<Path>>,
    opts: LibvirtOptions,
    events: broadcast::Sender<HostEvent>,
    /// Tells the reconnector thread to stop when the backend goes.
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for LibvirtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtBackend")
            .field(
                "hosts",
                &self
                    .hosts
                    .iter()
                    .map(|h| (&h.name, &h.uri))
                    .collect::<Vec<_>>(),
            )
            .field("opts", &self.opts)
            .finish()
    }
}

impl Drop for LibvirtBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl LibvirtBackend {
    /// Opens nothing yet: each host connects on its first call. Starts libvirt's event loop
    /// (once per process) and this backend's reconnector thread.
    pub fn new(hosts: Vec<HostConfig>, opts: LibvirtOptions) -> Self {
        // libvirt prints every error to stderr by default; errors reach us as values instead.
        virt::error::clear_error_callback();
        crate::events::ensure_event_loop();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (lost, lost_rx) = std::sync::mpsc::channel();
        let ctx = Arc::new(HostContext {
            resilience: opts.resilience.clone(),
            events: events.clone(),
            lost,
        });
        let state_dirs = hosts
            .iter()
            .map(|h| (h.name.clone(), Arc::from(h.state_dir.as_path())))
            .collect();
        let hosts: Arc<Vec<Arc<HostConnection>>> = Arc::new(
            hosts
                .into_iter()
                .map(|h| Arc::new(HostConnection::new(h.name, h.uri, ctx.clone())))
                .collect(),
        );
        let by_name = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        spawn_reconnector(Arc::downgrade(&hosts), lost_rx, stop.clone());
        Self {
            hosts,
            by_name,
            state_dirs,
            opts,
            events,
            stop,
        }
    }

    pub fn options(&self) -> &LibvirtOptions {
        &self.opts
    }

    /// Closes the kept connection of `host`, as a dropped connection would. Tests use it to
    /// prove that the next call reconnects.
    #[doc(hidden)]
    pub fn force_disconnect(&self, host: &str) {
        if let Ok(h) = self.host(host) {
            h.disconnect();
        }
    }

    /// Runs `f` on the host's own connection (blocking). Tests use it to change a test-driver
    /// host the way an operator would (define, undefine, start), on the connection whose
    /// events the backend listens to.
    #[doc(hidden)]
    pub fn with_connection<T>(
        &self,
        host: &str,
        f: impl FnOnce(&Connect) -> T,
    ) -> Result<T, ComputeError> {
        let conn = self.host(host)?;
        let handle = conn.handle().map_err(|e| e.into_compute(host))?;
        Ok(f(&handle))
    }

    fn host(&self, name: &str) -> Result<Arc<HostConnection>, ComputeError> {
        self.by_name
            .get(name)
            .map(|&i| self.hosts[i].clone())
            .ok_or_else(|| ComputeError::UnknownHost(name.to_owned()))
    }

    /// Runs `call` on the host's connection in a blocking thread, with the caller's span.
    /// A host whose breaker is open is refused here, before any thread or libvirt call.
    pub(crate) async fn run<T, F>(&self, host: &str, kind: Call, call: F) -> Result<T, ComputeError>
    where
        T: Send + 'static,
        F: Fn(&Connect, &Site<'_>) -> Result<T, Fail> + Send + 'static,
    {
        let conn = self.host(host)?;
        let state_dir = self.state_dir(host)?;
        run_on(
            conn,
            state_dir,
            kind,
            self.opts.resilience.call_timeout,
            call,
        )
        .await
    }

    fn state_dir(&self, host: &str) -> Result<Arc<Path>, ComputeError> {
        self.state_dirs
            .get(host)
            .cloned()
            .ok_or_else(|| ComputeError::UnknownHost(host.to_owned()))
    }

    /// After a save failed because the host went away, its files may be half written there.
    /// They are removed, through libvirt, once the host answers again: a background task
    /// retries with growing pauses (up to about an hour), unless libvirt finished the snapshot
    /// after all (then its files are kept).
    fn clean_up_after_lost_save(&self, host: &str, instance: Uuid, name: String) {
        let (Ok(conn), Ok(state_dir)) = (self.host(host), self.state_dir(host)) else {
            return;
        };
        let call_timeout = self.opts.resilience.call_timeout;
        tokio::spawn(
            async move {
                let mut pause = Duration::from_millis(500);
                for _ in 0..16 {
                    tokio::time::sleep(pause).await;
                    let name = name.clone();
                    // Removing a failed save's files is safe to repeat: a read-like call.
                    let done = run_on(
                        conn.clone(),
                        state_dir.clone(),
                        Call::Read,
                        call_timeout,
                        move |c, site| {
                            blocking::remove_files_of_failed_save(c, site, instance, &name)
                        },
                    )
                    .await;
                    match done {
                        Ok(()) => return,
                        Err(ComputeError::HostUnreachable { .. }) => {
                            pause = (pause * 2).min(Duration::from_secs(600))
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot clean up after a failed save");
                            return;
                        }
                    }
                }
                tracing::warn!(
                    "gave up cleaning up after a failed save; the files stay on the host"
                );
            }
            .instrument(tracing::Span::current()),
        );
    }
}

/// Runs `call` on a host's connection in a blocking thread, with the caller's span. A host
/// whose breaker is open is refused before any thread or libvirt call; a read that gets no
/// answer within `call_timeout` judges the host down.
async fn run_on<T, F>(
    conn: Arc<HostConnection>,
    state_dir: Arc<Path>,
    kind: Call,
    call_timeout: Duration,
    call: F,
) -> Result<T, ComputeError>
where
    T: Send + 'static,
    F: Fn(&Connect, &Site<'_>) -> Result<T, Fail> + Send + 'static,
{
    let host = conn.name.clone();
    let host = host.as_str();
    if let Err(refused) = conn.breaker.check() {
        count_call(host, "rejected");
        return Err(refused);
    }
    let started = Instant::now();
    let span = tracing::Span::current();
    let worker = conn.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let conn = worker;
        let site = Site {
            host: &conn.name,
            state_dir: &state_dir,
        };
        let attempt = || conn.handle().and_then(|handle| call(&handle, &site));
        match attempt() {
            Err(fail) if fail.is_connection_error() => {
                // The kept connection is broken: drop it so the next call reconnects.
                conn.disconnect();
                if kind == Call::Read && conn.breaker.check().is_ok() {
                    tracing::warn!(host = %conn.name, "libvirt connection lost, retrying once on a new one");
                    attempt().map_err(|f| f.into_compute(&conn.name))
                } else {
                    Err(fail.into_compute(&conn.name))
                }
            }
            other => other.map_err(|f| f.into_compute(&conn.name)),
        }
    });
    let joined = match kind {
        Call::Mutation => task.await,
        Call::Read => match tokio::time::timeout(call_timeout, task).await {
            Ok(joined) => joined,
            Err(_) => {
                // The host accepted the call and does not answer: judge it down, so the next
                // callers are refused at once. The stuck call ends when keepalive closes the
                // connection.
                let message = format!(
                    "no answer within the call timeout ({:.1} s)",
                    call_timeout.as_secs_f64()
                );
                let down = conn.clone();
                let reason = message.clone();
                tokio::task::spawn_blocking(move || down.mark_down(&reason));
                count_call(host, "unreachable");
                return Err(ComputeError::HostUnreachable {
                    host: host.to_owned(),
                    message,
                });
            }
        },
    };
    let result = joined.unwrap_or_else(|e| {
        tracing::error!(host, error = %e, "libvirt call panicked");
        Err(ComputeError::Backend {
            host: host.to_owned(),
            message: "libvirt call panicked".into(),
        })
    });
    metrics::histogram!("snapgate_libvirt_call_duration_seconds", "host" => host.to_owned())
        .record(started.elapsed().as_secs_f64());
    count_call(
        host,
        match &result {
            Ok(_) => "ok",
            Err(ComputeError::HostUnreachable { .. }) => "unreachable",
            // libvirt answered (a missing domain is an answer too).
            Err(_) => "refused",
        },
    );
    result
}

/// `snapgate_libvirt_calls_total{host, result}`: every call the backend was asked to make on
/// a host; `rejected` ones were refused by the open breaker without reaching libvirt.
fn count_call(host: &str, result: &'static str) {
    metrics::counter!("snapgate_libvirt_calls_total", "host" => host.to_owned(), "result" => result)
        .increment(1);
}

/// The reconnector: a thread that opens the breaker of hosts whose connection libvirt closed
/// (keepalive, EOF) and retries hosts that are down when their back-off is over, a bounded
/// number at a time. Requests never wait on it.
fn spawn_reconnector(
    hosts: Weak<Vec<Arc<HostConnection>>>,
    lost: std::sync::mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
) {
    let running = Arc::new(AtomicUsize::new(0));
    let spawned = std::thread::Builder::new()
        .name("libvirt-reconnect".into())
        .spawn(move || loop {
            let lost_host = lost.recv_timeout(RECONNECT_TICK);
            if stop.load(Ordering::Acquire) {
                return;
            }
            let Some(hosts) = hosts.upgrade() else { return };
            if let Ok(name) = lost_host {
                if let Some(h) = hosts.iter().find(|h| h.name == name) {
                    h.mark_down("libvirt closed the connection (keepalive timeout or end of file)");
                }
            }
            let now = Instant::now();
            for h in hosts.iter() {
                if running.load(Ordering::Acquire) >= MAX_RECONNECTS {
                    break;
                }
                if !h.breaker.try_half_open(now) {
                    continue;
                }
                running.fetch_add(1, Ordering::AcqRel);
                let (h, done) = (h.clone(), running.clone());
                let spawned = std::thread::Builder::new()
                    .name("libvirt-reconnect-host".into())
                    .spawn(move || {
                        h.reconnect();
                        done.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    running.fetch_sub(1, Ordering::AcqRel);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "host reconnector not started: hosts that go down stay down");
    }
}

#[async_trait]
impl ComputeBackend for LibvirtBackend {
    fn hosts(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    async fn describe(&self, host: &str, instance: Uuid) -> Result<Instance, ComputeError> {
        let span = tracing::info_span!("compute.describe", host = %host, instance = %instance);
        self.run(host, Call::Read, move |conn, site| {
            blocking::describe(conn, site, instance)
        })
        .instrument(span)
        .await
    }

    async fn search(&self, instance: Uuid, skip: Option<&str>) -> Result<Instance, ComputeError> {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| Some(h.name.as_str()) != skip)
            .map(|h| h.name.clone())
            .collect();
        let fan_out = self.opts.resilience.search_fan_out.max(1);
        let mut answers = futures::stream::iter(hosts)
            .map(|host| async move { self.describe(&host, instance).await })
            .buffer_unordered(fan_out);
        let (mut defined_only, mut failure) = (None, None);
        while let Some(answer) = answers.next().await {
            match answer {
                // A running copy is the instance; stop asking.
                Ok(found) if found.running => return Ok(found),
                Ok(found) => {
                    defined_only.get_or_insert(found);
                }
                Err(ComputeError::InstanceNotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "host skipped while searching for an instance");
                    // An unreachable host is the better explanation of a miss than a refusal.
                    if failure.is_none() || matches!(e, ComputeError::HostUnreachable { .. }) {
                        failure = Some(e);
                    }
                }
            }
        }
        match (defined_only, failure) {
            (Some(found), _) => Ok(found),
            (None, Some(e)) => Err(e),
            (None, None) => Err(ComputeError::InstanceNotFound(instance)),
        }
    }

    async fn list_instances(&self, host: &str) -> Result<Vec<ListedInstance>, ComputeError> {
        self.run(host, Call::Read, |conn, _| {
            crate::inventory::list_instances(conn)
        })
        .await
    }

    async fn instance_owner(
        &self,
        host: &str,
        instance: Uuid,
    ) -> Result<Option<TenantId>, ComputeError> {
        self.run(host, Call::Read, move |conn, site| {
            crate::inventory::instance_owner(conn, site, instance)
        })
        .await
    }

    fn health(&self) -> Vec<HostHealth> {
        self.hosts
            .iter()
            .map(|h| {
                let (breaker, error) = h.breaker.state();
                HostHealth {
                    host: h.name.clone(),
                    breaker,
                    connected: h.is_connected(),
                    error,
                }
            })
            .collect()
    }

    fn subscribe(&self) -> broadcast::Receiver<HostEvent> {
        self.events.subscribe()
    }

    #[tracing::instrument(skip(self, instance), fields(host = %instance.host, instance = %instance.uuid))]
    async fn check_save(
        &self,
        instance: &Instance,
        kind: SnapshotKind,
    ) -> Result<(), ComputeError> {
        crate::checks::check_snapshot_support(instance, kind)?;
        let uuid = instance.uuid;
        self.run(&instance.host, Call::Read, move |conn, site| {
            blocking::check_existing_snapshots(conn, site, uuid, kind)
        })
        .await
    }

    #[tracing::instrument(skip(self, req), fields(instance = %req.instance, snapshot = %req.snapshot_name, kind = %req.kind))]
    async fn save(&self, host: &str, req: SaveRequest) -> Result<SavedSnapshot, ComputeError> {
        let started = std::time::Instant::now();
        let (instance, name, kind) = (req.instance, req.snapshot_name.clone(), req.kind);
        let saved = self
            .run(host, Call::Mutation, move |conn, site| {
                blocking::save(conn, site, req.instance, &req.snapshot_name, req.kind)
            })
            .await;
        if let (Err(ComputeError::HostUnreachable { .. }), SnapshotKind::External) = (&saved, kind)
        {
            self.clean_up_after_lost_save(host, instance, name);
        }
        let saved = saved?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            memory_bytes = saved.memory_bytes,
            size_bytes = saved.size_bytes,
            "snapshot saved"
        );
        Ok(saved)
    }

    async fn job_progress(
        &self,
        host: &str,
        instance: Uuid,
    ) -> Result<Option<JobProgress>, ComputeError> {
        self.run(host, Call::Read, move |conn, _| {
            blocking::job_progress(conn, instance)
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn abort_job(&self, host: &str, instance: Uuid) -> Result<bool, ComputeError> {
        // Safe to repeat: aborting when no job runs changes nothing.
        self.run(host, Call::Read, move |conn, _| {
            blocking::abort_job(conn, instance)
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn discard_save(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_name: &str,
    ) -> Result<(), ComputeError> {
        let name = snapshot_name.to_owned();
        self.run(host, Call::Mutation, move |conn, site| {
            blocking::discard_save(conn, site, instance, &name)
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn apply(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_name: &str,
    ) -> Result<(), ComputeError> {
        let name = snapshot_name.to_owned();
        self.run(host, Call::Mutation, move |conn, _| {
            blocking::apply(conn, instance, &name)
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn delete(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_name: &str,
    ) -> Result<(), ComputeError> {
        let name = snapshot_name.to_owned();
        self.run(host, Call::Mutation, move |conn, site| {
            blocking::delete(conn, site, instance, &name)
        })
        .await
    }

    #[tracing::instrument(skip(self, snapshot_xml))]
    async fn redefine_snapshot(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_xml: &str,
    ) -> Result<(), ComputeError> {
        let snapshot_xml = snapshot_xml.to_owned();
        self.run(host, Call::Mutation, move |conn, site| {
            blocking::redefine(conn, site, instance, &snapshot_xml)
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn probe(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_name: &str,
    ) -> Result<SnapshotProbe, ComputeError> {
        let name = snapshot_name.to_owned();
        self.run(host, Call::Read, move |conn, _| {
            blocking::probe(conn, instance, &name)
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn list_snapshots(
        &self,
        host: &str,
        instance: Uuid,
    ) -> Result<Vec<String>, ComputeError> {
        self.run(host, Call::Read, move |conn, _| {
            blocking::list_snapshots(conn, instance)
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn host_cpu(&self, host: &str) -> Result<CpuInfo, ComputeError> {
        self.run(host, Call::Read, blocking::host_cpu).await
    }

    #[tracing::instrument(skip(self, cpu_xml))]
    async fn compare_cpu(
        &self,
        host: &str,
        instance: Uuid,
        cpu_xml: &str,
    ) -> Result<CpuCompatibility, ComputeError> {
        let cpu_xml = cpu_xml.to_owned();
        self.run(host, Call::Read, move |conn, site| {
            blocking::compare_cpu(conn, site, instance, &cpu_xml)
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn ping(&self, host: &str) -> Result<(), ComputeError> {
        self.run(host, Call::Read, |conn, _| blocking::ping(conn))
            .await
            .map_err(|e| match e {
                ComputeError::Backend { host, message } => {
                    ComputeError::HostUnreachable { host, message }
                }
                other => other,
            })
    }
}
