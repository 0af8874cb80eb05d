//! Domain types. They derive `Serialize` and `ToSchema` because the REST representation of a
//! state or an operation *is* the domain record; no HTTP type lives here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A tenant (OpenStack project) id, as carried by the caller's token.
pub type TenantId = String;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {}: {other}", stringify!($name))),
                }
            }
        }
    };
}

string_enum!(
    /// Life cycle of a saved state.
    StateStatus { Saving = "saving", Available = "available", Applying = "applying", Deleting = "deleting", Error = "error" }
);
string_enum!(
    /// How libvirt keeps the snapshot: inside the qcow2 images, or as a memory file plus overlays.
    SnapshotKind { Internal = "internal", External = "external" }
);
string_enum!(
    OperationKind { Save = "save", Apply = "apply", Delete = "delete" }
);
string_enum!(
    OperationStatus { Pending = "pending", Running = "running", Succeeded = "succeeded", Failed = "failed" }
);

impl OperationStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, OperationStatus::Succeeded | OperationStatus::Failed)
    }
}

/// A machine-readable code and a human-readable message, as stored on a failed state or
/// operation and as returned to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

impl ErrorInfo {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The guest CPU as libvirt describes it (model and the features the guest was given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CpuInfo {
    /// CPU model name (`host-passthrough` / `host-model` when the domain uses those modes).
    pub model: Option<String>,
    pub vendor: Option<String>,
    /// Feature names the guest CPU requires.
    pub features: Vec<String>,
}

/// A saved state of an instance: the seed's `uuid`, `name`, `date`, and what snapgate adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct State {
    pub uuid: Uuid,
    pub name: String,
    /// Creation time, RFC 3339 UTC.
    pub date: DateTime<Utc>,
    pub instance_uuid: Uuid,
    /// Never sent; `default` lets a client (the CLI) decode the record it was given.
    #[serde(skip_serializing, default)]
    pub tenant_id: TenantId,
    pub status: StateStatus,
    pub description: Option<String>,
    /// The host the state was saved on.
    pub host: String,
    /// Memory plus disk delta, measured after the save.
    pub size_bytes: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub includes_memory: bool,
    /// One format per disk at save time, e.g. `["qcow2"]`.
    pub disk_formats: Vec<String>,
    pub cpu: Option<CpuInfo>,
    pub snapshot_kind: SnapshotKind,
    /// The state the instance was at when this one was saved, if known.
    pub parent: Option<Uuid>,
    pub error: Option<ErrorInfo>,
    pub updated_at: DateTime<Utc>,
    /// When the maintenance loop deletes the state, RFC 3339 UTC; `null`: kept until deleted.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The schedule that made the state; `null` for a state a user saved (retention never
    /// touches those).
    #[serde(default)]
    pub schedule_id: Option<Uuid>,
    /// The guest CPU definition as libvirt XML, used to compare against a target host on apply.
    #[serde(skip)]
    pub cpu_xml: Option<String>,
    /// The libvirt snapshot XML from the save, to define the snapshot again on the host an
    /// instance moved to. `None` for states saved before it was kept, or not saved yet.
    #[serde(skip)]
    pub snapshot_xml: Option<String>,
}

impl State {
    /// The libvirt snapshot name. It is always the state's uuid, never the user's name, so a
    /// name can never reach a file path or libvirt XML.
    pub fn snapshot_name(&self) -> String {
        self.uuid.to_string()
    }
}

/// A unit of long work (save, apply, delete), readable and waitable by clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    pub uuid: Uuid,
    pub kind: OperationKind,
    pub status: OperationStatus,
    pub instance_uuid: Uuid,
    pub state_uuid: Uuid,
    /// Never sent; `default` lets a client (the CLI) decode the record it was given.
    #[serde(skip_serializing, default)]
    pub tenant_id: TenantId,
    pub host: String,
    pub error: Option<ErrorInfo>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Bytes reserved against the tenant's quota for this operation (saves only).
    #[serde(skip)]
    pub reserved_bytes: i64,
    /// The generation of the operation's ownership: 0 for the gateway that started it, one
    /// more for each gateway that took it over after its heartbeat stopped. Every write about
    /// the operation names the epoch its writer holds and is refused (`RepoError::Fenced`)
    /// once another gateway holds a newer one.
    #[serde(skip)]
    pub lease_epoch: i64,
    /// The gateway holding the operation (`hostname/pid`), for logs.
    #[serde(skip)]
    pub lease_owner: Option<String>,
    /// How far the work is, from libvirt's job statistics sampled while it runs (saves and
    /// applies); `null` before the first sample, for deletes, and when libvirt reports no job.
    /// A client decodes a progress it cannot read as `null` (a gateway may send another shape).
    #[serde(default, deserialize_with = "lenient")]
    pub progress: Option<Progress>,
    /// Whether `DELETE /v1/operations/{id}` may cancel it: true only for a save not yet ended.
    #[serde(default)]
    pub may_cancel: bool,
    /// When a client first asked to cancel it (`DELETE /v1/operations/{id}`), RFC 3339 UTC. A
    /// save that ends `succeeded` with this set was cancelled too late (libvirt had finished).
    #[serde(default)]
    pub cancel_requested_at: Option<DateTime<Utc>>,
}

/// Decodes what it can, `None` for the rest.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

impl Operation {
    /// Sets [`Operation::may_cancel`] from the kind and status: call after either changes.
    pub fn with_may_cancel(mut self) -> Self {
        self.refresh_may_cancel();
        self
    }

    pub fn refresh_may_cancel(&mut self) {
        self.may_cancel = self.kind == OperationKind::Save && !self.status.is_finished();
    }
}

/// The phase names of [`Progress::phase`].
pub mod phase {
    /// QEMU copies the guest's memory (a live external save, or an internal snapshot's state).
    pub const MEMORY: &str = "memory";
    /// QEMU copies disk data (a job with disk statistics and its memory done).
    pub const DISKS: &str = "disks";
    /// libvirt's job ended but its call has not returned: it writes the snapshot's metadata
    /// and disk overlays.
    pub const FINISHING: &str = "finishing";
}

/// A sample of a running operation's libvirt job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// `memory`, `disks` or `finishing` (see `docs/API.md`).
    pub phase: String,
    /// Bytes libvirt has processed so far (memory plus disks; grows with every pass over
    /// memory the guest dirtied meanwhile).
    pub bytes_processed: i64,
    /// Bytes libvirt expects to process in all, when it says.
    pub bytes_total: Option<i64>,
    /// Percent done, 0 to 100: what is left of the total (`(total - remaining) / total`), at
    /// most 99 while libvirt's job runs.
    pub percent: Option<f64>,
    /// When this sample was taken, RFC 3339 UTC.
    pub updated_at: DateTime<Utc>,
}

impl Progress {
    /// Whether `other` says the same (the time aside): an unchanged sample is not written.
    pub fn same_as(&self, other: &Progress) -> bool {
        self.phase == other.phase
            && self.bytes_processed == other.bytes_processed
            && self.bytes_total == other.bytes_total
            && self.percent == other.percent
    }
}

/// One disk of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiskInfo {
    /// Target device, e.g. `vda`.
    pub target: String,
    /// Driver format, e.g. `qcow2` or `raw`; `None` when the domain does not say.
    pub format: Option<String>,
    /// Path of the backing file, if the disk is a file.
    #[serde(skip)]
    pub source: Option<String>,
    /// Virtual size in bytes, when known.
    pub size_bytes: Option<i64>,
}

/// What the compute backend knows of an instance (a libvirt domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Instance {
    pub uuid: Uuid,
    pub name: String,
    pub host: String,
    pub running: bool,
    pub memory_bytes: i64,
    pub vcpus: u32,
    pub disks: Vec<DiskInfo>,
    /// True when the domain has PCI/USB/mediated host devices, which cannot be snapshotted live.
    pub has_host_devices: bool,
    /// Owner read from the domain metadata (Nova's or snapgate's namespace), if any.
    pub owner_tenant: Option<TenantId>,
    pub cpu: CpuInfo,
    #[serde(skip)]
    pub cpu_xml: Option<String>,
    /// Name of libvirt's current snapshot of the domain, if any.
    #[serde(skip)]
    pub current_snapshot: Option<String>,
}

/// How a state is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SaveMode {
    /// Internal snapshots; every disk must be qcow2.
    Internal,
    /// External snapshots: a memory file plus a disk overlay per disk.
    External,
    /// External (a live save: the guest runs while its memory is copied, so it pauses the
    /// least), unless the instance keeps internal states: libvirt does not mix the kinds on
    /// one domain, so `auto` follows the kind of the states it has.
    Auto,
}

/// libvirt's verdict comparing a saved guest CPU with a host (`virConnectCompareHypervisorCPU`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CpuCompatibility {
    Identical,
    Superset,
    Incompatible,
    Unknown,
}
