//! The client commands (`state-*`, `operation-cancel`, `schedule`, `webhook`, `events`), talking
//! to a gateway over HTTP and decoding the
//! API's own records: output as a table, JSON or YAML (`--output`), progress on a terminal,
//! errors with their code and a hint.

pub mod client;
pub mod events;
mod hints;
pub mod operations;
pub mod output;
pub mod progress;
mod render;
pub mod schedules;
mod states;
pub mod webhooks;

pub use output::OutputFormat;
pub use states::{run, StateCommand};
