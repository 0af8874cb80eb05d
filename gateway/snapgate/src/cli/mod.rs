//! The seed's CLI: `state-save`, `state-load`, `state-list`, `state-delete`, talking to a
//! gateway over HTTP.

pub mod client;
mod render;
pub mod schedules;
mod states;

pub use states::{run, StateCommand};
