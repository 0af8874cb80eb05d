use std::process::Command;

use super::RealVmError;

/// The libvirt connection the harness (and the gateway under test) uses for this machine's
/// system daemon. The second host's URI comes from [`super::Hypervisor::uri`].
pub const LIBVIRT_URI: &str = "qemu:///system";

/// Runs `virsh -c qemu:///system ARGS…` and returns its stdout. A non-zero exit is an error
/// that carries the command line and stderr, so a failing test says what libvirt refused.
pub fn virsh(args: &[&str]) -> Result<String, RealVmError> {
    virsh_at(LIBVIRT_URI, args)
}

/// [`virsh`] on any libvirt URI.
pub fn virsh_at(uri: &str, args: &[&str]) -> Result<String, RealVmError> {
    tracing::debug!(uri, ?args, "virsh");
    let output = Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .map_err(RealVmError::io(
            "cannot run virsh (is libvirt-clients installed?)",
        ))?;
    if !output.status.success() {
        return Err(RealVmError::Virsh {
            args: format!("-c {uri} {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Names of all domains, running or not.
pub(crate) fn domain_names(uri: &str) -> Result<Vec<String>, RealVmError> {
    Ok(virsh_at(uri, &["list", "--all", "--name"])?
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Destroys (if running) and undefines a domain with its snapshot metadata. Storage is left
/// alone: the caller deletes its own files, never anything libvirt points at elsewhere.
pub(crate) fn destroy_and_undefine(uri: &str, name: &str) -> Result<(), RealVmError> {
    if !domain_names(uri)?.iter().any(|n| n == name) {
        return Ok(());
    }
    // Fails when the domain is already shut off; undefine below reports real trouble.
    if let Err(error) = virsh_at(uri, &["destroy", name]) {
        tracing::debug!(%error, name, "destroy failed (domain probably not running)");
    }
    virsh_at(uri, &["undefine", name, "--snapshots-metadata"])?;
    Ok(())
}
