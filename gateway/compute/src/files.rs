//! The files of external states, on the host that holds them, reached only through libvirt.
//!
//! Each host has a state directory (`HostConfig::state_dir`), a path on *that* host. The
//! gateway never opens, stats or removes anything there itself: it may run on another machine,
//! or in a mount namespace that cannot see the directory at all. libvirt does everything:
//! - the snapshot XML names the files, and QEMU writes them;
//! - a `dir` storage pool over the directory makes the directory (`virStoragePoolBuild`),
//!   measures files (`virStorageVolGetInfo`) and removes leftovers (`virStorageVolDelete`);
//! - `virDomainSnapshotDelete` removes the files of an external snapshot (libvirt ≥ 9.9).
//!
//! Layout (flat, because a pool's volumes are the files directly in its directory):
//! `STATE_DIR/<snapshot>.memory` and `STATE_DIR/<snapshot>.<disk>.qcow2`. Snapshot names are
//! state uuids, so `<snapshot>.` prefixes files of one state and nothing else.

use std::path::{Path, PathBuf};

use snapgate_core::ports::ComputeError;
use snapgate_core::DiskInfo;
use virt::connect::Connect;
use virt::error::ErrorNumber;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;

use crate::errors::Fail;
use crate::xml;

/// Where the files of one external snapshot go.
pub(crate) struct ExternalLayout {
    pub(crate) memory_file: PathBuf,
    pub(crate) overlays: Vec<(String, PathBuf)>,
}

impl ExternalLayout {
    pub(crate) fn new(state_dir: &Path, name: &str, disks: &[DiskInfo]) -> Result<Self, Fail> {
        let overlays = disks
            .iter()
            .map(|d| {
                if !is_safe_file_component(&d.target) {
                    return Err(Fail::Compute(ComputeError::Unsupported {
                        code: "unsupported_disk_format",
                        message: format!("disk target {:?} cannot name an overlay file", d.target),
                    }));
                }
                Ok((
                    d.target.clone(),
                    state_dir.join(format!("{name}.{}.qcow2", d.target)),
                ))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            memory_file: state_dir.join(format!("{name}.memory")),
            overlays,
        })
    }

    pub(crate) fn files(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.memory_file).chain(self.overlays.iter().map(|(_, p)| p))
    }
}

/// The host's state directory as a libvirt `dir` storage pool: found by its target path, or
/// defined, built (the directory is made on the host) and started. Blocking.
pub(crate) fn state_pool(
    conn: &Connect,
    host: &str,
    state_dir: &Path,
) -> Result<StoragePool, Fail> {
    let target = path_text(host, state_dir)?;
    let pool = match find_pool(conn, target).map_err(|e| without_storage_driver(host, e))? {
        Some(pool) => pool,
        None => define_pool(conn, host, target)?,
    };
    if !pool.is_active()? {
        // Another gateway may start it at the same moment: "already active" is success.
        if let Err(e) = pool.create(0) {
            if !pool.is_active().unwrap_or(false) {
                return Err(Fail::Virt(e));
            }
        }
    }
    Ok(pool)
}

/// The pool over `target`: ours by its name (one call, every driver), else one the operator
/// defined over that directory.
fn find_pool(conn: &Connect, target: &str) -> Result<Option<StoragePool>, Fail> {
    match StoragePool::lookup_by_name(conn, &pool_name(target)) {
        Ok(pool) => return Ok(Some(pool)),
        Err(e) if e.code() == ErrorNumber::NoStoragePool => {}
        Err(e) => return Err(Fail::Virt(e)),
    }
    match StoragePool::lookup_by_target_path(conn, target) {
        Ok(pool) => Ok(Some(pool)),
        Err(e) if e.code() == ErrorNumber::NoStoragePool => Ok(None),
        // Drivers without that call (the test driver): read each pool's target.
        Err(e) if e.code() == ErrorNumber::NoSupport => {
            for pool in conn.list_all_storage_pools(0)? {
                if xml::pool_target(&pool.get_xml_desc(0)?).as_deref() == Some(target) {
                    return Ok(Some(pool));
                }
            }
            Ok(None)
        }
        Err(e) => Err(Fail::Virt(e)),
    }
}

fn define_pool(conn: &Connect, host: &str, target: &str) -> Result<StoragePool, Fail> {
    let name = pool_name(target);
    let pool_xml = format!(
        "<pool type='dir'><name>{}</name><target><path>{}</path></target></pool>",
        xml::escape(&name),
        xml::escape(target)
    );
    let pool = match StoragePool::define_xml(conn, &pool_xml, 0) {
        Ok(pool) => pool,
        // Defined meanwhile by another gateway: use theirs.
        Err(e) => match find_pool(conn, target) {
            Ok(Some(pool)) => return Ok(pool),
            _ => return Err(Fail::Virt(e)),
        },
    };
    tracing::info!(host, pool = %name, dir = target, "defined the storage pool of the host's state directory");
    build(&pool)?;
    // A pool that starts with libvirtd keeps lookups by path working after a host restart.
    if let Err(e) = pool.set_autostart(true) {
        tracing::debug!(host, error = %e, "cannot mark the state pool autostart");
    }
    Ok(pool)
}

/// Makes the pool's directory on the host (mkdir -p; an existing one is fine). libvirt refuses
/// to build an active pool: another save (here or on another gateway) that defined the same
/// pool a moment earlier may have built and started it between our lookup and our define
/// (which then only re-defined it), and that is the goal reached.
fn build(pool: &StoragePool) -> Result<(), Fail> {
    match pool.build(0) {
        Err(e) if !pool.is_active().unwrap_or(false) => Err(Fail::Virt(e)),
        _ => Ok(()),
    }
}

/// `snapgate-states-<hash of the path>`: stable per directory, so every gateway of a cloud
/// agrees on it, and free of characters pool names may not hold.
fn pool_name(target: &str) -> String {
    // FNV-1a: no dependency, and collisions only make `define` fail (then the lookup by path
    // above is what counts).
    let hash = target.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("snapgate-states-{hash:016x}")
}

/// Re-reads the pool's directory so files QEMU just wrote are volumes libvirt knows.
pub(crate) fn refresh(pool: &StoragePool) -> Result<(), Fail> {
    pool.refresh(0)?;
    Ok(())
}

/// The volume at `path`, if the host has that file in an active pool.
pub(crate) fn volume(conn: &Connect, path: &Path) -> Result<Option<StorageVol>, Fail> {
    let Some(text) = path.to_str() else {
        return Ok(None);
    };
    match StorageVol::lookup_by_path(conn, text) {
        Ok(vol) => Ok(Some(vol)),
        Err(e) if e.code() == ErrorNumber::NoStorageVolume => Ok(None),
        Err(e) => Err(Fail::Virt(e)),
    }
}

/// Sizes of a file on the host: (logical size, bytes allocated on disk). `None` when libvirt
/// has no such volume (the test driver writes no file).
pub(crate) fn file_size(conn: &Connect, path: &Path) -> Option<(u64, u64)> {
    let measured = volume(conn, path).and_then(|vol| match vol {
        Some(vol) => Ok(Some(vol.get_info()?)),
        None => Ok(None),
    });
    match measured {
        Ok(Some(info)) => Some((info.capacity, info.allocation)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = ?e, "cannot measure a state file");
            None
        }
    }
}

/// Removes the files of snapshot `name` that are still in the host's state directory and
/// that the domain does not use (`in_use`: every file of its disks' backing chains). Only
/// `<name>.`-prefixed volumes of the state pool are candidates: nothing outside it is touched.
pub(crate) fn remove_leftovers(
    pool: &StoragePool,
    host: &str,
    name: &str,
    in_use: &[String],
) -> Result<(), Fail> {
    refresh(pool)?;
    let prefix = format!("{name}.");
    for vol in pool.list_all_volumes(0)? {
        let vol_name = vol.get_name()?;
        if !vol_name.starts_with(&prefix) {
            continue;
        }
        let path = vol.get_path()?;
        if in_use.iter().any(|u| u == &path) {
            tracing::warn!(host, file = %path, "state file still used by the domain, kept");
            continue;
        }
        match vol.delete(0) {
            Ok(()) => tracing::info!(host, file = %path, "removed a file the snapshot left behind"),
            Err(e) => {
                tracing::warn!(host, file = %path, error = %e, "cannot remove a state file")
            }
        }
    }
    Ok(())
}

/// A host whose libvirt has no storage driver cannot keep external states: say so plainly.
fn without_storage_driver(host: &str, fail: Fail) -> Fail {
    match fail {
        Fail::Virt(e) if e.code() == ErrorNumber::NoSupport => {
            Fail::Compute(ComputeError::Backend {
                host: host.to_owned(),
                message: format!(
                    "libvirt on {host} has no storage driver; external states need it \
                 (libvirt-daemon-driver-storage): {}",
                    e.message()
                ),
            })
        }
        other => other,
    }
}

fn path_text<'a>(host: &str, path: &'a Path) -> Result<&'a str, Fail> {
    match path.to_str() {
        Some(text) if path.is_absolute() => Ok(text),
        _ => Err(Fail::Compute(ComputeError::Backend {
            host: host.to_owned(),
            message: format!("state directory {path:?} must be an absolute UTF-8 path"),
        })),
    }
}

/// Snapshot names and disk targets become file names: accept only what a uuid (or a simple
/// name) needs.
pub(crate) fn is_safe_file_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_are_stable_and_plain() {
        let a = pool_name("/var/lib/libvirt/snapgate");
        assert_eq!(a, pool_name("/var/lib/libvirt/snapgate"));
        assert_ne!(a, pool_name("/var/lib/libvirt/snapgate2"));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    /// Two saves on a host whose state pool does not exist yet both look it up and find
    /// nothing; the first defines it, the second defines it again (a no-op re-definition), the
    /// first builds and starts it, then the second builds it: libvirt refuses that for an
    /// active pool, and the second save must go on with the pool the first started.
    #[test]
    fn a_pool_started_by_a_racing_save_is_built_already() {
        let node = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/demo-node.xml");
        let conn = Connect::open(Some(&format!("test://{}", node.display()))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_str().unwrap();
        assert!(find_pool(&conn, target).unwrap().is_none(), "no pool yet");

        let pool = state_pool(&conn, "h", dir.path()).unwrap();
        assert!(pool.is_active().unwrap());
        // The fault the second save meets: building the active pool is refused.
        assert!(
            pool.build(0).is_err(),
            "libvirt refuses to build an active pool"
        );
        build(&pool).unwrap();

        // A pool that is not started is still built.
        pool.destroy().unwrap();
        assert!(!pool.is_active().unwrap());
        build(&pool).unwrap();
    }

    #[test]
    fn layout_is_flat_and_prefixed_by_the_name() {
        let disks = vec![DiskInfo {
            target: "vda".into(),
            format: None,
            source: None,
            size_bytes: None,
        }];
        let layout = ExternalLayout::new(Path::new("/s"), "n1", &disks).unwrap();
        let files: Vec<_> = layout.files().cloned().collect();
        assert_eq!(
            files,
            vec![
                PathBuf::from("/s/n1.memory"),
                PathBuf::from("/s/n1.vda.qcow2")
            ]
        );
    }
}
