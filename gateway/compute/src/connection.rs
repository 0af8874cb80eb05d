//! One libvirt connection per host: opened on first use (bounded by the connect timeout), kept,
//! checked with `is_alive()`, watched by libvirt keepalive and a close callback, and guarded by
//! the host's circuit breaker (`breaker.rs`).

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use snapgate_core::ports::{ComputeError, HostEvent};
use tokio::sync::broadcast;
use uuid::Uuid;
use virt::connect::Connect;
use virt::sys;

use crate::breaker::Breaker;
use crate::config::HostResilience;
use crate::errors::Fail;
use crate::ffi;

/// What every host shares: its settings and where it reports.
pub(crate) struct HostContext {
    pub(crate) resilience: HostResilience,
    /// Lifecycle events and reconnections, for the placement index.
    pub(crate) events: broadcast::Sender<HostEvent>,
    /// Names of hosts whose connection libvirt closed by itself (keepalive, EOF): the
    /// reconnector opens their breaker (`backend.rs`).
    pub(crate) lost: std::sync::mpsc::Sender<String>,
}

/// A host's connection slot and breaker.
///
/// The mutex guards the slot (open, check, replace), not the calls: a caller takes a
/// reference-counted handle (`virConnectRef`) under the lock and makes its libvirt calls after
/// releasing it. libvirt connections are thread-safe, so a slow snapshot on one host does not
/// hold back a `ping` or `describe` on the same host, and dropping the slot while a call is in
/// flight only drops the slot's reference.
pub(crate) struct HostConnection {
    pub(crate) name: String,
    pub(crate) uri: String,
    pub(crate) breaker: Breaker,
    slot: Mutex<Option<Live>>,
    /// Mirrors `slot.is_some()` for readers that must never wait on the slot's lock.
    connected: AtomicBool,
    /// The host had a connection before: the next one is a reconnection (events were missed).
    opened_before: AtomicBool,
    /// Connection attempts whose thread has not returned (a host that accepts and never
    /// answers holds them until it answers or the socket closes). At most
    /// [`MAX_PENDING_OPENS`] per host, so a hanging host cannot pile up threads.
    opening: Arc<AtomicUsize>,
    ctx: Arc<HostContext>,
}

/// An open connection with the callbacks registered on it.
struct Live {
    conn: Connect,
    events: Option<c_int>,
    close_callback: bool,
}

impl Drop for Live {
    fn drop(&mut self) {
        // The callbacks hold references on the connection: release them first, or it never
        // closes.
        if let Some(id) = self.events.take() {
            ffi::deregister_events(&self.conn, id);
        }
        if self.close_callback {
            ffi::unregister_close_callback(&self.conn);
        }
        if let Err(e) = self.conn.close() {
            tracing::debug!(error = %e, "closing a libvirt connection failed");
        }
    }
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
    pub(crate) fn new(name: String, uri: String, ctx: Arc<HostContext>) -> Self {
        Self {
            breaker: Breaker::new(&name),
            name,
            uri,
            slot: Mutex::new(None),
            connected: AtomicBool::new(false),
            opened_before: AtomicBool::new(false),
            opening: Arc::new(AtomicUsize::new(0)),
            ctx,
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The kept connection, opened first if there is none or it is no longer alive. Refused at
    /// once while the host's breaker is open; a failed open opens it.
    /// Blocking: call from `spawn_blocking` only.
    pub(crate) fn handle(&self) -> Result<ConnHandle, Fail> {
        self.breaker.check()?;
        let mut slot = self.lock();
        if let Some(live) = slot.as_ref() {
            match live.conn.is_alive() {
                Ok(true) => return Ok(ConnHandle(live.conn.clone())),
                Ok(false) => {
                    tracing::warn!(host = %self.name, "libvirt connection is no longer alive, reconnecting")
                }
                Err(e) => {
                    tracing::warn!(host = %self.name, error = %e, "libvirt connection check failed, reconnecting")
                }
            }
            self.clear(&mut slot);
        }
        // Another caller may have found the host down while this one waited for the lock.
        self.breaker.check()?;
        match self.open() {
            Ok(live) => {
                let handle = ConnHandle(live.conn.clone());
                self.install(&mut slot, live, false);
                Ok(handle)
            }
            Err(message) => {
                drop(slot);
                self.trip(&message);
                Err(Fail::Compute(ComputeError::HostUnreachable {
                    host: self.name.clone(),
                    message,
                }))
            }
        }
    }

    /// Drops the kept connection; the next call opens a new one.
    pub(crate) fn disconnect(&self) {
        let mut slot = self.lock();
        self.clear(&mut slot);
    }

    /// The host failed (connection refused, lost, or a call timed out): drop the connection
    /// and refuse calls until the reconnector brings it back.
    pub(crate) fn mark_down(&self, error: &str) {
        self.trip(error);
        self.disconnect();
    }

    /// The reconnector's attempt (the breaker is half-open): opens a connection and closes the
    /// breaker, or opens it again for a longer wait. Blocking.
    pub(crate) fn reconnect(&self) {
        match self.open() {
            Ok(live) => {
                let mut slot = self.lock();
                self.install(&mut slot, live, true);
                drop(slot);
                self.breaker.close();
            }
            Err(message) => self.trip(&message),
        }
    }

    fn trip(&self, message: &str) {
        let r = &self.ctx.resilience;
        self.breaker.trip(message, r.reconnect_min, r.reconnect_max);
    }

    /// Keeps a new connection. `after_outage`: the reconnector brought the host back.
    fn install(&self, slot: &mut Option<Live>, live: Live, after_outage: bool) {
        self.clear(slot);
        *slot = Some(live);
        self.connected.store(true, Ordering::Release);
        if self.opened_before.swap(true, Ordering::AcqRel) || after_outage {
            // Events of the time without a connection are lost: the index re-reads this host.
            let _ = self.ctx.events.send(HostEvent::Reconnected {
                host: self.name.clone(),
            });
        }
    }

    fn clear(&self, slot: &mut Option<Live>) {
        self.connected.store(false, Ordering::Release);
        if let Some(live) = slot.take() {
            // Releasing the callbacks talks to the host, which may be the one not answering:
            // never on a caller's thread.
            let spawned = std::thread::Builder::new()
                .name("libvirt-close".into())
                .spawn(move || drop(live));
            if let Err(e) = spawned {
                tracing::warn!(host = %self.name, error = %e, "cannot start a thread to close a connection; it is leaked");
            }
        }
    }

    /// Opens a connection within the connect timeout, with keepalive, lifecycle events and a
    /// close callback. libvirt's open has no timeout of its own, so it runs on its own thread;
    /// a thread that outlives the timeout closes its connection when it finally returns.
    fn open(&self) -> Result<Live, String> {
        if self.opening.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_OPENS {
            self.opening.fetch_sub(1, Ordering::AcqRel);
            return Err("earlier connection attempts have not returned yet".into());
        }
        let timeout = self.ctx.resilience.connect_timeout;
        let rendezvous = Arc::new((Mutex::new(Attempt::Waiting), Condvar::new()));
        let (uri, opening, theirs) = (self.uri.clone(), self.opening.clone(), rendezvous.clone());
        let spawned = std::thread::Builder::new()
            .name("libvirt-open".into())
            .spawn(move || {
                let opened = Connect::open(Some(&uri)).map_err(|e| e.message().to_owned());
                opening.fetch_sub(1, Ordering::AcqRel);
                let (lock, ready) = &*theirs;
                let mut attempt = lock.lock().unwrap_or_else(|p| p.into_inner());
                match (&*attempt, opened) {
                    (Attempt::Abandoned, Ok(mut conn)) => {
                        let _ = conn.close();
                    }
                    (_, opened) => *attempt = Attempt::Done(opened),
                }
                ready.notify_all();
            });
        if let Err(e) = spawned {
            self.opening.fetch_sub(1, Ordering::AcqRel);
            return Err(format!("cannot start a connection thread: {e}"));
        }
        let (lock, ready) = &*rendezvous;
        let attempt = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (mut attempt, _) = ready
            .wait_timeout_while(attempt, timeout, |a| matches!(a, Attempt::Waiting))
            .unwrap_or_else(|p| p.into_inner());
        let conn = match std::mem::replace(&mut *attempt, Attempt::Abandoned) {
            Attempt::Done(opened) => opened?,
            _ => {
                return Err(format!(
                    "no answer within the connect timeout ({:.1} s)",
                    timeout.as_secs_f64()
                ))
            }
        };
        drop(attempt);
        tracing::info!(host = %self.name, uri = %self.uri, "libvirt connection opened");
        Ok(self.watch(conn))
    }

    /// Keepalive, lifecycle events and the close callback on a new connection. A driver
    /// without one of them (keepalive is remote-only) still serves calls.
    fn watch(&self, conn: Connect) -> Live {
        let r = &self.ctx.resilience;
        let interval = r.keepalive_interval.as_secs().min(i32::MAX as u64) as i32;
        if interval > 0 {
            if let Err(e) = conn.set_keep_alive(interval, r.keepalive_count) {
                tracing::debug!(host = %self.name, error = %e, "no keepalive on this connection");
            }
        }
        let (host, events) = (self.name.clone(), self.ctx.events.clone());
        let events = match ffi::register_lifecycle_events(
            &conn,
            Box::new(move |uuid, event, _detail| {
                if let Some(e) = lifecycle_event(&host, uuid, event) {
                    // No receiver yet is fine: the index reads the inventory when it starts.
                    let _ = events.send(e);
                }
            }),
        ) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::debug!(host = %self.name, error = %e, "no lifecycle events on this connection");
                None
            }
        };
        let (host, lost) = (self.name.clone(), self.ctx.lost.clone());
        let close_callback = ffi::register_close_callback(
            &conn,
            Box::new(move |reason| {
                tracing::warn!(%host, reason = close_reason(reason), "libvirt closed the connection");
                let _ = lost.send(host.clone());
            }),
        )
        .map_err(|e| tracing::debug!(host = %self.name, error = %e, "no close callback on this connection"))
        .is_ok();
        Live {
            conn,
            events,
            close_callback,
        }
    }

    /// A panic inside a libvirt call cannot leave the slot half-written (it is only replaced
    /// whole), so a poisoned lock is safe to take over.
    fn lock(&self) -> MutexGuard<'_, Option<Live>> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

enum Attempt {
    Waiting,
    Done(Result<Connect, String>),
    /// The caller stopped waiting; a connection that opens later is closed at once.
    Abandoned,
}

/// The placement-relevant meaning of a libvirt lifecycle event.
fn lifecycle_event(host: &str, uuid: &str, event: c_int) -> Option<HostEvent> {
    let instance = Uuid::parse_str(uuid).ok()?;
    let host = host.to_owned();
    match u32::try_from(event).ok()? {
        sys::VIR_DOMAIN_EVENT_DEFINED => Some(HostEvent::InstanceSeen {
            host,
            instance,
            active: false,
        }),
        // Started covers booted, restored and migrated in.
        sys::VIR_DOMAIN_EVENT_STARTED | sys::VIR_DOMAIN_EVENT_RESUMED => {
            Some(HostEvent::InstanceSeen {
                host,
                instance,
                active: true,
            })
        }
        sys::VIR_DOMAIN_EVENT_UNDEFINED => Some(HostEvent::InstanceGone { host, instance }),
        _ => None,
    }
}

fn close_reason(reason: c_int) -> &'static str {
    match u32::try_from(reason).unwrap_or(u32::MAX) {
        sys::VIR_CONNECT_CLOSE_REASON_EOF => "eof",
        sys::VIR_CONNECT_CLOSE_REASON_KEEPALIVE => "keepalive timeout",
        sys::VIR_CONNECT_CLOSE_REASON_CLIENT => "client",
        _ => "error",
    }
}

/// Connection attempts per host that may be waiting on a host at once.
const MAX_PENDING_OPENS: usize = 3;

/// How long to wait between checks of the reconnector (`backend.rs`).
pub(crate) const RECONNECT_TICK: Duration = Duration::from_millis(100);
