//! The real-hypervisor harness: tiny guests whose RAM state is visible, on two independent
//! libvirt hosts of this machine: `qemu:///system` and a second host, the session daemon of
//! an unprivileged user reached through a remote URI (see `hosts.rs`).
//!
//! Each [`Guest`] runs a Debian cloud kernel and a busybox initramfs whose `init` prints
//! `snapgate-counter N` to the serial console every half second. The counter lives in guest
//! RAM, so after reverting a snapshot with memory the console shows the counter going back to
//! the saved value: proof that RAM, not only the disk, was restored.
//!
//! [`RealVmEnv::ensure`] prepares the machine once per process (starts libvirtd, builds or
//! reuses the cached guest, removes leftovers of killed test processes). It fails, never
//! skips, when the machine cannot run guests. Guests clean up after themselves on `Drop`,
//! also when a test panics.
//!
//! Needs root and the packages from `scripts/install-deps.sh`. Guests run under TCG
//! (`<domain type='qemu'>`): KVM does not work on these machines.

mod console;
mod daemon;
mod env;
mod error;
mod guest;
mod hosts;
mod snapshot;
mod virsh;
mod xml;

pub use console::ConsoleMark;
pub use daemon::{
    kill9_libvirtd, libvirtd_pid, process_alive, restart_libvirtd, start_second_host,
    stop_second_host, LibvirtdOutageLock,
};
pub use env::RealVmEnv;
pub use error::RealVmError;
pub use guest::{DiskKind, Guest, DEFAULT_MEMORY_MIB};
pub use hosts::Hypervisor;
pub use snapshot::ExternalSnapshotFiles;
pub use virsh::{virsh, virsh_at, LIBVIRT_URI};
