//! The two libvirt hosts of the real-VM tests: this machine's system daemon
//! (`qemu:///system`, QEMU as libvirt-qemu) and a second, independent one, the session daemon
//! of the unprivileged user `snapgate-hostb` (QEMU as that user), reached by root through a
//! remote URI over its unix socket (`scripts/realvm/second-host-up.sh` sets it up).

use std::path::PathBuf;
use std::sync::OnceLock;

use super::{RealVmEnv, RealVmError, LIBVIRT_URI};

/// Which libvirt daemon a guest lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hypervisor {
    /// `qemu:///system`.
    System,
    /// The session daemon of `snapgate-hostb`, over `qemu+unix:///session?socket=…`.
    Second,
}

/// What the set-up script made for the second host.
#[derive(Debug)]
pub(crate) struct SecondHost {
    pub(crate) uri: String,
    pub(crate) user: String,
    pub(crate) home: PathBuf,
    /// The daemon's `XDG_RUNTIME_DIR` (`/run/user/<uid>`).
    pub(crate) runtime_dir: PathBuf,
}

pub(crate) const SECOND_HOST_USER: &str = "snapgate-hostb";

static SECOND: OnceLock<Result<SecondHost, String>> = OnceLock::new();

impl Hypervisor {
    pub const ALL: [Hypervisor; 2] = [Hypervisor::System, Hypervisor::Second];

    /// The libvirt URI the gateway and the harness use for it.
    pub fn uri(self) -> Result<String, RealVmError> {
        match self {
            Hypervisor::System => Ok(LIBVIRT_URI.to_owned()),
            Hypervisor::Second => Ok(second_host()?.uri.clone()),
        }
    }

    /// The host's state directory: a path on that host, given to the gateway as
    /// `hosts.state_dir`. Fixed per host (libvirt keeps one pool over it); state files are
    /// named by state uuid, so parallel tests never collide there.
    pub fn state_dir(self) -> Result<PathBuf, RealVmError> {
        match self {
            Hypervisor::System => Ok(PathBuf::from("/var/lib/libvirt/snapgate-tests")),
            Hypervisor::Second => Ok(second_host()?.home.join("states")),
        }
    }

    /// Where the harness makes each guest's directory (disk, console).
    pub(crate) fn runs_dir(self, env: &RealVmEnv) -> Result<PathBuf, RealVmError> {
        match self {
            Hypervisor::System => Ok(env.runs_dir().to_path_buf()),
            Hypervisor::Second => Ok(second_host()?.home.join("runs")),
        }
    }

    /// The user whose QEMU opens the guest's files; `None` for the system daemon, which
    /// gives them to its QEMU user itself.
    pub(crate) fn file_owner(self) -> Result<Option<String>, RealVmError> {
        match self {
            Hypervisor::System => Ok(None),
            Hypervisor::Second => Ok(Some(second_host()?.user.clone())),
        }
    }

    /// A short name for domain names and logs.
    pub fn label(self) -> &'static str {
        match self {
            Hypervisor::System => "system",
            Hypervisor::Second => "second",
        }
    }
}

/// Sets the second host up once per process (user, runtime dir, daemon) and returns it.
pub(crate) fn second_host() -> Result<&'static SecondHost, RealVmError> {
    SECOND
        .get_or_init(|| prepare_second_host().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|message| RealVmError::EnvUnusable(message.clone()))
}

fn prepare_second_host() -> Result<SecondHost, RealVmError> {
    let env = RealVmEnv::ensure()?;
    let uri = env.second_host_up()?;
    let home = PathBuf::from("/home").join(SECOND_HOST_USER);
    // `…?socket=/run/user/<uid>/libvirt/libvirt-sock`
    let runtime_dir = uri
        .split_once("socket=")
        .map(|(_, socket)| PathBuf::from(socket))
        .and_then(|socket| socket.parent()?.parent().map(PathBuf::from))
        .ok_or_else(|| RealVmError::EnvUnusable(format!("no socket in {uri}")))?;
    let host = SecondHost {
        uri,
        user: SECOND_HOST_USER.to_owned(),
        home,
        runtime_dir,
    };
    env.reap_dead_guests_on(Hypervisor::Second, &host.uri, &host.home.join("runs"))?;
    Ok(host)
}
