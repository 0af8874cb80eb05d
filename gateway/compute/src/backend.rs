//! [`LibvirtBackend`]: the `ComputeBackend` port over libvirt.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use snapgate_core::ports::{
    ComputeBackend, ComputeError, SaveRequest, SavedSnapshot, SnapshotProbe,
};
use snapgate_core::{CpuCompatibility, CpuInfo, Instance, SnapshotKind};
use tracing::Instrument;
use uuid::Uuid;
use virt::connect::Connect;

use crate::blocking::{self, Site};
use crate::config::{HostConfig, LibvirtOptions};
use crate::connection::HostConnection;
use crate::errors::Fail;

/// Whether a call may run again on a fresh connection after the first one failed with a
/// connection error. Mutations never do: libvirt may have carried out the first attempt.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    Once,
    Never,
}

/// The libvirt compute backend: one kept connection per configured host.
pub struct LibvirtBackend {
    hosts: Vec<Arc<HostConnection>>,
    /// Each host's state directory (a path on that host), by host name.
    state_dirs: HashMap<String, Arc<Path>>,
    opts: LibvirtOptions,
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

impl LibvirtBackend {
    /// Opens nothing yet: each host connects on its first call.
    pub fn new(hosts: Vec<HostConfig>, opts: LibvirtOptions) -> Self {
        // libvirt prints every error to stderr by default; errors reach us as values instead.
        virt::error::clear_error_callback();
        let state_dirs = hosts
            .iter()
            .map(|h| (h.name.clone(), Arc::from(h.state_dir.as_path())))
            .collect();
        let hosts = hosts
            .into_iter()
            .map(|h| Arc::new(HostConnection::new(h.name, h.uri)))
            .collect();
        Self {
            hosts,
            state_dirs,
            opts,
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

    fn host(&self, name: &str) -> Result<Arc<HostConnection>, ComputeError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .cloned()
            .ok_or_else(|| ComputeError::UnknownHost(name.to_owned()))
    }

    /// Runs `call` on the host's connection in a blocking thread, with the caller's span.
    async fn run<T, F>(&self, host: &str, retry: Retry, call: F) -> Result<T, ComputeError>
    where
        T: Send + 'static,
        F: Fn(&Connect, &Site<'_>) -> Result<T, Fail> + Send + 'static,
    {
        let conn = self.host(host)?;
        let state_dir = self.state_dir(host)?;
        run_on(conn, state_dir, retry, call).await
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
        tokio::spawn(
            async move {
                let mut pause = std::time::Duration::from_millis(500);
                for _ in 0..16 {
                    tokio::time::sleep(pause).await;
                    let name = name.clone();
                    let done = run_on(
                        conn.clone(),
                        state_dir.clone(),
                        Retry::Once,
                        move |c, site| {
                            blocking::remove_files_of_failed_save(c, site, instance, &name)
                        },
                    )
                    .await;
                    match done {
                        Ok(()) => return,
                        Err(ComputeError::HostUnreachable { .. }) => {
                            pause = (pause * 2).min(std::time::Duration::from_secs(600))
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

/// Runs `call` on a host's connection in a blocking thread, with the caller's span.
async fn run_on<T, F>(
    conn: Arc<HostConnection>,
    state_dir: Arc<Path>,
    retry: Retry,
    call: F,
) -> Result<T, ComputeError>
where
    T: Send + 'static,
    F: Fn(&Connect, &Site<'_>) -> Result<T, Fail> + Send + 'static,
{
    let host = conn.name.clone();
    let span = tracing::Span::current();
    let joined = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let site = Site {
            host: &conn.name,
            state_dir: &state_dir,
        };
        let attempt = || conn.handle().and_then(|handle| call(&handle, &site));
        match attempt() {
            Err(fail) if fail.is_connection_error() => {
                // The kept connection is broken: drop it so the next call reconnects.
                conn.disconnect();
                if retry == Retry::Once {
                    tracing::warn!(host = %conn.name, "libvirt connection lost, retrying once on a new one");
                    attempt().map_err(|f| f.into_compute(&conn.name))
                } else {
                    Err(fail.into_compute(&conn.name))
                }
            }
            other => other.map_err(|f| f.into_compute(&conn.name)),
        }
    })
    .await;
    joined.unwrap_or_else(|e| {
        tracing::error!(host, error = %e, "libvirt call panicked");
        Err(ComputeError::Backend {
            host,
            message: "libvirt call panicked".into(),
        })
    })
}

#[async_trait]
impl ComputeBackend for LibvirtBackend {
    fn hosts(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// Looks on every host in configuration order. When the instance is on no reachable host
    /// but some host is unreachable, the answer is `HostUnreachable`: the instance may well be
    /// there, and "not found" would be a lie.
    async fn locate(&self, instance: Uuid) -> Result<Instance, ComputeError> {
        let mut unreachable = None;
        for host in self.hosts() {
            let span = tracing::info_span!("compute.locate", host = %host, instance = %instance);
            let found = self
                .run(&host, Retry::Once, move |conn, site| {
                    blocking::describe(conn, site, instance)
                })
                .instrument(span)
                .await;
            match found {
                Ok(found) => return Ok(found),
                Err(ComputeError::InstanceNotFound(_)) => continue,
                Err(e @ ComputeError::HostUnreachable { .. }) => {
                    tracing::warn!(error = %e, "host skipped while locating an instance");
                    unreachable.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(unreachable.unwrap_or(ComputeError::InstanceNotFound(instance)))
    }

    #[tracing::instrument(skip(self, instance), fields(host = %instance.host, instance = %instance.uuid))]
    async fn check_save(
        &self,
        instance: &Instance,
        kind: SnapshotKind,
    ) -> Result<(), ComputeError> {
        crate::checks::check_snapshot_support(instance, kind)?;
        let uuid = instance.uuid;
        self.run(&instance.host, Retry::Once, move |conn, site| {
            blocking::check_existing_snapshots(conn, site, uuid, kind)
        })
        .await
    }

    #[tracing::instrument(skip(self, req), fields(instance = %req.instance, snapshot = %req.snapshot_name, kind = %req.kind))]
    async fn save(&self, host: &str, req: SaveRequest) -> Result<SavedSnapshot, ComputeError> {
        let started = std::time::Instant::now();
        let (instance, name, kind) = (req.instance, req.snapshot_name.clone(), req.kind);
        let saved = self
            .run(host, Retry::Never, move |conn, site| {
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

    #[tracing::instrument(skip(self))]
    async fn apply(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_name: &str,
    ) -> Result<(), ComputeError> {
        let name = snapshot_name.to_owned();
        self.run(host, Retry::Never, move |conn, _| {
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
        self.run(host, Retry::Never, move |conn, site| {
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
        self.run(host, Retry::Never, move |conn, site| {
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
        self.run(host, Retry::Once, move |conn, _| {
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
        self.run(host, Retry::Once, move |conn, _| {
            blocking::list_snapshots(conn, instance)
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn host_cpu(&self, host: &str) -> Result<CpuInfo, ComputeError> {
        self.run(host, Retry::Once, blocking::host_cpu).await
    }

    #[tracing::instrument(skip(self, cpu_xml))]
    async fn compare_cpu(
        &self,
        host: &str,
        instance: Uuid,
        cpu_xml: &str,
    ) -> Result<CpuCompatibility, ComputeError> {
        let cpu_xml = cpu_xml.to_owned();
        self.run(host, Retry::Once, move |conn, site| {
            blocking::compare_cpu(conn, site, instance, &cpu_xml)
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn ping(&self, host: &str) -> Result<(), ComputeError> {
        self.run(host, Retry::Once, |conn, _| blocking::ping(conn))
            .await
            .map_err(|e| match e {
                ComputeError::Backend { host, message } => {
                    ComputeError::HostUnreachable { host, message }
                }
                other => other,
            })
    }
}
