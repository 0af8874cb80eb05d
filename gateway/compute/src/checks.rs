//! Refusals made before any work: whether an instance can get a snapshot with memory.

use snapgate_core::ports::ComputeError;
use snapgate_core::{Instance, SnapshotKind};

/// Checks an instance as [`crate::LibvirtBackend::locate`] described it. `check_save` adds
/// one check that needs libvirt: no mixing of internal and external snapshots on a domain
/// (code `snapshot_kind_conflict`).
///
/// Order matters for the client: a stopped instance is a state problem (409) the user can fix
/// by starting it, the others are configuration problems (422).
pub fn check_snapshot_support(instance: &Instance, kind: SnapshotKind) -> Result<(), ComputeError> {
    if !instance.running {
        return Err(ComputeError::Unsupported {
            code: "instance_not_running",
            message: format!(
                "instance {} is not running; a snapshot with memory needs a running instance",
                instance.uuid
            ),
        });
    }
    if instance.has_host_devices {
        return Err(ComputeError::Unsupported {
            code: "host_devices_attached",
            message: format!(
                "instance {} has host devices (PCI/USB/mediated) attached; their state cannot be saved live",
                instance.uuid
            ),
        });
    }
    if kind == SnapshotKind::Internal {
        // A disk without a declared format is refused too: libvirt would probe it, and an
        // internal snapshot of a raw image fails late, after the guest was paused.
        let offending: Vec<String> = instance
            .disks
            .iter()
            .filter(|d| d.format.as_deref() != Some("qcow2"))
            .map(|d| {
                format!(
                    "{} ({})",
                    d.target,
                    d.format.as_deref().unwrap_or("no format")
                )
            })
            .collect();
        if !offending.is_empty() {
            return Err(ComputeError::Unsupported {
                code: "unsupported_disk_format",
                message: format!(
                    "internal snapshots need every disk in qcow2 format; not qcow2: {}",
                    offending.join(", ")
                ),
            });
        }
    }
    Ok(())
}
