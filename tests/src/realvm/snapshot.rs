//! Snapshots with memory taken directly with virsh: the reference the gateway is measured
//! against, and the proof that the machine can do what the gateway asks of it.

use std::path::PathBuf;

use super::{Guest, RealVmError};

/// Files an external snapshot creates in the guest's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalSnapshotFiles {
    /// The saved RAM.
    pub memory: PathBuf,
    /// The qcow2 overlay the guest writes to after the snapshot.
    pub overlay: PathBuf,
}

impl Guest {
    /// Internal snapshot with memory (RAM and disk state inside the qcow2), guest running.
    pub fn snapshot_internal(&self, snapshot: &str) -> Result<(), RealVmError> {
        self.virsh(&[
            "snapshot-create-as",
            self.name(),
            snapshot,
            "--memspec",
            "snapshot=internal",
        ])?;
        Ok(())
    }

    /// External snapshot with memory: RAM to a file and a disk overlay, both in the guest's
    /// directory; `--live` keeps the guest running, `--atomic` leaves nothing half made.
    pub fn snapshot_external(&self, snapshot: &str) -> Result<ExternalSnapshotFiles, RealVmError> {
        let files = ExternalSnapshotFiles {
            memory: self.dir().join(format!("{snapshot}.mem")),
            overlay: self.dir().join(format!("{snapshot}.overlay.qcow2")),
        };
        let memspec = format!("file={},snapshot=external", files.memory.display());
        let diskspec = format!("vda,snapshot=external,file={}", files.overlay.display());
        self.virsh(&[
            "snapshot-create-as",
            self.name(),
            snapshot,
            "--memspec",
            &memspec,
            "--diskspec",
            &diskspec,
            "--live",
            "--atomic",
        ])?;
        Ok(files)
    }

    /// Reverts to the snapshot and leaves the guest running.
    pub fn revert(&self, snapshot: &str) -> Result<(), RealVmError> {
        self.virsh(&["snapshot-revert", self.name(), snapshot, "--running"])?;
        Ok(())
    }

    /// Deletes the snapshot; for external ones libvirt (>= 9.9) also removes its files.
    pub fn delete_snapshot(&self, snapshot: &str) -> Result<(), RealVmError> {
        self.virsh(&["snapshot-delete", self.name(), snapshot])?;
        Ok(())
    }

    /// Names of the guest's snapshots, as libvirt lists them.
    pub fn snapshot_names(&self) -> Result<Vec<String>, RealVmError> {
        Ok(self
            .virsh(&["snapshot-list", self.name(), "--name"])?
            .lines()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect())
    }
}
