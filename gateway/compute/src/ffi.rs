//! The libvirt calls that the `virt` 0.4 crate does not wrap, called through `virt-sys`.
//!
//! This is the only module of the workspace allowed to use `unsafe`: keep it to thin,
//! checked wrappers and do every decision in safe code (`blocking.rs`).
#![allow(unsafe_code)]

use std::ffi::CStr;

use virt::connect::Connect;
use virt::error::Error as VirtError;

/// `virConnectCompareHypervisorCPU`: compares a guest CPU (`<cpu>` XML, or a domain XML that
/// has one) with the CPU that the hypervisor can give a guest of `virt_type` (`qemu` for TCG,
/// `kvm`…). libvirt picks the emulator, architecture and machine type itself.
///
/// This is what matters before a restore: `virConnectCompareCPU` compares with the host's
/// physical CPU instead, which says `incompatible` for a TCG guest that runs fine. With no
/// `virt_type` libvirt assumes `kvm` wherever `/dev/kvm` exists, even where KVM does not work.
///
/// Returns one of `VIR_CPU_COMPARE_{INCOMPATIBLE,IDENTICAL,SUPERSET}`, or libvirt's error.
/// Blocking: call from `spawn_blocking` only.
pub(crate) fn compare_hypervisor_cpu(
    conn: &Connect,
    virt_type: Option<&CStr>,
    cpu_xml: &CStr,
) -> Result<virt_sys::virCPUCompareResult, VirtError> {
    let virt_type_ptr = virt_type.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: `conn.as_ptr()` is a live connection: `conn` is a borrowed, open `Connect`
    // that holds its own reference (`virConnectRef`), so libvirt cannot free it during the
    // call, and libvirt connections may be used from any thread. `cpu_xml` and `virt_type`
    // are NUL-terminated strings borrowed for the whole call, and libvirt only reads them.
    // NULL is documented as "let libvirt choose" for emulator, arch and machine (and for
    // virttype). Flags 0: no validation against the schema, no error on incompatibility.
    let result = unsafe {
        virt_sys::virConnectCompareHypervisorCPU(
            conn.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null(),
            virt_type_ptr,
            cpu_xml.as_ptr(),
            0,
        )
    };
    if result == virt_sys::VIR_CPU_COMPARE_ERROR {
        // libvirt keeps the last error per thread; nothing ran on this thread in between.
        return Err(VirtError::last_error());
    }
    Ok(result)
}
