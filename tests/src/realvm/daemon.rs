//! libvirtd as a process: tests that prove the gateway survives its death kill it and bring
//! it back. QEMU guests run on independently of libvirtd.

use std::path::Path;
use std::process::Command;

use super::{Guest, RealVmEnv, RealVmError};

/// The pid of the running `libvirtd` (zombies do not count), `None` when it does not run.
pub fn libvirtd_pid() -> Result<Option<u32>, RealVmError> {
    let output = Command::new("pgrep")
        .args(["-x", "libvirtd"])
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
        let path = Path::new("/run/libvirt/qemu").join(format!("{}.pid", self.name()));
        let text = std::fs::read_to_string(&path)
            .map_err(RealVmError::io(format!("reading {}", path.display())))?;
        text.trim().parse().map_err(|_| {
            RealVmError::EnvUnusable(format!("{} holds no pid: {text:?}", path.display()))
        })
    }
}

/// Tests of one machine run in parallel (nextest runs each in its own process). A test that
/// kills libvirtd holds this lock exclusively; every [`Guest`] holds it shared while it
/// lives, so no other harness guest is mid-test while libvirtd is down.
const OUTAGE_LOCK: &str = "/run/snapgate-libvirtd-outage.lock";

static EXCLUSIVE_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Held while a test may kill libvirtd; released on drop.
#[derive(Debug)]
pub struct LibvirtdOutageLock {
    _file: std::fs::File,
}

impl LibvirtdOutageLock {
    /// Waits until no other process's guest lives, then keeps others from booting until drop.
    /// Guests this process boots meanwhile do not wait for it.
    pub fn acquire() -> Result<LibvirtdOutageLock, RealVmError> {
        let file = open_lock()?;
        file.lock()
            .map_err(RealVmError::io(format!("locking {OUTAGE_LOCK}")))?;
        EXCLUSIVE_HELD.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(LibvirtdOutageLock { _file: file })
    }
}

impl Drop for LibvirtdOutageLock {
    fn drop(&mut self) {
        EXCLUSIVE_HELD.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The shared side, taken by each guest; `None` when this process holds the exclusive lock.
pub(crate) fn guest_lock() -> Result<Option<std::fs::File>, RealVmError> {
    if EXCLUSIVE_HELD.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(None);
    }
    let file = open_lock()?;
    file.lock_shared()
        .map_err(RealVmError::io(format!("locking {OUTAGE_LOCK} shared")))?;
    Ok(Some(file))
}

fn open_lock() -> Result<std::fs::File, RealVmError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(OUTAGE_LOCK)
        .map_err(RealVmError::io(format!("opening {OUTAGE_LOCK}")))
}
