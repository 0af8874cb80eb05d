//! snapgate-policy: the wasmtime host of the `snapgate:policy` plugin contract
//! (`wit/<version>/snapgate-policy.wit`): 0.2.0, and 0.1.0 for plugins built against it, side
//! by side in one chain (a binding per version, `bindings.rs`).
//!
//! [`WasmPolicyEngine`] implements [`snapgate_core::ports::PolicyEngine`]: it evaluates an
//! ordered chain of WebAssembly components, each in a fresh instance per request (instantiated
//! ahead of the request by a background thread when it can, see `pool.rs`), under a
//! deadline (epoch interruption) and a memory cap (pooling allocator + store limiter). The
//! chain is swapped atomically by [`WasmPolicyEngine::reload`]. [`check_component`] and
//! [`eval_once`] serve the `snapgate plugin check|eval` commands.
//!
//! Plugins get no ambient capabilities: the only import the host provides is the contract's
//! `log`; any other import (Rust `wasm32-wasip2` guests import some WASI interfaces) is linked
//! to a function that traps. See docs/PLUGINS.md.

mod bindings;
mod cache;
mod chain;
mod cli;
mod convert;
mod engine;
mod error;
mod host;
pub mod json;
mod plugin;
mod pool;
mod runtime;
mod spec;

pub use bindings::ContractVersion;
pub use chain::{ChainInfo, PluginStats, PluginSummary};
pub use cli::{
    check_chain, check_component, eval_once, CheckedPlugin, EvalReport, PluginInfo, PluginRunner,
};
pub use engine::WasmPolicyEngine;
pub use error::{EvalError, LoadError};
pub use host::LogLine;
pub use plugin::CompiledFrom;
pub use spec::{Mode, OnError, PluginSpec, PolicyLimits};
