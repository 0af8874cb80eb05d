//! Many compute hosts for one gateway: node files with distinct instances per host, a proxy
//! that makes a host hang and come back, and reading per-host metrics.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::app::many_uuid;

/// The system libvirtd's socket; it serves the test driver too (`test+unix:///…`), which lets
/// a test reach a test-driver host through a socket it controls.
pub const LIBVIRTD_SOCKET: &str = "/var/run/libvirt/libvirt-sock";

/// Makes sure the system libvirtd serves [`LIBVIRTD_SOCKET`] for the rest of this test process:
/// takes the shared side of the libvirtd-outage lock (the real-VM suite kills libvirtd on
/// purpose in one test, holding it exclusively), then starts the daemon if it is down. Fails
/// the test, never skips it, when libvirtd cannot be started.
pub fn system_libvirtd() {
    static HELD: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    HELD.get_or_init(|| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/snapgate-libvirtd-outage.lock")
            .expect("open the libvirtd outage lock");
        file.lock_shared().expect("lock the libvirtd outage lock");
        file
    });
    let script = crate::app::repo_root().join("scripts/realvm/libvirtd-up.sh");
    let out = std::process::Command::new(&script)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}): {}{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a test-driver node file with instances `first .. first + n` (uuids from
/// [`many_uuid`], running, qcow2, owned by `tenant`) and returns its path.
pub fn instances_node_file(dir: &Path, first: usize, n: usize, tenant: &str) -> PathBuf {
    let mut xml = String::from("<node>\n<cpu><mhz>2400</mhz><model>x86_64</model><active>8</active><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>2</threads></cpu>\n<memory>67108864</memory>\n");
    for i in first..first + n {
        xml.push_str(&test_domain_xml(&format!("vm-{i}"), &many_uuid(i), tenant));
        xml.push('\n');
    }
    xml.push_str("</node>\n");
    let path = dir.join(format!("node-{first}-{n}.xml"));
    std::fs::write(&path, xml).unwrap();
    path
}

/// A test-driver domain: 256 MiB, one qcow2 disk, owned by `tenant` (snapgate's owner
/// metadata).
pub fn test_domain_xml(name: &str, uuid: &str, tenant: &str) -> String {
    format!(
        "<domain type='test'><name>{name}</name><uuid>{uuid}</uuid><metadata><snapgate:owner xmlns:snapgate='https://snapgate.dev/xmlns/owner/1.0' tenant='{tenant}'/></metadata>\
         <memory unit='MiB'>256</memory><currentMemory unit='MiB'>256</currentMemory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>\
         <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/snapgate-test/{name}.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>"
    )
}

/// `count` hosts named `h0`, `h1`…, host `k` holding instances `k·per_host ..` (local
/// test-driver URIs).
pub fn test_hosts(
    dir: &Path,
    count: usize,
    per_host: usize,
    tenant: &str,
) -> Vec<(String, String)> {
    (0..count)
        .map(|k| {
            let file = instances_node_file(dir, k * per_host, per_host, tenant);
            (format!("h{k}"), format!("test://{}", file.display()))
        })
        .collect()
}

/// Sum of the samples of metric `name` whose labels include every `(key, value)` of `labels`,
/// in a Prometheus text page.
pub fn metric_sum(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// libvirt's RPC: every message is framed by a 4-byte big-endian length (itself included),
/// then a header of program, version, procedure, type, serial and status (`virnetprotocol.x`).
const REMOTE_PROGRAM: u32 = 0x2000_8086;
const MESSAGE_CALL: u32 = 0;
/// `REMOTE_PROC_DOMAIN_SNAPSHOT_CREATE_XML` (`remote_protocol.x`): the call that makes a
/// snapshot, i.e. the libvirt part of a save.
pub const SNAPSHOT_CREATE_CALL: u32 = 185;

/// A unix-socket proxy in front of libvirtd: while it forwards, a host behind it is up; frozen,
/// it keeps every connection open and passes nothing (a host that hangs, the hard case);
/// thawed, the host is back. It can also hold the calls of one libvirt procedure while
/// everything else passes (a call that libvirtd has not received yet, however long it waits).
pub struct HostProxy {
    pub socket: PathBuf,
    frozen: watch::Sender<bool>,
    /// The procedure whose calls are held, while one is.
    hold: watch::Sender<Option<u32>>,
    held: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HostProxy {
    pub fn start(socket: &Path, upstream: &Path) -> HostProxy {
        let listener = UnixListener::bind(socket).expect("bind the proxy socket");
        let (frozen, watcher) = watch::channel(false);
        let (hold, hold_watcher) = watch::channel(None);
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let (count, upstream, held_count) =
            (accepted.clone(), upstream.to_path_buf(), held.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (upstream, watcher) = (upstream.clone(), watcher.clone());
                let (hold, held) = (hold_watcher.clone(), held_count.clone());
                tokio::spawn(async move {
                    let Ok(server) = UnixStream::connect(&upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(
                        forward_calls(cr, sw, watcher.clone(), hold, held),
                        pipe(sr, cw, watcher)
                    );
                });
            }
        });
        HostProxy {
            socket: socket.to_path_buf(),
            frozen,
            hold,
            held,
            accepted,
            task,
        }
    }

    /// The libvirt URI of a test-driver `node` file reached through this proxy. With
    /// `/default` it is libvirtd's default test driver, whose state (domains, snapshots) every
    /// connection shares while one is open; a node file's state is private to its connection.
    pub fn uri(&self, node: &Path) -> String {
        format!(
            "test+unix://{}?socket={}",
            node.display(),
            self.socket.display()
        )
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// From now on, holds every call of libvirt procedure `procedure` (e.g.
    /// [`SNAPSHOT_CREATE_CALL`]) a client sends, unanswered and unseen by libvirtd, while
    /// everything else on the connection passes (keepalives, other calls).
    pub fn hold_calls(&self, procedure: u32) {
        self.hold.send_replace(Some(procedure));
    }

    /// Sends the held calls on to libvirtd and holds no more.
    pub fn release_calls(&self) {
        self.hold.send_replace(None);
    }

    /// Calls held right now.
    pub fn held_calls(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HostProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes one way, holding them while the proxy is frozen.
async fn pipe(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Copies a client's messages to libvirtd one by one, holding them while the proxy is frozen,
/// and putting aside the calls of the procedure being held until they are released.
async fn forward_calls(
    from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
    mut hold: watch::Receiver<Option<u32>>,
    held_count: Arc<AtomicUsize>,
) {
    // Read in a task of its own: a read cut off by `select!` would lose part of a message.
    let (tx, mut messages) = tokio::sync::mpsc::channel(64);
    let reader = tokio::spawn(read_messages(from, tx));
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        tokio::select! {
            message = messages.recv() => {
                let Some(message) = message else { break };
                if frozen.wait_for(|f| !*f).await.is_err() {
                    break;
                }
                let holding = *hold.borrow_and_update();
                if holding.is_some() && holding == call_procedure(&message) {
                    held.push(message);
                    held_count.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                if to.write_all(&message).await.is_err() {
                    break;
                }
            }
            changed = hold.changed(), if !held.is_empty() => {
                if changed.is_err() {
                    break;
                }
                if hold.borrow_and_update().is_none() {
                    for message in held.drain(..) {
                        held_count.fetch_sub(1, Ordering::SeqCst);
                        if to.write_all(&message).await.is_err() {
                            reader.abort();
                            return;
                        }
                    }
                }
            }
        }
    }
    held_count.fetch_sub(held.len(), Ordering::SeqCst);
    reader.abort();
}

async fn read_messages(
    mut from: tokio::net::unix::OwnedReadHalf,
    to: tokio::sync::mpsc::Sender<Vec<u8>>,
) {
    loop {
        let mut length = [0u8; 4];
        if from.read_exact(&mut length).await.is_err() {
            return;
        }
        let n = u32::from_be_bytes(length) as usize;
        if n < 4 {
            return;
        }
        let mut message = vec![0u8; n];
        message[..4].copy_from_slice(&length);
        if from.read_exact(&mut message[4..]).await.is_err() || to.send(message).await.is_err() {
            return;
        }
    }
}

/// The procedure of a call of libvirt's remote program; `None` for anything else.
fn call_procedure(message: &[u8]) -> Option<u32> {
    let word = |at: usize| {
        message
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    (word(4)? == REMOTE_PROGRAM && word(16)? == MESSAGE_CALL)
        .then(|| word(12))
        .flatten()
}
