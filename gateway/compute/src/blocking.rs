//! The libvirt calls themselves. Every function here blocks and runs inside
//! `tokio::task::spawn_blocking` (see `backend.rs`).

use std::ffi::CString;
use std::path::{Path, PathBuf};

use snapgate_core::ports::{ComputeError, JobProgress, SavedSnapshot, SnapshotProbe};
use snapgate_core::{CpuCompatibility, CpuInfo, DiskInfo, Instance, SnapshotKind};
use uuid::Uuid;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::domain_snapshot::DomainSnapshot;
use virt::error::ErrorNumber;
use virt::storage_pool::StoragePool;
use virt::sys;

use crate::errors::Fail;
use crate::files::{self, ExternalLayout};
use crate::{downtime, ffi, xml};

/// Where a call runs: the host's name and its state directory (a path on that host).
pub(crate) struct Site<'a> {
    pub(crate) host: &'a str,
    pub(crate) state_dir: &'a Path,
}

pub(crate) fn lookup_domain(conn: &Connect, uuid: Uuid) -> Result<Domain, Fail> {
    Domain::lookup_by_uuid_string(conn, &uuid.to_string()).map_err(|e| match e.code() {
        ErrorNumber::NoDomain => Fail::Compute(ComputeError::InstanceNotFound(uuid)),
        _ => Fail::Virt(e),
    })
}

fn lookup_snapshot(dom: &Domain, name: &str) -> Result<Option<DomainSnapshot>, Fail> {
    match DomainSnapshot::lookup_by_name(dom, name, 0) {
        Ok(snap) => Ok(Some(snap)),
        Err(e) if e.code() == ErrorNumber::NoDomainSnapshot => Ok(None),
        Err(e) => Err(Fail::Virt(e)),
    }
}

fn require_snapshot(dom: &Domain, name: &str) -> Result<DomainSnapshot, Fail> {
    lookup_snapshot(dom, name)?
        .ok_or_else(|| Fail::Compute(ComputeError::SnapshotNotFound(name.to_owned())))
}

fn parse_error(site: &Site<'_>, e: xml::XmlError) -> Fail {
    Fail::Compute(ComputeError::Backend {
        host: site.host.to_owned(),
        message: e.to_string(),
    })
}

/// Describes a domain. Disk capacities come from `virDomainGetBlockInfo`, which works for
/// remote hosts too; a disk libvirt cannot size keeps `None`.
pub(crate) fn describe(conn: &Connect, site: &Site<'_>, uuid: Uuid) -> Result<Instance, Fail> {
    let dom = lookup_domain(conn, uuid)?;
    let info = dom.get_info()?;
    let desc = xml::parse_domain(&dom.get_xml_desc(0)?).map_err(|e| parse_error(site, e))?;
    let disks = desc
        .disks
        .into_iter()
        .map(|disk| {
            let size_bytes = dom
                .get_block_info(&disk.target, 0)
                .ok()
                .and_then(|b| i64::try_from(b.capacity).ok());
            DiskInfo { size_bytes, ..disk }
        })
        .collect();
    let current_snapshot = match DomainSnapshot::current(&dom, 0) {
        Ok(snap) => Some(snap.get_name()?),
        Err(e) if e.code() == ErrorNumber::NoDomainSnapshot => None,
        Err(e) => return Err(Fail::Virt(e)),
    };
    Ok(Instance {
        uuid,
        name: desc.name,
        host: site.host.to_owned(),
        running: info.state == sys::VIR_DOMAIN_RUNNING,
        memory_bytes: kib_to_bytes(info.memory),
        vcpus: info.nr_virt_cpu,
        disks,
        has_host_devices: desc.has_host_devices,
        owner_tenant: desc.owner_tenant,
        cpu: desc.cpu,
        cpu_xml: desc.cpu_xml,
        current_snapshot,
    })
}

/// Refuses a snapshot of `kind` on a domain that has snapshots of the other kind. libvirt
/// (checked with QEMU 10 / libvirt 11.3) cannot delete such mixed chains: "deleting external
/// snapshot that has internal snapshot as parent not supported", and an internal snapshot
/// whose disk became an overlay "is not the same as disk image currently used by VM".
pub(crate) fn refuse_mixed_kinds(
    dom: &Domain,
    site: &Site<'_>,
    kind: SnapshotKind,
) -> Result<(), Fail> {
    // Mixed kinds are refused when made, so every snapshot of a domain has the same kind and
    // one of them tells: the current one, else any. (Reading them all made each save O(states).)
    let one = match DomainSnapshot::current(dom, 0) {
        Ok(snap) => Some(snap),
        Err(e) if e.code() == ErrorNumber::NoDomainSnapshot => {
            dom.list_all_snapshots(0)?.into_iter().next()
        }
        Err(e) => return Err(Fail::Virt(e)),
    };
    if let Some(snap) = one {
        let meta = xml::parse_snapshot(&snap.get_xml_desc(0)?).map_err(|e| parse_error(site, e))?;
        if meta.kind() != kind {
            return Err(Fail::Compute(ComputeError::Unsupported {
                code: "snapshot_kind_conflict",
                message: format!(
                    "the instance already has {} snapshots (e.g. {}); libvirt cannot manage {kind} snapshots beside them",
                    meta.kind(),
                    snap.get_name()?
                ),
            }));
        }
    }
    Ok(())
}

pub(crate) fn check_existing_snapshots(
    conn: &Connect,
    site: &Site<'_>,
    instance: Uuid,
    kind: SnapshotKind,
) -> Result<(), Fail> {
    refuse_mixed_kinds(&lookup_domain(conn, instance)?, site, kind)
}

pub(crate) fn save(
    conn: &Connect,
    site: &Site<'_>,
    instance: Uuid,
    name: &str,
    kind: SnapshotKind,
) -> Result<SavedSnapshot, Fail> {
    validate_snapshot_name(name)?;
    let before = describe(conn, site, instance)?;
    let dom = lookup_domain(conn, instance)?;
    refuse_mixed_kinds(&dom, site, kind)?;
    let targets: Vec<&str> = before.disks.iter().map(|d| d.target.as_str()).collect();
    let physical_before: Vec<Option<u64>> = targets
        .iter()
        .map(|t| dom.get_block_info(t, 0).ok().map(|b| b.physical))
        .collect();

    let (snapshot, layout) = match kind {
        SnapshotKind::Internal => {
            let flags = sys::VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC;
            let snap = DomainSnapshot::create_xml(
                &dom,
                &xml::internal_snapshot_xml(name, &targets),
                flags,
            )?;
            (snap, None)
        }
        SnapshotKind::External => {
            let layout = ExternalLayout::new(site.state_dir, name, &before.disks)?;
            // The pool makes the directory on the host and is how its files are measured and
            // cleaned up; the gateway's own filesystem is never involved.
            let pool = files::state_pool(conn, site.host, site.state_dir)?;
            files::refresh(&pool)?;
            // Names are fresh uuids, so nothing should be there; whatever is, is not ours.
            let mut created_here = Vec::new();
            for file in layout.files() {
                if files::volume(conn, file)?.is_none() {
                    created_here.push(file.clone());
                }
            }
            let overlays: Vec<(&str, String)> = layout
                .overlays
                .iter()
                .map(|(t, p)| (t.as_str(), p.display().to_string()))
                .collect();
            let snapshot_xml = xml::external_snapshot_xml(
                name,
                &layout.memory_file.display().to_string(),
                &overlays,
            );
            // LIVE keeps the guest running while its memory is written; ATOMIC makes a failed
            // save leave no half-made overlays. The test driver and QEMU accept both. The
            // guest still stops for the last pass: a short downtime limit keeps that short.
            let flags =
                sys::VIR_DOMAIN_SNAPSHOT_CREATE_LIVE | sys::VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC;
            let made = downtime::with_short_final_pause(&dom, || {
                DomainSnapshot::create_xml(&dom, &snapshot_xml, flags)
            });
            match made {
                Ok(snap) => {
                    // The pool learns of the files QEMU just wrote, to measure them.
                    if let Err(e) = files::refresh(&pool) {
                        tracing::warn!(host = site.host, error = ?e, "cannot refresh the state pool; sizes are estimated");
                    }
                    (snap, Some(layout))
                }
                Err(e) => {
                    // ATOMIC only helps while libvirtd lives: a daemon killed mid-save leaves
                    // the partial memory file (and maybe overlays) behind.
                    remove_created(conn, site, &pool, &created_here);
                    return Err(Fail::Virt(e));
                }
            }
        }
    };

    let snapshot_xml = snapshot.get_xml_desc(0)?;
    let meta = xml::parse_snapshot(&snapshot_xml).map_err(|e| parse_error(site, e))?;
    let (memory_bytes, size_bytes) =
        measure(conn, &dom, &before, &physical_before, layout.as_ref());
    Ok(SavedSnapshot {
        kind,
        memory_bytes,
        size_bytes,
        disk_formats: before
            .disks
            .iter()
            .map(|d| d.format.clone().unwrap_or_else(|| "unknown".into()))
            .collect(),
        cpu: before.cpu,
        cpu_xml: before.cpu_xml,
        parent: meta.parent,
        snapshot_xml: Some(snapshot_xml),
    })
}

/// Removes, through the state pool, files a failed save made.
fn remove_created(conn: &Connect, site: &Site<'_>, pool: &StoragePool, created: &[PathBuf]) {
    if let Err(e) = files::refresh(pool) {
        tracing::warn!(host = site.host, error = ?e, "cannot look for files of the failed save");
        return;
    }
    for file in created {
        match files::volume(conn, file) {
            Ok(Some(vol)) => match vol.delete(0) {
                Ok(()) => {
                    tracing::warn!(file = %file.display(), "removed a file of the failed save")
                }
                Err(err) => {
                    tracing::warn!(file = %file.display(), error = %err, "cannot remove a file of the failed save")
                }
            },
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(file = %file.display(), error = ?err, "cannot look up a file of the failed save")
            }
        }
    }
}

/// Memory and total size of a fresh snapshot.
///
/// Internal: QEMU writes the RAM image into the qcow2 files, so their growth already holds
/// it; the size is that growth, never less than the guest's memory (the growth is invisible
/// on the test driver, on remote block devices, or when the image had preallocated room).
/// External: the memory file plus the new overlays, as the host's storage pool reports them;
/// the guest's memory and the disks' growth stand in where libvirt has no such file (the test
/// driver writes none).
fn measure(
    conn: &Connect,
    dom: &Domain,
    before: &Instance,
    physical_before: &[Option<u64>],
    layout: Option<&ExternalLayout>,
) -> (i64, i64) {
    let guest_memory = before.memory_bytes;
    let Some(layout) = layout else {
        let growth: u64 = before
            .disks
            .iter()
            .zip(physical_before)
            .filter_map(|(disk, was)| {
                let now = dom.get_block_info(&disk.target, 0).ok()?.physical;
                Some(now.saturating_sub((*was)?))
            })
            .sum();
        return (guest_memory, guest_memory.max(to_i64(growth)));
    };
    let pool_knows = |path: &Path| files::file_size(conn, path);
    let memory_bytes = pool_knows(&layout.memory_file)
        .map(|(length, _)| to_i64(length))
        .filter(|len| *len > 0)
        .unwrap_or(guest_memory);
    let was = |target: &str| {
        before
            .disks
            .iter()
            .zip(physical_before)
            .find(|(disk, _)| disk.target == target)
            .and_then(|(_, was)| *was)
    };
    let overlays: u64 = layout
        .overlays
        .iter()
        .map(|(target, file)| match pool_knows(file) {
            Some((_, allocated)) => allocated,
            // After an external snapshot the domain writes to the overlays, so its block
            // info is theirs; what the disk grew by is the delta (a fresh overlay is nearly
            // empty: the test driver, which writes no overlay, reports the whole disk).
            None => dom
                .get_block_info(target, 0)
                .ok()
                .zip(was(target))
                .map(|(now, was)| now.physical.saturating_sub(was))
                .unwrap_or(0),
        })
        .sum();
    (memory_bytes, memory_bytes.saturating_add(to_i64(overlays)))
}

/// Deletes the snapshot (libvirt removes an external snapshot's files), then, through the
/// host's state pool, whatever files of it are left in the state directory.
pub(crate) fn delete(
    conn: &Connect,
    site: &Site<'_>,
    instance: Uuid,
    name: &str,
) -> Result<(), Fail> {
    let dom = lookup_domain(conn, instance)?;
    let snap = require_snapshot(&dom, name)?;
    let meta = xml::parse_snapshot(&snap.get_xml_desc(0)?).map_err(|e| parse_error(site, e))?;
    snap.delete(0)?;
    if meta.kind() == SnapshotKind::External && files::is_safe_file_component(name) {
        let in_use = match dom.get_xml_desc(0).map(|x| xml::disk_files(&x)) {
            Ok(Ok(files)) => files,
            // Without knowing what the domain uses, removing nothing is the safe choice.
            _ => return Ok(()),
        };
        let pool = files::state_pool(conn, site.host, site.state_dir)?;
        files::remove_leftovers(&pool, site.host, name, &in_use)?;
    }
    Ok(())
}

/// What a save cut off by a lost connection may have left in the host's state directory
/// (`<name>.`-prefixed files), removed unless libvirt finished the snapshot after all.
pub(crate) fn remove_files_of_failed_save(
    conn: &Connect,
    site: &Site<'_>,
    instance: Uuid,
    name: &str,
) -> Result<(), Fail> {
    if !files::is_safe_file_component(name) {
        return Ok(());
    }
    let dom = lookup_domain(conn, instance)?;
    if lookup_snapshot(&dom, name)?.is_some() {
        return Ok(());
    }
    let in_use = xml::disk_files(&dom.get_xml_desc(0)?).map_err(|e| parse_error(site, e))?;
    let pool = files::state_pool(conn, site.host, site.state_dir)?;
    files::remove_leftovers(&pool, site.host, name, &in_use)
}

/// The domain's running job, sampled (`None`: no job, no byte counts, or a host that cannot
/// tell).
pub(crate) fn job_progress(conn: &Connect, instance: Uuid) -> Result<Option<JobProgress>, Fail> {
    let dom = lookup_domain(conn, instance)?;
    let stats = match ffi::job_stats(&dom) {
        Ok(stats) => stats,
        Err(e) if e.code() == ErrorNumber::NoSupport => return Ok(None),
        Err(e) => return Err(Fail::Virt(e)),
    };
    if stats.job_type == sys::VIR_DOMAIN_JOB_NONE as std::ffi::c_int {
        return Ok(None);
    }
    let Some(processed) = stats.data_processed.or_else(|| {
        // Some jobs report only what is left.
        stats
            .data_total
            .zip(stats.data_remaining)
            .map(|(t, r)| t.saturating_sub(r))
    }) else {
        return Ok(None);
    };
    let memory_done = stats.memory_total.is_some() && stats.memory_remaining == Some(0);
    let disks_left = stats.disk_total.unwrap_or(0) > 0 && stats.disk_remaining.unwrap_or(0) > 0;
    Ok(Some(JobProgress {
        phase: if memory_done && disks_left {
            snapgate_core::phase::DISKS
        } else {
            snapgate_core::phase::MEMORY
        },
        bytes_processed: processed,
        bytes_total: stats.data_total,
        bytes_remaining: stats.data_remaining,
    }))
}

/// Aborts the domain's running job. `false` when none runs (libvirt says the operation is
/// invalid) or the host cannot abort jobs.
pub(crate) fn abort_job(conn: &Connect, instance: Uuid) -> Result<bool, Fail> {
    let dom = lookup_domain(conn, instance)?;
    match ffi::abort_job(&dom) {
        Ok(()) => Ok(true),
        Err(e)
            if matches!(
                e.code(),
                ErrorNumber::OperationInvalid | ErrorNumber::NoSupport
            ) =>
        {
            tracing::debug!(error = %e, "no libvirt job to abort");
            Ok(false)
        }
        Err(e) => Err(Fail::Virt(e)),
    }
}

/// What a cancelled save leaves: its snapshot if libvirt finished it after all (deleted with
/// its files), else whatever `<name>.`-prefixed files are left in the state directory.
pub(crate) fn discard_save(
    conn: &Connect,
    site: &Site<'_>,
    instance: Uuid,
    name: &str,
) -> Result<(), Fail> {
    validate_snapshot_name(name)?;
    let dom = lookup_domain(conn, instance)?;
    if lookup_snapshot(&dom, name)?.is_some() {
        return delete(conn, site, instance, name);
    }
    remove_files_of_failed_save(conn, site, instance, name)
}

/// Defines a snapshot from the XML libvirt gave when it was made (metadata only: an internal
/// snapshot's data is in the disks, which moved with the instance). A parent this host does
/// not have is left out, so the snapshot is defined as a root.
pub(crate) fn redefine(
    conn: &Connect,
    site: &Site<'_>,
    instance: Uuid,
    snapshot_xml: &str,
) -> Result<(), Fail> {
    let dom = lookup_domain(conn, instance)?;
    let meta = xml::parse_snapshot(snapshot_xml).map_err(|e| parse_error(site, e))?;
    let stripped;
    let definition = match meta.parent.as_deref() {
        Some(parent) if lookup_snapshot(&dom, parent)?.is_none() => {
            stripped = xml::without_parent(snapshot_xml).map_err(|e| parse_error(site, e))?;
            stripped.as_str()
        }
        _ => snapshot_xml,
    };
    DomainSnapshot::create_xml(&dom, definition, sys::VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)?;
    tracing::info!(host = site.host, %instance, "redefined a snapshot from its stored XML");
    Ok(())
}

pub(crate) fn apply(conn: &Connect, instance: Uuid, name: &str) -> Result<(), Fail> {
    let dom = lookup_domain(conn, instance)?;
    let snap = require_snapshot(&dom, name)?;
    snap.revert(sys::VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)?;
    Ok(())
}

pub(crate) fn probe(conn: &Connect, instance: Uuid, name: &str) -> Result<SnapshotProbe, Fail> {
    let dom = lookup_domain(conn, instance)?;
    Ok(match lookup_snapshot(&dom, name)? {
        Some(_) => SnapshotProbe::Present,
        None => SnapshotProbe::Absent,
    })
}

pub(crate) fn list_snapshots(conn: &Connect, instance: Uuid) -> Result<Vec<String>, Fail> {
    let dom = lookup_domain(conn, instance)?;
    let snaps = dom.list_all_snapshots(0)?;
    snaps
        .iter()
        .map(|s| s.get_name().map_err(Fail::Virt))
        .collect()
}

pub(crate) fn host_cpu(conn: &Connect, site: &Site<'_>) -> Result<CpuInfo, Fail> {
    xml::parse_host_cpu(&conn.get_capabilities()?).map_err(|e| parse_error(site, e))
}

/// Compares a saved guest CPU with the CPU the hypervisor gives `instance`
/// (`virConnectCompareHypervisorCPU`, see [`crate::ffi`]), for the instance's own
/// virtualization type: a TCG guest (`<domain type='qemu'>`) is judged against what QEMU
/// emulates, a KVM guest against what KVM passes through.
///
/// Drivers that cannot compare (the test driver) and definitions libvirt cannot judge (bad
/// XML, a model or feature it does not know, host-passthrough) give `Unknown`. A missing
/// instance is `InstanceNotFound` and a lost connection an error, as everywhere.
pub(crate) fn compare_cpu(
    conn: &Connect,
    site: &Site<'_>,
    instance: Uuid,
    cpu_xml: &str,
) -> Result<CpuCompatibility, Fail> {
    let Ok(cpu_xml) = CString::new(cpu_xml) else {
        return Ok(CpuCompatibility::Unknown);
    };
    let dom = lookup_domain(conn, instance)?;
    let desc = xml::parse_domain(&dom.get_xml_desc(0)?).map_err(|e| parse_error(site, e))?;
    // libvirt's own parser guarantees a plain word here; anything else cannot be compared.
    let virt_type = match desc.virt_type.map(CString::new) {
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => return Ok(CpuCompatibility::Unknown),
        None => None,
    };
    match ffi::compare_hypervisor_cpu(conn, virt_type.as_deref(), &cpu_xml) {
        Ok(sys::VIR_CPU_COMPARE_IDENTICAL) => Ok(CpuCompatibility::Identical),
        Ok(sys::VIR_CPU_COMPARE_SUPERSET) => Ok(CpuCompatibility::Superset),
        Ok(sys::VIR_CPU_COMPARE_INCOMPATIBLE) => Ok(CpuCompatibility::Incompatible),
        Ok(other) => {
            tracing::debug!(result = other, "unexpected CPU comparison result");
            Ok(CpuCompatibility::Unknown)
        }
        Err(e) if crate::errors::is_connection_error(&e) => Err(Fail::Virt(e)),
        Err(e) => {
            tracing::debug!(error = %e, code = ?e.code(), "CPU comparison not possible");
            Ok(CpuCompatibility::Unknown)
        }
    }
}

pub(crate) fn ping(conn: &Connect) -> Result<(), Fail> {
    conn.get_lib_version()?;
    Ok(())
}

fn kib_to_bytes(kib: u64) -> i64 {
    to_i64(kib.saturating_mul(1024))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Snapshot names become file names and XML text: accept only what a uuid (or a simple name)
/// needs.
fn validate_snapshot_name(name: &str) -> Result<(), Fail> {
    if files::is_safe_file_component(name) {
        Ok(())
    } else {
        Err(Fail::Compute(ComputeError::Unsupported {
            code: "invalid_snapshot_name",
            message: format!("snapshot name {name:?} is not a plain name"),
        }))
    }
}
