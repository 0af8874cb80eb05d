//! A real HAProxy (the Debian package) in front of test gateways, configured from
//! `deploy/haproxy/snapgate.cfg.template` (the file `docs/DEPLOY.md` documents), and its stats
//! socket to see which gateways it holds UP or DOWN.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::app::{free_port, repo_root, TestApp};

pub struct HaProxy {
    pub url: String,
    socket: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl HaProxy {
    /// Starts HAProxy over `gateways` (servers `gw1`, `gw2`, … in that order) and waits until
    /// it holds every one of them UP.
    pub async fn start(gateways: &[&TestApp]) -> HaProxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let socket = dir.path().join("stats.sock");
        let servers: String = gateways
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let addr = g.url.trim_start_matches("http://");
                format!("    server gw{} {addr} check\n", i + 1)
            })
            .collect();
        let template =
            std::fs::read_to_string(repo_root().join("deploy/haproxy/snapgate.cfg.template"))
                .expect("deploy/haproxy/snapgate.cfg.template");
        let config = template
            .replace("{{BIND}}", &format!("127.0.0.1:{port}"))
            .replace("{{STATS_SOCKET}}", &socket.display().to_string())
            .replace("{{SERVERS}}\n", &servers);
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start haproxy (Debian package haproxy, scripts/install-deps.sh)");
        let proxy = HaProxy {
            url: format!("http://127.0.0.1:{port}"),
            socket,
            child,
            _dir: dir,
        };
        for i in 1..=gateways.len() {
            proxy.wait_status(&format!("gw{i}"), "UP").await;
        }
        proxy
    }

    /// `status` of every server of the backend, from the stats socket (`show stat` CSV).
    pub fn statuses(&self) -> Vec<(String, String)> {
        let Ok(mut stream) = UnixStream::connect(&self.socket) else {
            return Vec::new();
        };
        stream.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        stream.read_to_string(&mut csv).unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            return Vec::new();
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| {
                f.get(px) == Some(&"gateways") && f.get(sv).is_some_and(|s| s.starts_with("gw"))
            })
            .map(|f| (f[sv].to_owned(), f[st].to_owned()))
            .collect()
    }

    pub fn status(&self, server: &str) -> Option<String> {
        self.statuses()
            .into_iter()
            .find(|(s, _)| s == server)
            .map(|(_, st)| st)
    }

    /// Waits until HAProxy reports `server` in `status` (`UP`, `DOWN`).
    pub async fn wait_status(&self, server: &str, status: &str) {
        for _ in 0..1200 {
            if self.status(server).as_deref() == Some(status) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "haproxy never reported {server} {status}: {:?}",
            self.statuses()
        );
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
