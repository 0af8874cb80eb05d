//! snapgate-core: the domain of saved VM states and the service that owns every flow
//! (authenticate → quota → policy → dispatch → persist).
//!
//! This crate knows no HTTP, SQL, Redis, libvirt or wasmtime. Outside systems sit behind the
//! small traits in [`ports`]; each has one implementation crate beside this one.

pub mod auth;
pub mod domain;
pub mod error;
pub mod events;
pub mod ports;
pub mod schedule;
pub mod service;
pub mod webhook;

pub use domain::*;
pub use error::{ErrorBody, ServiceError};
pub use schedule::{Retention, RunOutcome, Schedule, ScheduleRun};
