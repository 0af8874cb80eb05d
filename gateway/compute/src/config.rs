//! Configuration of the libvirt backend: which hosts, and how states are saved.

use std::path::PathBuf;
use std::time::Duration;

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
    /// Timeouts, keepalive and circuit breaker of every host.
    pub resilience: HostResilience,
}

impl LibvirtOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            resilience: HostResilience::default(),
        }
    }

    pub fn with_resilience(mut self, resilience: HostResilience) -> Self {
        self.resilience = resilience;
        self
    }
}

/// How the backend lives with hosts that fail, so that a host that is down costs only its own
/// instances: bounded waits, libvirt keepalive, and a circuit breaker per host that refuses
/// calls at once while the host is known down and reconnects in the background.
#[derive(Debug, Clone, PartialEq)]
pub struct HostResilience {
    /// How long opening a connection may take (libvirt itself has no bound: a host that
    /// accepts and never answers would hold the caller forever).
    pub connect_timeout: Duration,
    /// How long a read call (describe, listing, CPU, ping) may take before the host is judged
    /// down. Snapshot calls (save, apply, delete) are not bounded by it: they legitimately take
    /// minutes, and keepalive still ends them when the host stops answering.
    pub call_timeout: Duration,
    /// libvirt keepalive (`virConnectSetKeepAlive`): a probe every `keepalive_interval` when the
    /// connection is idle; after `keepalive_count` unanswered probes libvirt closes the
    /// connection and the breaker opens. A zero interval turns keepalive off.
    pub keepalive_interval: Duration,
    pub keepalive_count: u32,
    /// Background reconnection of a host that is down: first after `reconnect_min`, then
    /// doubling up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Hosts asked at once when an instance is searched for on every host.
    pub search_fan_out: usize,
}

impl Default for HostResilience {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(5),
            keepalive_count: 3,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            search_fan_out: 32,
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
