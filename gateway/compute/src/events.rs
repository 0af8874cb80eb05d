//! libvirt's event loop. Keepalive, lifecycle events and close callbacks only work when an
//! event loop implementation is registered before the first connection opens and a thread
//! runs it; this process uses libvirt's default one (`virEventRegisterDefaultImpl`) on a
//! thread of its own. Callbacks run on that thread and must not block.

use std::sync::Once;

static START: Once = Once::new();

/// Registers and starts the event loop once per process.
pub(crate) fn ensure_event_loop() {
    START.call_once(|| {
        if let Err(e) = virt::event::event_register_default_impl() {
            tracing::error!(error = %e, "libvirt event loop not registered: no keepalive, no lifecycle events");
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| loop {
                if let Err(e) = virt::event::event_run_default_impl() {
                    tracing::warn!(error = %e, "libvirt event loop iteration failed");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "libvirt event loop thread not started");
        }
    });
}
