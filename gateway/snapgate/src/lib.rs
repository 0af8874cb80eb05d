//! The `snapgate` binary's parts: configuration, wiring (`serve`), the embedded demo
//! defaults, telemetry, the HTTP CLI and the plugin author's commands.

pub mod cli;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod lifecycle_config;
mod log_json;
pub mod plugin_cmd;
pub mod serve;
pub mod telemetry;
mod webhook_transport;
pub mod webhooks_config;
