//! The circuit breaker of one host.
//!
//! - `Closed`: calls go through (connecting on first use).
//! - `Open`: the host is known down (a connection failed, timed out or was lost): calls are
//!   refused at once with `HostUnreachable`, so a dead host costs its own instances nothing but
//!   a fast 503 and costs other hosts nothing at all.
//! - `HalfOpen`: the background reconnector is trying the host (calls are still refused); it
//!   closes the breaker when the connection opens, or opens it again with a longer wait.
//!
//! Requests never reconnect a host whose breaker is open: only the reconnector does
//! (`backend.rs`), one attempt at a time, with exponential back-off.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use snapgate_core::ports::{BreakerState, ComputeError};

pub(crate) struct Breaker {
    host: String,
    inner: Mutex<Inner>,
}

struct Inner {
    state: BreakerState,
    /// Why the breaker opened last.
    error: Option<String>,
    /// Consecutive failed attempts since the breaker opened (sets the back-off).
    failures: u32,
    /// When the reconnector may try again.
    retry_at: Instant,
}

impl Breaker {
    pub(crate) fn new(host: &str) -> Self {
        let breaker = Self {
            host: host.to_owned(),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                error: None,
                failures: 0,
                retry_at: Instant::now(),
            }),
        };
        breaker.publish(BreakerState::Closed);
        breaker
    }

    /// `Ok` when calls may go to the host; else the fast refusal.
    pub(crate) fn check(&self) -> Result<(), ComputeError> {
        let inner = self.lock();
        match inner.state {
            BreakerState::Closed => Ok(()),
            _ => Err(ComputeError::HostUnreachable {
                host: self.host.clone(),
                message: format!(
                    "host is down, calls are not sent to it until it reconnects ({})",
                    inner.error.as_deref().unwrap_or("connection lost")
                ),
            }),
        }
    }

    pub(crate) fn state(&self) -> (BreakerState, Option<String>) {
        let inner = self.lock();
        (inner.state, inner.error.clone())
    }

    /// The host failed (connection refused, timed out or lost): refuse calls until the
    /// reconnector brings it back. Returns whether the breaker was closed before.
    pub(crate) fn trip(&self, error: &str, min: Duration, max: Duration) -> bool {
        let mut inner = self.lock();
        let was_closed = inner.state == BreakerState::Closed;
        inner.failures = inner.failures.saturating_add(1);
        // min, 2·min, 4·min … up to max.
        let factor = 1u32 << (inner.failures - 1).min(16);
        let wait = min.saturating_mul(factor).min(max);
        inner.retry_at = Instant::now() + wait;
        inner.error = Some(error.to_owned());
        inner.state = BreakerState::Open;
        drop(inner);
        self.publish(BreakerState::Open);
        if was_closed {
            tracing::warn!(host = %self.host, %error, "compute host down: breaker open, its calls are refused until it reconnects");
            metrics::counter!("snapgate_host_breaker_opened_total", "host" => self.host.clone())
                .increment(1);
        }
        was_closed
    }

    /// The reconnector may try the host now: moves `Open` to `HalfOpen` when its wait is over.
    pub(crate) fn try_half_open(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        if inner.state == BreakerState::Open && now >= inner.retry_at {
            inner.state = BreakerState::HalfOpen;
            drop(inner);
            self.publish(BreakerState::HalfOpen);
            true
        } else {
            false
        }
    }

    /// A connection opened: calls go through again. Returns whether the breaker was not closed.
    pub(crate) fn close(&self) -> bool {
        let mut inner = self.lock();
        let was_open = inner.state != BreakerState::Closed;
        inner.state = BreakerState::Closed;
        inner.failures = 0;
        inner.error = None;
        drop(inner);
        if was_open {
            self.publish(BreakerState::Closed);
            tracing::info!(host = %self.host, "compute host back: breaker closed");
        }
        was_open
    }

    fn publish(&self, state: BreakerState) {
        let code = match state {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        metrics::gauge!("snapgate_host_breaker_state", "host" => self.host.clone()).set(code);
        let up = if state == BreakerState::Closed {
            1.0
        } else {
            0.0
        };
        metrics::gauge!("snapgate_host_up", "host" => self.host.clone()).set(up);
    }

    /// Only whole values are written under the lock, so a poisoned one is safe to take over.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_backs_off_and_closes() {
        let b = Breaker::new("h");
        assert!(b.check().is_ok());
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(250));
        assert!(b.trip("refused", min, max));
        assert!(matches!(
            b.check(),
            Err(ComputeError::HostUnreachable { .. })
        ));
        let now = Instant::now();
        assert!(!b.try_half_open(now), "the first wait is not over");
        assert!(b.try_half_open(now + min));
        assert_eq!(b.state().0, BreakerState::HalfOpen);
        assert!(b.check().is_err(), "half-open still refuses calls");
        assert!(!b.trip("refused again", min, max), "it was not closed");
        let now = Instant::now();
        assert!(!b.try_half_open(now + min), "the second wait is doubled");
        assert!(b.try_half_open(now + max));
        assert!(b.close());
        assert!(b.check().is_ok());
        assert_eq!(b.state(), (BreakerState::Closed, None));
    }
}
