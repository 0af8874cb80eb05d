//! Configuration of the libvirt backend: which hosts, and how states are saved.

use std::path::PathBuf;

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

/// Options shared by every host. Which kind of snapshot a save makes is the service's
/// decision (`snapshots.mode`); the backend makes the kind it is asked for.
#[derive(Debug, Clone)]
pub struct LibvirtOptions {
    /// Root of the per-state directories of external snapshots (`STATE_DIR/<name>/…`). Files
    /// are only ever deleted inside directories this backend made there.
    pub state_dir: PathBuf,
}

impl LibvirtOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
        }
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
