//! Configuration of the libvirt backend: which hosts, and where each keeps its state files.

use std::path::PathBuf;
use std::time::Duration;

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
pub struct LibvirtOptions {
    /// Timeouts, keepalive and circuit breaker of every host.
    pub resilience: HostResilience,
}

impl LibvirtOptions {
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
