//! The libvirt calls that the `virt` 0.4 crate does not wrap, called through `virt-sys`.
//!
//! This is the only module of the workspace allowed to use `unsafe`: keep it to thin,
//! checked wrappers and do every decision in safe code (`blocking.rs`).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};

use virt::connect::Connect;
use virt::domain::Domain;
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

/// `virDomainMigrateGetMaxDowntime`: the domain's migration downtime limit in milliseconds
/// (QEMU's `downtime-limit`, 300 by default), which also bounds the final pass of a live save.
/// Blocking: call from `spawn_blocking` only.
pub(crate) fn migrate_max_downtime_ms(dom: &Domain) -> Result<u64, VirtError> {
    let mut downtime: std::ffi::c_ulonglong = 0;
    // SAFETY: `dom.as_ptr()` is a live domain handle: `dom` is a borrowed `Domain` holding its
    // own reference, so libvirt cannot free it during the call, and libvirt objects may be used
    // from any thread. `downtime` is a valid, writable u64 for the whole call; flags must be 0.
    let rc = unsafe { virt_sys::virDomainMigrateGetMaxDowntime(dom.as_ptr(), &mut downtime, 0) };
    if rc < 0 {
        // libvirt keeps the last error per thread; nothing ran on this thread in between.
        return Err(VirtError::last_error());
    }
    Ok(downtime)
}

/// A domain's current job, as `virDomainGetJobStats` reports it: the fields snapgate reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JobStats {
    /// libvirt's job type: `VIR_DOMAIN_JOB_NONE` (0) when no job runs.
    pub job_type: c_int,
    /// Passes over the guest's memory so far (a live save or a migration).
    pub memory_iteration: Option<u64>,
    /// Memory plus disk bytes: all, done so far, still to do.
    pub data_total: Option<u64>,
    pub data_processed: Option<u64>,
    pub data_remaining: Option<u64>,
    pub memory_total: Option<u64>,
    pub memory_remaining: Option<u64>,
    pub disk_total: Option<u64>,
    pub disk_remaining: Option<u64>,
}

/// `virDomainGetJobStats` for the domain's current job, its parameters freed by libvirt's own
/// `virTypedParamsFree`.
///
/// Not `virt::Domain::get_job_stats`: virt 0.4 hands libvirt's array to
/// `Vec::from_raw_parts`, which is undefined behaviour when there is no job (libvirt answers
/// with no parameters and a NULL array) and, in a debug build, aborts the whole process on
/// its non-null check: a watcher that polled just before or after a save's job took the
/// gateway down with it. Blocking: call from `spawn_blocking` or a thread of its own.
pub(crate) fn job_stats(dom: &Domain) -> Result<JobStats, VirtError> {
    let mut job_type: c_int = 0;
    let mut params: virt_sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut nparams: c_int = 0;
    // SAFETY: `dom.as_ptr()` is a live domain handle (a borrowed `Domain` holding its own
    // reference). The three out-pointers are valid and writable for the call; libvirt
    // allocates `params` (or leaves it NULL with `nparams` 0). Flags 0: the current job.
    let rc = unsafe {
        virt_sys::virDomainGetJobStats(dom.as_ptr(), &mut job_type, &mut params, &mut nparams, 0)
    };
    if rc < 0 {
        // libvirt keeps the last error per thread; nothing ran on this thread in between.
        return Err(VirtError::last_error());
    }
    let read = |name: &CStr| -> Option<u64> {
        if params.is_null() {
            return None;
        }
        let mut value: std::ffi::c_ulonglong = 0;
        // SAFETY: `params` holds `nparams` parameters allocated by libvirt above and not yet
        // freed; `name` is NUL-terminated; `value` is writable. Returns 1 when found.
        let found = unsafe {
            virt_sys::virTypedParamsGetULLong(params, nparams, name.as_ptr(), &mut value)
        };
        (found == 1).then_some(value)
    };
    let stats = JobStats {
        job_type,
        memory_iteration: read(virt_sys::VIR_DOMAIN_JOB_MEMORY_ITERATION),
        data_total: read(virt_sys::VIR_DOMAIN_JOB_DATA_TOTAL),
        data_processed: read(virt_sys::VIR_DOMAIN_JOB_DATA_PROCESSED),
        data_remaining: read(virt_sys::VIR_DOMAIN_JOB_DATA_REMAINING),
        memory_total: read(virt_sys::VIR_DOMAIN_JOB_MEMORY_TOTAL),
        memory_remaining: read(virt_sys::VIR_DOMAIN_JOB_MEMORY_REMAINING),
        disk_total: read(virt_sys::VIR_DOMAIN_JOB_DISK_TOTAL),
        disk_remaining: read(virt_sys::VIR_DOMAIN_JOB_DISK_REMAINING),
    };
    if !params.is_null() {
        // SAFETY: `params`/`nparams` are exactly what libvirt returned, freed once, here.
        unsafe { virt_sys::virTypedParamsFree(params, nparams) };
    }
    Ok(stats)
}

/// `virDomainAbortJob`: aborts the domain's current job (a save's migration to file, which
/// makes the snapshot call fail). libvirt answers with an error when no job runs.
/// (`virt` 0.4 has no wrapper.) Blocking: call from `spawn_blocking` only.
pub(crate) fn abort_job(dom: &Domain) -> Result<(), VirtError> {
    // SAFETY: `dom.as_ptr()` is a live domain handle (a borrowed `Domain` holding its own
    // reference); the call takes nothing else.
    if unsafe { virt_sys::virDomainAbortJob(dom.as_ptr()) } < 0 {
        // libvirt keeps the last error per thread; nothing ran on this thread in between.
        return Err(VirtError::last_error());
    }
    Ok(())
}

/// What a lifecycle callback is given: the domain's uuid (text), libvirt's event type and detail.
pub(crate) type LifecycleSink = Box<dyn Fn(&str, c_int, c_int) + Send + Sync>;

/// What a close callback is given: libvirt's close reason.
pub(crate) type CloseSink = Box<dyn Fn(c_int) + Send + Sync>;

/// The C shape of a lifecycle callback (`virConnectDomainEventCallback`).
type LifecycleFn = unsafe extern "C" fn(
    virt_sys::virConnectPtr,
    virt_sys::virDomainPtr,
    c_int,
    c_int,
    *mut c_void,
);

unsafe extern "C" fn on_lifecycle(
    _conn: virt_sys::virConnectPtr,
    dom: virt_sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) {
    let mut buf = [0 as c_char; virt_sys::VIR_UUID_STRING_BUFLEN as usize];
    // SAFETY: libvirt passes a domain that lives for the duration of the callback, and the
    // buffer is VIR_UUID_STRING_BUFLEN long, as virDomainGetUUIDString requires (it writes a
    // NUL-terminated string; no RPC, the uuid is part of the domain object).
    if unsafe { virt_sys::virDomainGetUUIDString(dom, buf.as_mut_ptr()) } != 0 {
        return;
    }
    // SAFETY: written NUL-terminated just above.
    let uuid = unsafe { CStr::from_ptr(buf.as_ptr()) };
    // SAFETY: `opaque` is the `Box<LifecycleSink>` given at registration; libvirt keeps it
    // alive until it calls `free_lifecycle` after deregistration.
    let sink = unsafe { &*(opaque as *const LifecycleSink) };
    if let Ok(uuid) = uuid.to_str() {
        // Unwinding into C is undefined behaviour: a panicking sink is contained here.
        let _ =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(uuid, event, detail)));
    }
}

unsafe extern "C" fn free_lifecycle(opaque: *mut c_void) {
    // SAFETY: the pointer came from `Box::into_raw` in `register_lifecycle_events`, and
    // libvirt calls this exactly once, after the last callback.
    drop(unsafe { Box::from_raw(opaque as *mut LifecycleSink) });
}

/// `virConnectDomainEventRegisterAny(VIR_DOMAIN_EVENT_ID_LIFECYCLE)` for every domain of
/// `conn`. Callbacks run on the thread that runs libvirt's event loop (`events.rs`); the sink
/// must not block. Returns the callback id for [`deregister_events`].
pub(crate) fn register_lifecycle_events(
    conn: &Connect,
    sink: LifecycleSink,
) -> Result<c_int, VirtError> {
    let opaque = Box::into_raw(Box::new(sink)) as *mut c_void;
    // SAFETY: libvirt calls a callback registered for VIR_DOMAIN_EVENT_ID_LIFECYCLE with the
    // lifecycle signature; the generic type in the prototype is only a placeholder, and its
    // documentation asks for exactly this cast (VIR_DOMAIN_EVENT_CALLBACK).
    let generic = unsafe {
        std::mem::transmute::<
            LifecycleFn,
            unsafe extern "C" fn(virt_sys::virConnectPtr, virt_sys::virDomainPtr, *mut c_void),
        >(on_lifecycle)
    };
    // SAFETY: `conn` is a live connection; a NULL domain means "every domain"; `opaque` stays
    // valid until libvirt calls `free_lifecycle`.
    let id = unsafe {
        virt_sys::virConnectDomainEventRegisterAny(
            conn.as_ptr(),
            std::ptr::null_mut(),
            virt_sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
            Some(generic),
            opaque,
            Some(free_lifecycle),
        )
    };
    if id < 0 {
        let e = VirtError::last_error();
        // SAFETY: registration failed, so libvirt did not take the pointer (freecb is only
        // called for registered callbacks).
        drop(unsafe { Box::from_raw(opaque as *mut LifecycleSink) });
        return Err(e);
    }
    Ok(id)
}

/// Removes an event callback (which releases the reference it holds on the connection).
pub(crate) fn deregister_events(conn: &Connect, id: c_int) {
    // SAFETY: `conn` is live; an unknown id is an error, not undefined behaviour.
    if unsafe { virt_sys::virConnectDomainEventDeregisterAny(conn.as_ptr(), id) } < 0 {
        tracing::debug!(error = %VirtError::last_error(), "deregistering libvirt events failed");
    }
}

unsafe extern "C" fn on_close(_conn: virt_sys::virConnectPtr, reason: c_int, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Box<CloseSink>` given at registration, alive until `free_close`.
    let sink = unsafe { &*(opaque as *const CloseSink) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(reason)));
}

unsafe extern "C" fn free_close(opaque: *mut c_void) {
    // SAFETY: from `Box::into_raw` in `register_close_callback`; libvirt frees it once.
    drop(unsafe { Box::from_raw(opaque as *mut CloseSink) });
}

/// `virConnectRegisterCloseCallback`: `sink` learns when libvirt closes the connection itself
/// (the peer went away, or stopped answering keepalives). Runs on the event loop thread.
pub(crate) fn register_close_callback(conn: &Connect, sink: CloseSink) -> Result<(), VirtError> {
    let opaque = Box::into_raw(Box::new(sink)) as *mut c_void;
    // SAFETY: `conn` is live; `opaque` stays valid until libvirt calls `free_close`.
    let rc = unsafe {
        virt_sys::virConnectRegisterCloseCallback(
            conn.as_ptr(),
            Some(on_close),
            opaque,
            Some(free_close),
        )
    };
    if rc < 0 {
        let e = VirtError::last_error();
        // SAFETY: not registered, so libvirt did not take the pointer.
        drop(unsafe { Box::from_raw(opaque as *mut CloseSink) });
        return Err(e);
    }
    Ok(())
}

/// Removes the close callback (and the reference on the connection it holds).
pub(crate) fn unregister_close_callback(conn: &Connect) {
    // SAFETY: `conn` is live; `on_close` is the callback registered above.
    if unsafe { virt_sys::virConnectUnregisterCloseCallback(conn.as_ptr(), Some(on_close)) } < 0 {
        tracing::debug!(error = %VirtError::last_error(), "unregistering the close callback failed");
    }
}
