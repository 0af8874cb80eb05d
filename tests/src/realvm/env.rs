//! Prepares the machine for real guests, once per process.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{virsh, Hypervisor, RealVmError, LIBVIRT_URI};

/// Prefix of every domain the harness defines: `snapgate-rvm-<pid>-<label>-<suffix>`.
/// The pid lets a later process remove what a killed one left behind.
pub(crate) const DOMAIN_PREFIX: &str = "snapgate-rvm-";

/// A machine ready to run test guests: libvirtd answers on `qemu:///system` and the guest's
/// kernel and initramfs are built.
#[derive(Debug)]
pub struct RealVmEnv {
    workspace_root: PathBuf,
    guest_dir: PathBuf,
    runs_dir: PathBuf,
}

static ENV: OnceLock<Result<RealVmEnv, String>> = OnceLock::new();

impl RealVmEnv {
    /// Starts libvirtd (installing packages if libvirt is missing), builds or reuses the
    /// cached guest and removes guests of dead test processes. Runs once per process; later
    /// calls return the first result. An unusable machine is an error, never a skip.
    ///
    /// `SNAPGATE_REALVM_GUEST_DIR` overrides where the guest is cached (default
    /// `<workspace>/target/realvm-guest`).
    pub fn ensure() -> Result<&'static RealVmEnv, RealVmError> {
        ENV.get_or_init(|| RealVmEnv::prepare().map_err(|error| error.to_string()))
            .as_ref()
            .map_err(|message| RealVmError::EnvUnusable(message.clone()))
    }

    fn prepare() -> Result<RealVmEnv, RealVmError> {
        let workspace_root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let guest_dir = std::env::var_os("SNAPGATE_REALVM_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root.join("target").join("realvm-guest"));
        // QEMU runs as libvirt-qemu: it must be able to walk into each guest's directory.
        let runs_dir = std::env::temp_dir().join("snapgate-realvm");
        std::fs::create_dir_all(&runs_dir)
            .map_err(RealVmError::io(format!("creating {}", runs_dir.display())))?;
        set_mode(&runs_dir, 0o755)?;

        let env = RealVmEnv {
            workspace_root,
            guest_dir,
            runs_dir,
        };
        env.run_script("scripts/realvm/libvirtd-up.sh", &[])?;
        env.run_script(
            "scripts/realvm/build-guest.sh",
            &[env.guest_dir.as_os_str()],
        )?;
        env.reap_dead_guests_on(Hypervisor::System, LIBVIRT_URI, &env.runs_dir)?;
        Ok(env)
    }

    /// Starts libvirtd again if it does not run (after a test killed it) and waits until
    /// `qemu:///system` answers.
    pub fn libvirtd_up(&self) -> Result<(), RealVmError> {
        self.run_script("scripts/realvm/libvirtd-up.sh", &[])
            .map(|_| ())
    }

    pub fn kernel(&self) -> PathBuf {
        self.guest_dir.join("vmlinuz")
    }

    pub fn initrd(&self) -> PathBuf {
        self.guest_dir.join("initrd.img")
    }

    /// Where each guest gets its own directory (disk, console, snapshot files).
    pub fn runs_dir(&self) -> &Path {
        &self.runs_dir
    }

    /// Starts the second host (`scripts/realvm/second-host-up.sh`: user, runtime directory,
    /// session daemon) if it does not run, waits until it answers and returns its URI.
    pub(crate) fn second_host_up(&self) -> Result<String, RealVmError> {
        let uri = self.run_script("scripts/realvm/second-host-up.sh", &[])?;
        Ok(uri.trim().to_owned())
    }

    /// Whether the system daemon knows a domain of that name (running or not).
    pub fn domain_exists(&self, name: &str) -> Result<bool, RealVmError> {
        self.domain_exists_on(Hypervisor::System, name)
    }

    /// Whether `host` knows a domain of that name (running or not).
    pub fn domain_exists_on(&self, host: Hypervisor, name: &str) -> Result<bool, RealVmError> {
        Ok(virsh::domain_names(&host.uri()?)?.iter().any(|n| n == name))
    }

    /// Creates a blank disk image (`qcow2` or `raw`) through the guest build script.
    pub(crate) fn create_disk(&self, format: &str, path: &Path) -> Result<(), RealVmError> {
        self.run_script(
            "scripts/realvm/build-guest.sh",
            &[
                self.guest_dir.as_os_str(),
                "--disk".as_ref(),
                format.as_ref(),
                path.as_os_str(),
            ],
        )
        .map(|_| ())
    }

    /// Runs a script of the workspace and returns its stdout.
    fn run_script(&self, relative: &str, args: &[&std::ffi::OsStr]) -> Result<String, RealVmError> {
        let script = self.workspace_root.join(relative);
        let output = Command::new(&script)
            .args(args)
            .output()
            .map_err(RealVmError::io(format!("running {}", script.display())))?;
        if !output.status.success() {
            return Err(RealVmError::Script {
                script: relative.to_owned(),
                status: output.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Removes domains and directories of test processes that no longer run (killed by a
    /// timeout, or a crash that skipped `Drop`). Guests of live processes are left alone:
    /// tests run in parallel.
    pub(crate) fn reap_dead_guests_on(
        &self,
        host: Hypervisor,
        uri: &str,
        runs_dir: &Path,
    ) -> Result<(), RealVmError> {
        for name in virsh::domain_names(uri)? {
            if owner_is_dead(&name) {
                tracing::info!(%name, host = host.label(), "removing a guest left behind by a dead test process");
                virsh::destroy_and_undefine(uri, &name)?;
            }
        }
        let entries =
            std::fs::read_dir(runs_dir).map_err(RealVmError::io("listing the runs dir"))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_is_dead(&name) {
                // Best effort: a leftover directory must not fail unrelated tests.
                if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(%error, %name, "cannot remove a leftover guest directory");
                }
            }
        }
        Ok(())
    }
}

/// True for `snapgate-rvm-<pid>-…` names whose process is gone.
fn owner_is_dead(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(DOMAIN_PREFIX) else {
        return false;
    };
    let Some(pid) = rest
        .split('-')
        .next()
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    !Path::new("/proc").join(pid.to_string()).exists()
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), RealVmError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(RealVmError::io(format!("chmod {}", path.display())))
}
