//! snapgate-store: the [`Repository`](snapgate_core::ports::Repository) port over sea-orm, on
//! SQLite (one node) or PostgreSQL (production, several gateway replicas).
//!
//! ```no_run
//! # async fn start() -> Result<(), snapgate_core::ports::RepoError> {
//! let repo = snapgate_store::SeaRepository::connect("sqlite:///var/lib/snapgate/db.sqlite?mode=rwc").await?;
//! repo.migrate().await?;
//! # Ok(()) }
//! ```
//!
//! Every change of a state together with its operation is one transaction; the
//! one-operation-per-instance rule is the primary key of `instance_locks`, so it holds across
//! replicas. Connection failures are `RepoError::Unavailable` (503 for clients).

mod checkpoint;
mod connect;
mod convert;
pub mod entity;
mod errors;
mod notify;
mod repo;
pub mod testing;

pub use connect::{Backend, StoreOptions};
pub use repo::SeaRepository;
