//! Configuration of the libvirt backend: which hosts, and how states are saved.

use std::path::PathBuf;

use snapgate_core::{Instance, SaveMode, SnapshotKind};

/// One compute host: a name the service uses and the libvirt URI that reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub name: String,
    /// e.g. `qemu:///system`, `qemu+ssh://node1/system`, `test:///default`.
    pub uri: String,
}

impl HostConfig {
    pub fn new(name: impl Into<String>, uri: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            uri: uri.into(),
        }
    }
}

/// Options shared by every host.
#[derive(Debug, Clone)]
pub struct LibvirtOptions {
    /// How to save when the caller has no preference; see [`LibvirtOptions::kind_for`].
    pub default_mode: SaveMode,
    /// Root of the per-state directories of external snapshots (`STATE_DIR/<name>/…`). Files
    /// are only ever deleted inside directories this backend made there.
    pub state_dir: PathBuf,
}

impl LibvirtOptions {
    pub fn new(default_mode: SaveMode, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            default_mode,
            state_dir: state_dir.into(),
        }
    }

    /// The snapshot kind `default_mode` gives for this instance: `Auto` picks internal when
    /// every disk is qcow2 (one file per disk, nothing to clean up), external otherwise.
    pub fn kind_for(&self, instance: &Instance) -> SnapshotKind {
        resolve_mode(self.default_mode, instance)
    }
}

/// Resolves a [`SaveMode`] for an instance.
pub fn resolve_mode(mode: SaveMode, instance: &Instance) -> SnapshotKind {
    match mode {
        SaveMode::Internal => SnapshotKind::Internal,
        SaveMode::External => SnapshotKind::External,
        SaveMode::Auto
            if instance
                .disks
                .iter()
                .all(|d| d.format.as_deref() == Some("qcow2")) =>
        {
            SnapshotKind::Internal
        }
        SaveMode::Auto => SnapshotKind::External,
    }
}

/// Whether the URI names a hypervisor on this machine, so that file paths libvirt reports
/// (memory files, overlays) are paths we can stat and remove. `qemu:///system` and
/// `test:///…` are local; `qemu+ssh://node1/system` is not.
pub(crate) fn is_local_uri(uri: &str) -> bool {
    match uri.split_once("://") {
        Some((_, rest)) => rest.starts_with('/') || rest.is_empty(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_uris() {
        assert!(is_local_uri("qemu:///system"));
        assert!(is_local_uri("test:///default"));
        assert!(is_local_uri("test:///work/main/deploy/demo-node.xml"));
        assert!(!is_local_uri("qemu+ssh://node1/system"));
        assert!(!is_local_uri("qemu+tcp://10.0.0.2/system"));
    }
}
