//! One test guest: defined, started, watched and removed again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::console::{self, ConsoleMark};
use super::env::{set_mode, DOMAIN_PREFIX};
use super::xml::{domain_xml, DomainSpec};
use super::{virsh, Hypervisor, RealVmEnv, RealVmError};

/// What the issue asks for: small enough to save fast under TCG, big enough to boot.
pub const DEFAULT_MEMORY_MIB: u32 = 128;

/// Under TCG on a busy 2-core machine a boot can take long; a generous limit keeps CI robust.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The guest's disk format. Snapshots with memory need qcow2; raw is there to prove the
/// gateway refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskKind {
    Qcow2,
    Raw,
}

impl DiskKind {
    pub fn format(self) -> &'static str {
        match self {
            DiskKind::Qcow2 => "qcow2",
            DiskKind::Raw => "raw",
        }
    }
}

/// A running test guest on one of the test hosts (`qemu:///system` unless booted elsewhere).
/// Dropping it destroys and undefines the domain (with its snapshot metadata) and deletes its
/// directory, also when the test panicked.
#[derive(Debug)]
pub struct Guest {
    host: Hypervisor,
    owner_tenant: Option<String>,
    name: String,
    uuid: Uuid,
    dir: PathBuf,
    disk: PathBuf,
    disk_kind: DiskKind,
    console: PathBuf,
    memory_mib: u32,
    /// MiB of guest RAM the guest fills with random data read from its disk, if any.
    fill_mib: Option<u32>,
    /// The second serial port's file, where a filled guest prints its clock (`ticks.log`).
    ticks: Option<PathBuf>,
    removed: bool,
    /// Shared side of the libvirtd-outage lock (see `LibvirtdOutageLock`); dropped last.
    _outage_lock: Option<std::fs::File>,
}

impl Guest {
    /// Defines a domain with a fresh UUID, starts it and waits until its counter advances.
    /// `label` only makes the domain name readable (`snapgate-rvm-<pid>-<label>-<suffix>`).
    pub fn boot(label: &str, disk_kind: DiskKind, memory_mib: u32) -> Result<Guest, RealVmError> {
        Guest::boot_inner(Hypervisor::System, label, disk_kind, memory_mib, None)
    }

    /// Like [`Guest::boot`], with the domain owned by `tenant` (snapgate's owner metadata),
    /// so a gateway under test lets that tenant's tokens save and apply it.
    pub fn boot_owned(
        label: &str,
        disk_kind: DiskKind,
        memory_mib: u32,
        tenant: &str,
    ) -> Result<Guest, RealVmError> {
        Guest::boot_inner(
            Hypervisor::System,
            label,
            disk_kind,
            memory_mib,
            Some(tenant),
        )
    }

    /// Like [`Guest::boot_owned`], on `host`.
    pub fn boot_owned_on(
        host: Hypervisor,
        label: &str,
        disk_kind: DiskKind,
        memory_mib: u32,
        tenant: &str,
    ) -> Result<Guest, RealVmError> {
        Guest::boot_inner(host, label, disk_kind, memory_mib, Some(tenant))
    }

    /// A guest for the pause benchmark: `memory_mib` of RAM, `fill_mib` of it filled with
    /// random data (written to its qcow2 disk by the host, copied into a tmpfs by `init`),
    /// printing its clock every ~10 ms to a second serial port ([`Guest::ticks_path`]).
    /// Returns once the RAM is filled and the guest counts.
    pub fn boot_filled(
        label: &str,
        memory_mib: u32,
        fill_mib: u32,
        tenant: &str,
    ) -> Result<Guest, RealVmError> {
        let options = BootOptions {
            fill_mib: Some(fill_mib),
        };
        Guest::boot_with(
            Hypervisor::System,
            label,
            DiskKind::Qcow2,
            memory_mib,
            Some(tenant),
            options,
        )
    }

    fn boot_inner(
        host: Hypervisor,
        label: &str,
        disk_kind: DiskKind,
        memory_mib: u32,
        owner_tenant: Option<&str>,
    ) -> Result<Guest, RealVmError> {
        let options = BootOptions::default();
        Guest::boot_with(host, label, disk_kind, memory_mib, owner_tenant, options)
    }

    fn boot_with(
        host: Hypervisor,
        label: &str,
        disk_kind: DiskKind,
        memory_mib: u32,
        owner_tenant: Option<&str>,
        options: BootOptions,
    ) -> Result<Guest, RealVmError> {
        let env = RealVmEnv::ensure()?;
        let runs_dir = host.runs_dir(env)?;
        let outage_lock = super::daemon::guest_lock(host)?;
        let uuid = Uuid::new_v4();
        let name = domain_name(label, uuid);
        let dir = runs_dir.join(&name);
        std::fs::create_dir(&dir)
            .map_err(RealVmError::io(format!("creating {}", dir.display())))?;
        // From here on, Drop cleans up whatever the next steps leave half done.
        let guest = Guest {
            host,
            owner_tenant: owner_tenant.map(str::to_owned),
            disk: dir.join(format!("disk.{}", disk_kind.format())),
            console: dir.join("console.log"),
            ticks: options.fill_mib.map(|_| dir.join("ticks.log")),
            name,
            uuid,
            dir,
            disk_kind,
            memory_mib,
            fill_mib: options.fill_mib,
            removed: false,
            _outage_lock: outage_lock,
        };
        set_mode(&guest.dir, 0o755)?;
        match options.fill_mib {
            Some(fill_mib) => guest.create_random_disk(fill_mib)?,
            None => env.create_disk(disk_kind.format(), &guest.disk)?,
        }
        guest.give_files_to(host)?;
        guest.define()?;
        guest.virsh(&["start", &guest.name])?;
        if let Some(fill_mib) = options.fill_mib {
            let filled = format!("snapgate-filled {fill_mib}");
            guest.poll(&filled, BOOT_TIMEOUT, || {
                let console = console::read(&guest.console)?;
                Ok(String::from_utf8_lossy(&console)
                    .contains(filled.as_str())
                    .then_some(()))
            })?;
        }
        guest.wait_until_advancing(BOOT_TIMEOUT)?;
        tracing::info!(name = %guest.name, %uuid, host = host.label(), "guest booted");
        Ok(guest)
    }

    /// A qcow2 disk whose first `fill_mib` MiB are random: what a filled guest copies into RAM.
    fn create_random_disk(&self, fill_mib: u32) -> Result<(), RealVmError> {
        let raw = self.dir.join("random.raw");
        let mut random =
            std::fs::File::open("/dev/urandom").map_err(RealVmError::io("opening /dev/urandom"))?;
        let mut out = std::fs::File::create(&raw)
            .map_err(RealVmError::io(format!("creating {}", raw.display())))?;
        std::io::copy(
            &mut std::io::Read::take(&mut random, u64::from(fill_mib) << 20),
            &mut out,
        )
        .map_err(RealVmError::io("writing random data"))?;
        drop(out);
        let status = std::process::Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&self.disk)
            .status()
            .map_err(RealVmError::io("running qemu-img convert"))?;
        std::fs::remove_file(&raw).map_err(RealVmError::io("removing the random data"))?;
        if !status.success() {
            return Err(RealVmError::EnvUnusable(format!(
                "qemu-img convert to {} failed ({status})",
                self.disk.display()
            )));
        }
        set_mode(&self.disk, 0o644)
    }

    /// Defines the domain on the guest's host (its XML is written into the guest's directory).
    fn define(&self) -> Result<(), RealVmError> {
        let env = RealVmEnv::ensure()?;
        let xml_path = self.dir.join("domain.xml");
        let cmdline_extra = self
            .fill_mib
            .map(|mib| format!(" snapgate.fill_mib={mib} snapgate.ticks"))
            .unwrap_or_default();
        let xml = domain_xml(&DomainSpec {
            name: &self.name,
            uuid: self.uuid,
            memory_mib: self.memory_mib,
            kernel: &env.kernel(),
            initrd: &env.initrd(),
            disk: &self.disk,
            disk_format: self.disk_kind.format(),
            console: &self.console,
            owner_tenant: self.owner_tenant.as_deref(),
            cmdline_extra: &cmdline_extra,
            ticks: self.ticks.as_deref(),
        });
        std::fs::write(&xml_path, xml).map_err(RealVmError::io("writing the domain XML"))?;
        self.virsh(&["define", &xml_path.to_string_lossy()])?;
        Ok(())
    }

    /// Makes the guest's directory and files the QEMU user's of `host` (the second host's QEMU
    /// runs as its unprivileged user; the system daemon hands files to its QEMU itself).
    fn give_files_to(&self, host: Hypervisor) -> Result<(), RealVmError> {
        let owner = host.file_owner()?.unwrap_or_else(|| "root".to_owned());
        let status = std::process::Command::new("chown")
            .args(["-R", &format!("{owner}:"), &self.dir.to_string_lossy()])
            .status()
            .map_err(RealVmError::io("running chown"))?;
        if !status.success() {
            return Err(RealVmError::EnvUnusable(format!(
                "chown -R {owner} {} failed ({status})",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Moves the guest to `target` the way an operator moves an instance between hosts with
    /// shared disks: destroyed and undefined (with its snapshot metadata) on its host, then
    /// defined on `target` with the same disk, console and UUID, and left shut off. Its RAM
    /// survives only in its snapshots. The guest's directory stays where it is.
    pub fn move_to(&mut self, target: Hypervisor) -> Result<(), RealVmError> {
        let lock = super::daemon::guest_lock(target)?;
        virsh::destroy_and_undefine(&self.host.uri()?, &self.name)?;
        self.give_files_to(target)?;
        self.host = target;
        self._outage_lock = lock;
        self.define()
    }

    /// Runs virsh on the guest's host.
    pub fn virsh(&self, args: &[&str]) -> Result<String, RealVmError> {
        virsh::virsh_at(&self.host.uri()?, args)
    }

    /// The host the guest is defined on.
    pub fn host(&self) -> Hypervisor {
        self.host
    }

    /// The libvirt domain name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The domain UUID: the instance id the gateway knows it by.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The guest's own directory: disk, console, and where snapshot files may go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn disk_path(&self) -> &Path {
        &self.disk
    }

    pub fn disk_kind(&self) -> DiskKind {
        self.disk_kind
    }

    pub fn console_path(&self) -> &Path {
        &self.console
    }

    pub fn memory_mib(&self) -> u32 {
        self.memory_mib
    }

    /// The file a filled guest prints `snapgate-tick UPTIME` lines to (see
    /// [`Guest::boot_filled`]); `None` for other guests.
    pub fn ticks_path(&self) -> Option<&Path> {
        self.ticks.as_deref()
    }

    /// The last counter the guest printed, `None` before the first one.
    pub fn counter(&self) -> Result<Option<u64>, RealVmError> {
        Ok(console::counters(&console::read(&self.console)?)
            .last()
            .copied())
    }

    /// The last counter of a guest that has booted; panics (fails the test) when the console
    /// cannot be read or holds no counter yet.
    pub fn booted_counter(&self) -> u64 {
        self.counter()
            .expect("reading the console")
            .expect("a booted guest has printed a counter")
    }

    /// Waits until the last printed counter is at least `n`, and returns it.
    pub fn wait_counter_at_least(&self, n: u64, timeout: Duration) -> Result<u64, RealVmError> {
        self.poll(&format!("counter >= {n}"), timeout, || {
            Ok(self.counter()?.filter(|&value| value >= n))
        })
    }

    /// Waits until the guest prints two increasing counters: it runs, not merely exists.
    pub fn wait_until_advancing(&self, timeout: Duration) -> Result<u64, RealVmError> {
        let started = Instant::now();
        let first = self.poll("a first counter", timeout, || self.counter())?;
        self.wait_counter_at_least(first + 1, timeout.saturating_sub(started.elapsed()))
    }

    /// The current end of the console: counters printed later are "since" this mark.
    pub fn console_mark(&self) -> Result<ConsoleMark, RealVmError> {
        Ok(ConsoleMark(console::read(&self.console)?.len() as u64))
    }

    /// Counters printed since `mark`, in order.
    pub fn counters_since(&self, mark: ConsoleMark) -> Result<Vec<u64>, RealVmError> {
        let bytes = console::read(&self.console)?;
        let start = usize::try_from(mark.0)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        Ok(console::counters(&bytes[start..]))
    }

    /// After a revert: waits for the first counter since `mark` that is below `below` (the
    /// counter seen just before the revert) and returns it. The running guest only counts
    /// up, so a smaller value can only come from restored RAM.
    pub fn wait_for_rewind(
        &self,
        mark: ConsoleMark,
        below: u64,
        timeout: Duration,
    ) -> Result<u64, RealVmError> {
        self.poll(
            &format!("a counter below {below} (RAM restored)"),
            timeout,
            || {
                Ok(self
                    .counters_since(mark)?
                    .into_iter()
                    .find(|&value| value < below))
            },
        )
    }

    /// Files in the guest's directory, for checks that a delete removed what it should.
    pub fn files(&self) -> Result<Vec<PathBuf>, RealVmError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(RealVmError::io(format!("listing {}", self.dir.display())))?;
        let mut files: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        files.sort();
        Ok(files)
    }

    /// Removes the guest now and reports failures (Drop can only log them).
    pub fn remove(mut self) -> Result<(), RealVmError> {
        self.removed = true;
        self.remove_inner()
    }

    fn remove_inner(&self) -> Result<(), RealVmError> {
        let undefined = self
            .host
            .uri()
            .and_then(|uri| virsh::destroy_and_undefine(&uri, &self.name));
        // Delete the files even if libvirt failed, so the disk does not fill up.
        let deleted = match std::fs::remove_dir_all(&self.dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(RealVmError::io(
                format!("deleting {}", self.dir.display()),
            )(error)),
            _ => Ok(()),
        };
        undefined.and(deleted)
    }

    fn poll<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Result<Option<T>, RealVmError>,
    ) -> Result<T, RealVmError> {
        let started = Instant::now();
        loop {
            if let Some(value) = check()? {
                return Ok(value);
            }
            if started.elapsed() >= timeout {
                let tail = console::read(&self.console)
                    .map(|bytes| console::tail(&bytes, 10))
                    .unwrap_or_default();
                return Err(RealVmError::Timeout {
                    domain: self.name.clone(),
                    what: what.to_owned(),
                    waited: timeout,
                    console_tail: tail,
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Err(error) = self.remove_inner() {
            // Cannot fail from Drop; the next RealVmEnv::ensure reaps what is left.
            tracing::error!(%error, name = %self.name, "cleaning up the guest failed");
            eprintln!("realvm: cleaning up guest {} failed: {error}", self.name);
        }
    }
}

/// What a guest boots with beyond its RAM and disk kind.
#[derive(Debug, Default)]
struct BootOptions {
    /// Fill this many MiB of RAM with random data and print ticks (the pause benchmark).
    fill_mib: Option<u32>,
}

/// `snapgate-rvm-<pid>-<label>-<8 hex>`: unique, readable, and the pid tells later processes
/// whether the owner still runs.
fn domain_name(label: &str, uuid: Uuid) -> String {
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    let suffix = &uuid.simple().to_string()[..8];
    format!("{DOMAIN_PREFIX}{}-{label}-{suffix}", std::process::id())
}
