//! The compute backend: where instances live and how their states are saved, applied and
//! deleted. The libvirt implementation is `snapgate-compute`.

use async_trait::async_trait;
use uuid::Uuid;

use crate::{CpuCompatibility, CpuInfo, Instance, SnapshotKind, TenantId};

#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error("instance {0} not found on any host")]
    InstanceNotFound(Uuid),
    #[error("unknown host {0}")]
    UnknownHost(String),
    /// The instance cannot get a snapshot with memory (not running, wrong disk format, host
    /// devices…). `code` is the stable client code, e.g. `instance_not_running`,
    /// `unsupported_disk_format`.
    #[error("{message}")]
    Unsupported { code: &'static str, message: String },
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    #[error("host {host} unreachable: {message}")]
    HostUnreachable { host: String, message: String },
    /// libvirt refused or failed the call.
    #[error("libvirt error on {host}: {message}")]
    Backend { host: String, message: String },
}

impl ComputeError {
    /// What a client is told: a fixed sentence per code. The variant's fields (host names,
    /// libvirt's own words, file paths) are for the logs only. `Unsupported` messages are
    /// snapgate's own, about the client's instance, and are shown as they are.
    pub fn client_message(&self) -> &str {
        match self {
            ComputeError::InstanceNotFound(_) => "instance not found",
            ComputeError::UnknownHost(_) => "the instance's compute host is not configured",
            ComputeError::Unsupported { message, .. } => message,
            ComputeError::SnapshotNotFound(_) => "the state's snapshot is missing on the host",
            ComputeError::HostUnreachable { .. } => "the compute host is unreachable",
            ComputeError::Backend { .. } => "the compute host failed the operation",
        }
    }

    /// What a failed operation records for its client: the code and [`Self::client_message`].
    pub fn client_info(&self) -> crate::ErrorInfo {
        crate::ErrorInfo::new(self.code(), self.client_message())
    }

    /// The stable error code given to clients and stored on failed operations.
    pub fn code(&self) -> &'static str {
        match self {
            ComputeError::InstanceNotFound(_) => "instance_not_found",
            ComputeError::UnknownHost(_) => "unknown_host",
            ComputeError::Unsupported { code, .. } => code,
            ComputeError::SnapshotNotFound(_) => "snapshot_not_found",
            ComputeError::HostUnreachable { .. } => "compute_unavailable",
            ComputeError::Backend { .. } => "compute_error",
        }
    }
}

/// What to save.
#[derive(Debug, Clone)]
pub struct SaveRequest {
    pub instance: Uuid,
    /// libvirt snapshot name: the state's uuid (never user text).
    pub snapshot_name: String,
    pub kind: SnapshotKind,
}

/// What a finished save measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSnapshot {
    pub kind: SnapshotKind,
    pub memory_bytes: i64,
    /// Memory plus disk delta.
    pub size_bytes: i64,
    pub disk_formats: Vec<String>,
    pub cpu: CpuInfo,
    pub cpu_xml: Option<String>,
    /// Name of libvirt's parent snapshot, if any.
    pub parent: Option<String>,
    /// The snapshot's libvirt XML as the host gave it after the save: enough to define the
    /// snapshot again on another host the instance moves to.
    pub snapshot_xml: Option<String>,
}

/// A sample of the libvirt job running on an instance (`virDomainGetJobStats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobProgress {
    /// [`crate::phase::MEMORY`] or [`crate::phase::DISKS`].
    pub phase: &'static str,
    /// Bytes processed so far (memory plus disks; grows with each pass over dirtied memory).
    pub bytes_processed: u64,
    /// Bytes to process in all, when libvirt says.
    pub bytes_total: Option<u64>,
    /// Bytes still to process, when libvirt says.
    pub bytes_remaining: Option<u64>,
}

impl JobProgress {
    /// Percent done while the job runs: what is left of the total, else what was processed
    /// of it; at most 99 (the job is not done until libvirt's call returns).
    pub fn percent(&self) -> Option<f64> {
        let total = self.bytes_total.filter(|t| *t > 0)? as f64;
        let done = match self.bytes_remaining {
            Some(left) => total - left as f64,
            None => self.bytes_processed as f64,
        };
        Some((done * 100.0 / total).clamp(0.0, 99.0).floor())
    }
}

/// What libvirt shows of a snapshot, for the reconciler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotProbe {
    Present,
    Absent,
}

/// One instance in a host's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedInstance {
    pub uuid: Uuid,
    /// Running (or paused): a copy that is active wins over an inactive definition of the
    /// same instance on another host (the source of a migration may keep one).
    pub active: bool,
}

/// What a host announced (libvirt domain lifecycle events), or its connection coming back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// The instance was defined, started or migrated in on `host`.
    InstanceSeen {
        host: String,
        instance: Uuid,
        active: bool,
    },
    /// The instance's definition was removed from `host`.
    InstanceGone { host: String, instance: Uuid },
    /// The connection to `host` opened again after it was lost: events may have been missed.
    Reconnected { host: String },
}

/// The circuit breaker of one host: `Closed` lets calls through; `Open` refuses them at once
/// (the host is known down) while the backend reconnects in the background; `HalfOpen` is a
/// background reconnection attempt in progress (calls are still refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

/// A host as the backend knows it right now, without asking it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostHealth {
    pub host: String,
    pub breaker: BreakerState,
    /// A connection is open (hosts connect on first use, so a closed breaker may have none yet).
    pub connected: bool,
    /// Why the breaker opened.
    pub error: Option<String>,
}

/// The compute backend. Implementations must not block the async runtime.
#[async_trait]
pub trait ComputeBackend: Send + Sync + 'static {
    /// Configured host names.
    fn hosts(&self) -> Vec<String>;

    /// Finds an instance on whichever host has it (every host asked, see [`Self::search`]).
    async fn locate(&self, instance: Uuid) -> Result<Instance, ComputeError> {
        self.search(instance, None).await
    }

    /// Describes `instance` on one host: `InstanceNotFound` when that host does not have it.
    async fn describe(&self, host: &str, instance: Uuid) -> Result<Instance, ComputeError>;

    /// Looks for `instance` on every host but `skip`, asking them in parallel (a bounded
    /// number at a time). A running copy wins over a defined-only one. When no reachable host
    /// has it but some host could not be asked, the answer is `HostUnreachable`: the instance
    /// may be there, and "not found" would be a lie.
    async fn search(&self, instance: Uuid, skip: Option<&str>) -> Result<Instance, ComputeError>;

    /// The host's inventory: every domain it defines, in one listing call.
    async fn list_instances(&self, host: &str) -> Result<Vec<ListedInstance>, ComputeError>;

    /// The owner named in the domain's metadata (Nova's or snapgate's namespace).
    async fn instance_owner(
        &self,
        host: &str,
        instance: Uuid,
    ) -> Result<Option<TenantId>, ComputeError>;

    /// Every host's breaker and connection, from memory: never waits on a host.
    fn health(&self) -> Vec<HostHealth>;

    /// Host events from now on (lifecycle events of every connected host, reconnections).
    /// A lagging receiver has missed events and should re-read the inventories.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<HostEvent>;

    /// Checks, before any work, that `instance` can get a snapshot of `kind` with memory.
    async fn check_save(&self, instance: &Instance, kind: SnapshotKind)
        -> Result<(), ComputeError>;

    /// Takes a snapshot with memory of a running instance.
    async fn save(&self, host: &str, req: SaveRequest) -> Result<SavedSnapshot, ComputeError>;

    /// The libvirt job running on the instance (a save's or an apply's), sampled; `None` when
    /// none runs or libvirt gives no byte counts for it.
    async fn job_progress(
        &self,
        host: &str,
        instance: Uuid,
    ) -> Result<Option<JobProgress>, ComputeError>;

    /// Aborts the libvirt job running on the instance (`virDomainAbortJob`): the save's call
    /// then fails. `false` when no job was running (or the host cannot abort jobs).
    async fn abort_job(&self, host: &str, instance: Uuid) -> Result<bool, ComputeError>;

    /// Removes what a save cancelled by its client left: the snapshot if libvirt made it after
    /// all, and any `<snapshot_name>.`-prefixed file of it in the host's state directory.
    async fn discard_save(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_name: &str,
    ) -> Result<(), ComputeError>;

    /// Reverts the instance to the snapshot and leaves it running.
    async fn apply(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_name: &str,
    ) -> Result<(), ComputeError>;

    /// Deletes the snapshot and every file it owns.
    async fn delete(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_name: &str,
    ) -> Result<(), ComputeError>;

    /// Defines a snapshot again from the XML [`SavedSnapshot::snapshot_xml`] kept, on the
    /// instance's current host (which lacks it after a move). Metadata only: the snapshot's
    /// data must already be where the XML says (internal snapshots travel inside the disks).
    async fn redefine_snapshot(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_xml: &str,
    ) -> Result<(), ComputeError>;

    /// Whether libvirt has the snapshot.
    async fn probe(
        &self,
        host: &str,
        instance: Uuid,
        snapshot_name: &str,
    ) -> Result<SnapshotProbe, ComputeError>;

    /// Snapshot names libvirt has for the instance.
    async fn list_snapshots(&self, host: &str, instance: Uuid)
        -> Result<Vec<String>, ComputeError>;

    /// The host's CPU as libvirt sees it (model and features).
    async fn host_cpu(&self, host: &str) -> Result<CpuInfo, ComputeError>;

    /// Compares a saved guest CPU (libvirt XML) with the CPU that `host`'s hypervisor gives
    /// `instance` (which depends on the instance's virtualization type, e.g. KVM or
    /// emulation), i.e. whether the state can be restored into it there.
    async fn compare_cpu(
        &self,
        host: &str,
        instance: Uuid,
        cpu_xml: &str,
    ) -> Result<CpuCompatibility, ComputeError>;

    /// Checks the connection to one host, reconnecting if it dropped.
    async fn ping(&self, host: &str) -> Result<(), ComputeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors say what, logs say where: whatever libvirt or the OS said (paths, host URIs,
    /// driver text) stays in the error for the log; the client's code and message are fixed
    /// per kind. (`realvm_gateway`'s libvirtd-killed-mid-save test checks the same end to end.)
    #[test]
    fn clients_get_a_fixed_message_per_kind_never_the_cause() {
        let leaky = "cannot create /var/lib/libvirt/snapgate/0192/memory: Not a directory (os error 20) on qemu+ssh://node-7/system";
        for (error, code) in [
            (
                ComputeError::Backend {
                    host: "node-7".into(),
                    message: leaky.into(),
                },
                "compute_error",
            ),
            (
                ComputeError::HostUnreachable {
                    host: "node-7".into(),
                    message: leaky.into(),
                },
                "compute_unavailable",
            ),
        ] {
            let info = error.client_info();
            assert_eq!(info.code, code);
            for leak in ["/", "node-7", "os error", "directory", "qemu"] {
                assert!(
                    !info.message.contains(leak),
                    "{leak:?} leaked: {}",
                    info.message
                );
            }
            // The cause is still there for the log.
            assert!(error.to_string().contains("node-7") || format!("{error:?}").contains(leaky));
        }
    }
}
