//! libvirtd as a process: tests that prove the gateway survives its death kill it and bring
//! it back. QEMU guests run on independently of libvirtd.

use std::path::Path;
use std::process::Command;

use std::sync::atomic::{AtomicBool, Ordering};

use super::hosts::SECOND_HOST_USER;
use super::{Guest, Hypervisor, RealVmEnv, RealVmError};

/// The pid of the running system `libvirtd` (root's; zombies do not count), `None` when it
/// does not run. The second test host's session daemon runs as another user and is not it.
pub fn libvirtd_pid() -> Result<Option<u32>, RealVmError> {
    libvirtd_pid_of("0")
}

/// The pid of the libvirtd that `user` (a name or uid) runs.
pub(crate) fn libvirtd_pid_of(user: &str) -> Result<Option<u32>, RealVmError> {
    let output = Command::new("pgrep")
        .args(["-u", user, "-x", "libvirtd"])
        .output()
        .map_err(RealVmError::io("running pgrep"))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .find(|&pid| process_alive(pid)))
}

/// `kill -9` the running libvirtd (by pid) and waits until it is gone. Returns the pid.
pub fn kill9_libvirtd() -> Result<u32, RealVmError> {
    let pid = libvirtd_pid()?.ok_or_else(|| {
        RealVmError::EnvUnusable("libvirtd is not running, nothing to kill".into())
    })?;
    kill9(pid)?;
    Ok(pid)
}

/// Restarts libvirtd (and virtlogd) through `scripts/realvm/libvirtd-up.sh` and waits until
/// `qemu:///system` answers again.
pub fn restart_libvirtd() -> Result<(), RealVmError> {
    let env = RealVmEnv::ensure()?;
    // The script's `pgrep` also sees an unreaped zombie of the killed daemon and would then
    // wait for a libvirtd that never comes: start it here when no live one runs.
    if libvirtd_pid()?.is_none() {
        let status = Command::new("libvirtd")
            .arg("-d")
            .status()
            .map_err(RealVmError::io("starting libvirtd"))?;
        if !status.success() {
            return Err(RealVmError::EnvUnusable(format!(
                "libvirtd -d failed ({status})"
            )));
        }
    }
    env.libvirtd_up()
}

/// Whether a process with that pid runs (exists and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn kill9(pid: u32) -> Result<(), RealVmError> {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .map_err(RealVmError::io("running kill"))?;
    if !status.success() {
        return Err(RealVmError::EnvUnusable(format!(
            "kill -9 {pid} failed ({status})"
        )));
    }
    // A killed process may linger as a zombie until its parent reaps it: that counts as gone.
    for _ in 0..100 {
        if !process_alive(pid) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(RealVmError::EnvUnusable(format!(
        "process {pid} survived kill -9"
    )))
}

impl Guest {
    /// The pid of the guest's QEMU process, from libvirt's pid file.
    pub fn qemu_pid(&self) -> Result<u32, RealVmError> {
        let dir = match self.host() {
            Hypervisor::System => Path::new("/run/libvirt/qemu").to_path_buf(),
            Hypervisor::Second => super::hosts::second_host()?
                .runtime_dir
                .join("libvirt/qemu/run"),
        };
        let path = dir.join(format!("{}.pid", self.name()));
        let text = std::fs::read_to_string(&path)
            .map_err(RealVmError::io(format!("reading {}", path.display())))?;
        text.trim().parse().map_err(|_| {
            RealVmError::EnvUnusable(format!("{} holds no pid: {text:?}", path.display()))
        })
    }
}

/// Tests of one machine run in parallel (nextest runs each in its own process). A test that
/// stops a host's libvirtd holds that host's lock exclusively; every [`Guest`] holds its
/// host's lock shared while it lives, so no other harness guest there is mid-test while the
/// daemon is down. Each host has its own lock: stopping the second host does not wait for
/// guests on the system daemon.
fn outage_lock_path(host: Hypervisor) -> &'static str {
    match host {
        Hypervisor::System => "/run/snapgate-libvirtd-outage.lock",
        Hypervisor::Second => "/run/snapgate-second-host-outage.lock",
    }
}

static EXCLUSIVE_HELD: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

fn held(host: Hypervisor) -> &'static AtomicBool {
    &EXCLUSIVE_HELD[host as usize]
}

/// Held while a test may kill a libvirtd; released on drop.
#[derive(Debug)]
pub struct LibvirtdOutageLock {
    host: Hypervisor,
    _file: std::fs::File,
}

impl LibvirtdOutageLock {
    /// For the system daemon: waits until no other process's guest lives there, then keeps
    /// others from booting there until drop. Guests this process boots meanwhile do not wait.
    pub fn acquire() -> Result<LibvirtdOutageLock, RealVmError> {
        LibvirtdOutageLock::acquire_for(Hypervisor::System)
    }

    /// [`LibvirtdOutageLock::acquire`] for any host.
    pub fn acquire_for(host: Hypervisor) -> Result<LibvirtdOutageLock, RealVmError> {
        let file = open_lock(host)?;
        file.lock().map_err(RealVmError::io(format!(
            "locking {}",
            outage_lock_path(host)
        )))?;
        held(host).store(true, Ordering::SeqCst);
        Ok(LibvirtdOutageLock { host, _file: file })
    }
}

impl Drop for LibvirtdOutageLock {
    fn drop(&mut self) {
        held(self.host).store(false, Ordering::SeqCst);
    }
}

/// The shared side, taken by each guest; `None` when this process holds the exclusive lock.
pub(crate) fn guest_lock(host: Hypervisor) -> Result<Option<std::fs::File>, RealVmError> {
    if held(host).load(Ordering::SeqCst) {
        return Ok(None);
    }
    let file = open_lock(host)?;
    file.lock_shared().map_err(RealVmError::io(format!(
        "locking {} shared",
        outage_lock_path(host)
    )))?;
    Ok(Some(file))
}

fn open_lock(host: Hypervisor) -> Result<std::fs::File, RealVmError> {
    let path = outage_lock_path(host);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(RealVmError::io(format!("opening {path}")))
}

/// Stops the second host's libvirtd (`kill -9` by pid: the host becomes unreachable at
/// once; its QEMU guests run on). Returns the pid. Hold
/// `LibvirtdOutageLock::acquire_for(Hypervisor::Second)`.
pub fn stop_second_host() -> Result<u32, RealVmError> {
    let pid = libvirtd_pid_of(SECOND_HOST_USER)?.ok_or_else(|| {
        RealVmError::EnvUnusable("the second host's libvirtd is not running".into())
    })?;
    kill9(pid)?;
    Ok(pid)
}

/// Starts the second host's libvirtd again and waits until it answers.
pub fn start_second_host() -> Result<(), RealVmError> {
    RealVmEnv::ensure()?.second_host_up().map(|_| ())
}
