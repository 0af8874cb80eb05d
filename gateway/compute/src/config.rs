//! Configuration of the libvirt backend: which hosts, and where each keeps its state files.

use std::path::PathBuf;

/// Where a host keeps the files of external states when its configuration names no
/// directory. A path on the host, not on the gateway's machine: the gateway reaches it only
/// through libvirt (a storage pool over that directory).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/libvirt/snapgate";

/// One compute host: a name the service uses, the libvirt URI that reaches it and the
/// directory, on that host, for the files of its external states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub name: String,
    /// e.g. `qemu:///system`, `qemu+ssh://node1/system`, `test:///default`.
    pub uri: String,
    /// Absolute path on the host. External states write `<name>.memory` and one
    /// `<name>.<disk>.qcow2` overlay per disk there; libvirt creates, measures and removes
    /// them (snapshot XML, snapshot delete, a `dir` storage pool over this directory).
    pub state_dir: PathBuf,
}

impl HostConfig {
    /// A host whose state files go to [`DEFAULT_STATE_DIR`].
    pub fn new(name: impl Into<String>, uri: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            uri: uri.into(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }

    pub fn with_state_dir(mut self, state_dir: impl Into<PathBuf>) -> Self {
        self.state_dir = state_dir.into();
        self
    }
}

/// Options shared by every host. Which kind of snapshot a save makes is the service's
/// decision (`snapshots.mode`); the backend makes the kind it is asked for.
#[derive(Debug, Clone, Default)]
pub struct LibvirtOptions {}
