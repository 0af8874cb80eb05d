//! What `snapgate doctor` asks of a host: can we reach it, what runs there, and can it hold
//! states with memory. Everything goes through libvirt, like every other host call.

use snapgate_core::ports::ComputeError;

use crate::backend::{Call, LibvirtBackend};
use crate::blocking::Site;
use crate::errors::Fail;

/// libvirt reverts external memory snapshots since 9.7 and deletes them (files included) since
/// 9.9; the backend relies on both.
const EXTERNAL_SNAPSHOTS_SINCE: u32 = 9_009_000;

#[derive(Debug, Clone)]
pub struct HostDiagnosis {
    /// The driver (`QEMU`, `Test`…).
    pub driver: String,
    pub hostname: String,
    /// The libvirt daemon's version, `major.minor.release`.
    pub libvirt_version: String,
    /// The hypervisor's version (QEMU's for the QEMU driver), when the driver reports one.
    pub hypervisor_version: Option<String>,
    /// States of the internal kind need every disk of an instance in qcow2; the host itself
    /// only needs a driver with internal snapshots, which every driver we support has.
    pub internal_memory_snapshots: Result<(), String>,
    pub external_memory_snapshots: Result<(), String>,
    /// The host's state directory, made usable through its storage pool (as the first save
    /// would), or why it cannot be.
    pub state_dir: Result<String, String>,
}

impl LibvirtBackend {
    /// Diagnoses one configured host. An unreachable host is the `Err`.
    pub async fn diagnose(&self, host: &str) -> Result<HostDiagnosis, ComputeError> {
        self.run(host, Call::Read, diagnose_blocking).await
    }
}

fn diagnose_blocking(
    conn: &virt::connect::Connect,
    site: &Site<'_>,
) -> Result<HostDiagnosis, Fail> {
    let lib = conn.get_lib_version()?;
    let driver = conn.get_type()?;
    let hypervisor_version = conn
        .get_hyp_version()
        .ok()
        .filter(|&v| v > 0)
        .map(version_text);
    let external_memory_snapshots = if lib >= EXTERNAL_SNAPSHOTS_SINCE {
        Ok(())
    } else {
        Err(format!(
            "libvirt {} is older than 9.9: external states cannot be applied or deleted; \
             use snapshots.mode = \"internal\" or upgrade libvirt",
            version_text(lib)
        ))
    };
    let state_dir = match crate::files::state_pool(conn, site.host, site.state_dir) {
        Ok(pool) => crate::files::refresh(&pool)
            .map(|_| site.state_dir.display().to_string())
            .map_err(|e| format!("the state pool cannot be refreshed: {}", fail_text(e))),
        Err(e) => Err(format!(
            "{} cannot be used as the state directory: {}",
            site.state_dir.display(),
            fail_text(e)
        )),
    };
    Ok(HostDiagnosis {
        hostname: conn.get_hostname().unwrap_or_default(),
        driver,
        libvirt_version: version_text(lib),
        hypervisor_version,
        internal_memory_snapshots: Ok(()),
        external_memory_snapshots,
        state_dir,
    })
}

fn fail_text(e: Fail) -> String {
    match e {
        Fail::Virt(e) => e.to_string(),
        Fail::Compute(e) => e.to_string(),
    }
}

/// libvirt's `major * 1_000_000 + minor * 1000 + release`.
fn version_text(v: u32) -> String {
    format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_read_as_libvirt_writes_them() {
        assert_eq!(super::version_text(11_003_000), "11.3.0");
        assert_eq!(super::version_text(10_000_002), "10.0.2");
    }
}
