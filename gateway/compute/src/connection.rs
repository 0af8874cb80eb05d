//! One libvirt connection per host: opened lazily, kept, checked with `is_alive()` and
//! reopened when it dropped.

use std::sync::{Mutex, MutexGuard};

use snapgate_core::ports::ComputeError;
use virt::connect::Connect;

use crate::errors::Fail;

/// A host's connection slot.
///
/// The mutex guards the slot (open, check, replace, close), not the calls: a caller takes a
/// reference-counted handle (`virConnectRef`) under the lock and makes its libvirt calls after
/// releasing it. libvirt connections are thread-safe, so a slow snapshot on one host does not
/// hold back a `ping` or `locate` on the same host, and closing the slot while a call is in
/// flight only drops the slot's reference.
pub(crate) struct HostConnection {
    pub(crate) name: String,
    pub(crate) uri: String,
    slot: Mutex<Option<Connect>>,
}

/// A reference to a host's connection for the duration of one blocking call.
pub(crate) struct ConnHandle(Connect);

impl std::ops::Deref for ConnHandle {
    type Target = Connect;
    fn deref(&self) -> &Connect {
        &self.0
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        // Releases this handle's reference; the connection closes when the last one goes.
        if let Err(e) = self.0.close() {
            tracing::debug!(error = %e, "releasing a libvirt connection reference failed");
        }
    }
}

impl HostConnection {
    pub(crate) fn new(name: String, uri: String) -> Self {
        Self {
            name,
            uri,
            slot: Mutex::new(None),
        }
    }

    /// The kept connection, opened first if there is none or it is no longer alive.
    /// Blocking: call from `spawn_blocking` only.
    pub(crate) fn handle(&self) -> Result<ConnHandle, Fail> {
        let mut slot = self.lock();
        if let Some(conn) = slot.as_ref() {
            match conn.is_alive() {
                Ok(true) => return Ok(ConnHandle(conn.clone())),
                Ok(false) => {
                    tracing::warn!(host = %self.name, "libvirt connection is no longer alive, reconnecting")
                }
                Err(e) => {
                    tracing::warn!(host = %self.name, error = %e, "libvirt connection check failed, reconnecting")
                }
            }
            Self::close_slot(&self.name, &mut slot);
        }
        let conn = Connect::open(Some(&self.uri)).map_err(|e| {
            Fail::Compute(ComputeError::HostUnreachable {
                host: self.name.clone(),
                message: e.message().to_owned(),
            })
        })?;
        tracing::info!(host = %self.name, uri = %self.uri, "libvirt connection opened");
        let handle = ConnHandle(conn.clone());
        *slot = Some(conn);
        Ok(handle)
    }

    /// Drops the kept connection; the next call opens a new one.
    pub(crate) fn disconnect(&self) {
        let mut slot = self.lock();
        Self::close_slot(&self.name, &mut slot);
    }

    fn close_slot(name: &str, slot: &mut Option<Connect>) {
        if let Some(mut conn) = slot.take() {
            if let Err(e) = conn.close() {
                tracing::debug!(host = %name, error = %e, "closing a stale libvirt connection failed");
            }
        }
    }

    /// A panic inside a libvirt call cannot leave the slot half-written (it is only replaced
    /// whole), so a poisoned lock is safe to take over.
    fn lock(&self) -> MutexGuard<'_, Option<Connect>> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
