//! One compute host that several gateways share: the system libvirtd's default test driver
//! (`test+unix:///default`). Unlike a node file, whose state each connection gets a private
//! copy of, the default driver's domains and snapshots are one state that every connection
//! sees, for as long as one connection is open. This keeps one open (a `virsh` shell) and
//! asks `virsh` what the host holds.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::hosts::{system_libvirtd, test_domain_xml, LIBVIRTD_SOCKET};

/// The libvirt URI of the shared default test driver through the unix socket `socket` (the
/// system libvirtd's, or a [`crate::hosts::HostProxy`] in front of it).
pub fn shared_driver_uri(socket: &Path) -> String {
    format!("test+unix:///default?socket={}", socket.display())
}

pub struct SharedDriver {
    uri: String,
    /// The connection that keeps the driver's state alive (libvirtd frees it with the last one).
    _shell: Child,
    _stdin: ChildStdin,
    /// Kept open: the shell writes a prompt after each command, and a closed pipe would kill
    /// it (SIGPIPE), and with it the state.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl SharedDriver {
    /// Makes sure libvirtd runs and opens the connection that keeps the state.
    pub async fn open() -> SharedDriver {
        system_libvirtd();
        let uri = shared_driver_uri(Path::new(LIBVIRTD_SOCKET));
        let mut shell = Command::new("virsh")
            .args(["-q", "-c", &uri])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start a virsh shell");
        let mut stdin = shell.stdin.take().unwrap();
        // The shell answers `uri` once it is connected.
        stdin.write_all(b"uri\n").await.unwrap();
        let mut lines = BufReader::new(shell.stdout.take().unwrap()).lines();
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the virsh shell connects to libvirtd's default test driver");
            if line.contains("test+unix") {
                break;
            }
        }
        SharedDriver {
            uri,
            _shell: shell,
            _stdin: stdin,
            _stdout: lines,
        }
    }

    /// Defines and starts a domain (see [`test_domain_xml`]) owned by `tenant`.
    pub async fn running_domain(&self, dir: &Path, name: &str, uuid: &str, tenant: &str) {
        let file = dir.join(format!("{name}.xml"));
        std::fs::write(&file, test_domain_xml(name, uuid, tenant)).unwrap();
        self.virsh(&["define", &file.display().to_string()]).await;
        self.virsh(&["start", name]).await;
    }

    /// The names of the domain's snapshots.
    pub async fn snapshots(&self, domain: &str) -> Vec<String> {
        self.virsh(&["snapshot-list", domain, "--name"])
            .await
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    async fn virsh(&self, args: &[&str]) -> String {
        let out = Command::new("virsh")
            .args(["-q", "-c", &self.uri])
            .args(args)
            .output()
            .await
            .expect("run virsh");
        assert!(
            out.status.success(),
            "virsh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}
