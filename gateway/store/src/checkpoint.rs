//! SQLite WAL checkpoints off the request path.
//!
//! With `synchronous = NORMAL` a commit only appends to the WAL; the costly part (copying pages
//! back into the database file and `fsync`ing it) is the checkpoint. Left to SQLite, it runs
//! inside whichever commit crosses `wal_autocheckpoint` pages: measured on the states API, one
//! save in ~100 paid 3–5 ms for it, most of the save's p99. Here a background
//! task runs `PRAGMA wal_checkpoint(PASSIVE)` shortly after writes (a passive checkpoint never
//! blocks readers or writers), and the per-connection automatic checkpoint is kept only as a
//! backstop, far above what the task lets the WAL reach.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection};

/// Pages (4 KiB) the WAL may hold before a commit checkpoints by itself: 16 MiB. Only reached
/// when the background task cannot keep up (a save writes ~24 pages: at 600 saves/s, the
/// benchmark's rate, that is ~1 s of writes).
pub(crate) const AUTOCHECKPOINT_BACKSTOP_PAGES: u32 = 4_096;

/// How often the task looks for new writes. Measured on the states API at 600 saves/s (docs/
/// BENCHMARKS.md): 250 ms let the WAL reach the backstop between rounds (save p99 6.2–6.6
/// ms), 100 ms gave 3.5–3.8 ms, 50 ms 3.2–3.3 ms, against 5.3 ms with SQLite's own
/// checkpoints. An idle gateway only wakes the task; it checkpoints after writes.
const INTERVAL: Duration = Duration::from_millis(50);

/// Counts writes; the checkpoint task runs only when the count moved.
#[derive(Debug, Default)]
pub(crate) struct WriteCounter(AtomicU64);

impl WriteCounter {
    pub(crate) fn wrote(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The running task; aborted when the last clone of the repository is dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Checkpointer {
    pub(crate) fn start(db: DatabaseConnection, writes: Arc<WriteCounter>) -> Self {
        let task = tokio::spawn(async move {
            let mut seen = writes.get();
            // Writes are counted when they start: one more round after the last new write
            // catches one that was still running.
            let mut one_more = false;
            let mut ticker = tokio::time::interval(INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let now = writes.get();
                if now != seen {
                    seen = now;
                    one_more = true;
                } else if one_more {
                    one_more = false;
                } else {
                    continue;
                }
                let started = Instant::now();
                match db
                    .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
                    .await
                {
                    Ok(_) => {
                        metrics::histogram!("snapgate_sqlite_checkpoint_seconds")
                            .record(started.elapsed().as_secs_f64());
                    }
                    // Also what a closed pool gives; the next writes retry.
                    Err(e) => tracing::debug!(error = %e, "background WAL checkpoint failed"),
                }
            }
        });
        Self { task }
    }
}
