//! What a store holds while a plugin runs: the memory limiter and the plugin's log lines.

use serde::Serialize;
use wasmtime::ResourceLimiter;

use crate::bindings::{v0_1, v0_2, LogLevel};

/// Lines a plugin may log per evaluation; later ones are counted, not written.
pub(crate) const MAX_LOG_LINES: usize = 16;
/// Bytes kept of one log line; the rest is cut.
pub(crate) const MAX_LOG_LINE_BYTES: usize = 512;

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// Raised from the limiter when a guest asks for memory past the cap, so the trap can be told
/// apart from others.
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {cap} bytes exceeded (asked for {desired})")]
pub(crate) struct MemoryCapExceeded {
    pub cap: usize,
    pub desired: usize,
}

pub(crate) struct HostState {
    plugin: String,
    memory_cap: usize,
    /// Largest linear memory size the guest reached, in bytes.
    pub peak_memory: usize,
    /// Lines written so far (counted against [`MAX_LOG_LINES`]).
    pub log_count: usize,
    pub logs: Vec<LogLine>,
    pub dropped_logs: usize,
    /// Keep lines for the caller (`eval_once`) besides writing them to `tracing`.
    keep_logs: bool,
}

impl HostState {
    pub(crate) fn new(plugin: &str, memory_cap: usize, keep_logs: bool) -> Self {
        HostState {
            plugin: plugin.to_string(),
            memory_cap,
            peak_memory: 0,
            log_count: 0,
            logs: Vec::new(),
            dropped_logs: 0,
            keep_logs,
        }
    }
}

impl HostState {
    /// What is left in a store whose state was taken out (it is never run again).
    pub(crate) fn taken() -> Self {
        HostState::new("", 0, false)
    }
}

impl v0_2::PolicyImports for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        self.write_log(level, message);
    }
}

impl v0_1::PolicyImports for HostState {
    fn log(&mut self, level: v0_1::LogLevel, message: String) {
        let level = match level {
            v0_1::LogLevel::Debug => LogLevel::Debug,
            v0_1::LogLevel::Info => LogLevel::Info,
            v0_1::LogLevel::Warn => LogLevel::Warn,
            v0_1::LogLevel::Error => LogLevel::Error,
        };
        self.write_log(level, message);
    }
}

impl HostState {
    fn write_log(&mut self, level: LogLevel, message: String) {
        if self.log_count >= MAX_LOG_LINES {
            self.dropped_logs += 1;
            return;
        }
        self.log_count += 1;
        let message = truncate(message, MAX_LOG_LINE_BYTES);
        let plugin = self.plugin.as_str();
        let level = match level {
            LogLevel::Debug => {
                tracing::debug!(target: "snapgate::plugin", plugin, "{message}");
                "debug"
            }
            LogLevel::Info => {
                tracing::info!(target: "snapgate::plugin", plugin, "{message}");
                "info"
            }
            LogLevel::Warn => {
                tracing::warn!(target: "snapgate::plugin", plugin, "{message}");
                "warn"
            }
            LogLevel::Error => {
                tracing::error!(target: "snapgate::plugin", plugin, "{message}");
                "error"
            }
        };
        if self.keep_logs {
            self.logs.push(LogLine {
                level: level.to_string(),
                message,
            });
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            // An error (not `Ok(false)`) traps at once: a Rust guest would otherwise try to
            // report the failed allocation and the cause would be lost.
            return Err(wasmtime::Error::new(MemoryCapExceeded {
                cap: self.memory_cap,
                desired,
            }));
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}
