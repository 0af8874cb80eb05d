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
        xml.push_str(&format!(
            "<domain type='test'><name>vm-{i}</name><uuid>{}</uuid><metadata><snapgate:owner xmlns:snapgate='https://snapgate.dev/xmlns/owner/1.0' tenant='{tenant}'/></metadata>\
             <memory unit='MiB'>256</memory><currentMemory unit='MiB'>256</currentMemory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>\
             <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/snapgate-test/vm-{i}.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>\n",
            many_uuid(i)
        ));
    }
    xml.push_str("</node>\n");
    let path = dir.join(format!("node-{first}-{n}.xml"));
    std::fs::write(&path, xml).unwrap();
    path
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

/// A unix-socket proxy in front of libvirtd: while it forwards, a host behind it is up; frozen,
/// it keeps every connection open and passes nothing (a host that hangs, the hard case);
/// thawed, the host is back.
pub struct HostProxy {
    pub socket: PathBuf,
    frozen: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HostProxy {
    pub fn start(socket: &Path, upstream: &Path) -> HostProxy {
        let listener = UnixListener::bind(socket).expect("bind the proxy socket");
        let (frozen, watcher) = watch::channel(false);
        let accepted = Arc::new(AtomicUsize::new(0));
        let (count, upstream) = (accepted.clone(), upstream.to_path_buf());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (upstream, watcher) = (upstream.clone(), watcher.clone());
                tokio::spawn(async move {
                    let Ok(server) = UnixStream::connect(&upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, watcher.clone()), pipe(sr, cw, watcher));
                });
            }
        });
        HostProxy {
            socket: socket.to_path_buf(),
            frozen,
            accepted,
            task,
        }
    }

    /// The libvirt URI of a test-driver `node` file reached through this proxy.
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
