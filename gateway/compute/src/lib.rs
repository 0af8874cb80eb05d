//! snapgate-compute: the libvirt [`ComputeBackend`](snapgate_core::ports::ComputeBackend).
//!
//! - One connection per configured host, opened on first use within a connect timeout, kept,
//!   watched by libvirt keepalive and a close callback, and reopened when `is_alive()` says it
//!   dropped or a call fails with a connection error.
//! - A circuit breaker per host (`breaker.rs`): a host that is down is refused at once and
//!   reconnected in the background, so it costs only its own instances.
//! - Lifecycle events and inventories (`inventory.rs`) feed the service's placement index.
//! - Every libvirt call runs in `tokio::task::spawn_blocking`; async workers never block.
//! - Internal snapshots (`<memory snapshot='internal'/>`, qcow2 disks only) and external ones
//!   (`STATE_DIR/<name>.memory` plus one `STATE_DIR/<name>.<disk>.qcow2` overlay per disk, in
//!   the host's own state directory; every such file is made, measured and removed through
//!   libvirt, never the gateway's filesystem: see `files.rs`).
//! - A snapshot the instance's host lacks (the instance moved, or was redefined) is defined
//!   again from the XML libvirt gave at save time (`VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE`).
//! - libvirt errors map to `HostUnreachable` (connection), `InstanceNotFound`,
//!   `SnapshotNotFound`, and `Backend` with libvirt's text for the rest.
//! - CPU checks before a restore ask the hypervisor, for the domain's own type (`qemu` for
//!   TCG, `kvm`), through `virConnectCompareHypervisorCPU` in `ffi.rs`, the crate's only
//!   `unsafe` code.
//!
//! `deploy/demo-node.xml` is a libvirt test-driver node that describes a small demo cloud.

mod backend;
mod blocking;
mod breaker;
mod checks;
mod config;
mod connection;
mod diagnose;
mod downtime;
mod errors;
mod events;
mod ffi;
mod files;
mod inventory;
pub mod xml;

pub use backend::LibvirtBackend;
pub use checks::check_snapshot_support;
pub use config::{HostConfig, HostResilience, LibvirtOptions, DEFAULT_STATE_DIR};
pub use diagnose::HostDiagnosis;
