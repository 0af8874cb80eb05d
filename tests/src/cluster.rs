//! The loopback Redis Cluster of the scale-out tests (three masters, three replicas on ports
//! 7000-7005, started by `scripts/ensure-redis-cluster.sh`), and what the tests do to it: find
//! the master of a tenant's slot, freeze or kill nodes, wait for a failover.
//!
//! Tests that use the cluster hold [`ClusterLock`] for their whole run: one of them kills a
//! master, which must not land in the middle of another's exact count.

use std::fs::File;
use std::process::Command;
use std::time::Duration;

use crate::app::repo_root;

pub const PORTS: [u16; 6] = [7000, 7001, 7002, 7003, 7004, 7005];

/// The `[redis] url` of a gateway on the cluster: every node as a seed.
pub fn seed_urls() -> String {
    PORTS
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Exclusive use of the cluster, across test processes (a file lock, released on drop).
pub struct ClusterLock {
    _file: File,
}

impl ClusterLock {
    /// Takes the lock and makes sure all six nodes run and the cluster is healthy.
    pub fn acquire() -> ClusterLock {
        let file = File::create(std::env::temp_dir().join("snapgate-redis-cluster-tests.lock"))
            .expect("open the cluster test lock");
        file.lock().expect("lock the cluster test lock");
        ensure();
        ClusterLock { _file: file }
    }
}

/// Starts whatever node is down and waits until the cluster is whole again.
pub fn ensure() {
    let status = Command::new(repo_root().join("scripts/ensure-redis-cluster.sh"))
        .status()
        .expect("run scripts/ensure-redis-cluster.sh");
    assert!(status.success(), "the Redis Cluster could not be started");
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub port: u16,
    pub master: bool,
    pub failed: bool,
    /// The master's id, for a replica.
    pub master_id: Option<String>,
    pub slots: Vec<(u16, u16)>,
}

/// The cluster as a live node sees it.
pub fn nodes() -> Vec<Node> {
    let text = PORTS
        .iter()
        .find_map(|p| cli(*p, &["cluster", "nodes"]).filter(|t| !t.trim().is_empty()))
        .expect("no cluster node answers");
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = f.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|x| (x, x)),
                })
                .collect();
            Some(Node {
                id: f[0].to_owned(),
                port,
                master: f[2].contains("master"),
                failed: f[2].contains("fail") && !f[2].contains("fail?"),
                master_id: (f[3] != "-").then(|| f[3].to_owned()),
                slots,
            })
        })
        .collect()
}

/// The hash slot of a key (of a tenant's hash tag).
pub fn slot_of(key: &str) -> u16 {
    cli(7000, &["cluster", "keyslot", key])
        .or_else(|| cli(7001, &["cluster", "keyslot", key]))
        .expect("cluster keyslot")
        .trim()
        .parse()
        .expect("a slot number")
}

/// The live master serving `slot`, if any.
pub fn master_of(slot: u16) -> Option<Node> {
    nodes()
        .into_iter()
        .find(|n| n.master && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
}

/// The replica of a master.
pub fn replica_of(master: &Node) -> Node {
    nodes()
        .into_iter()
        .find(|n| n.master_id.as_deref() == Some(master.id.as_str()))
        .unwrap_or_else(|| panic!("master {} has no replica", master.port))
}

/// The process id of the node on `port`.
pub fn pid(port: u16) -> u32 {
    let info = cli(port, &["info", "server"]).expect("info server");
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("process_id in INFO server")
}

/// Closes the replication links of the master on `port` (`CLIENT KILL TYPE replica`).
pub fn disconnect_replicas(port: u16) {
    cli(port, &["client", "kill", "type", "replica"]).expect("client kill type replica");
}

/// Sends `signal` (`-STOP`, `-CONT`, `-9`) to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Waits until the node with `id` is a master serving `slot` (a replica's promotion).
pub async fn wait_until_master(id: &str, slot: u16) {
    for _ in 0..600 {
        if master_of(slot).is_some_and(|m| m.id == id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node {id} did not take over slot {slot}: {:#?}", nodes());
}
