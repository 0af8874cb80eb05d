//! The snapgate plugin SDK.
//!
//! A plugin implements [`Policy`] over the typed [`Request`] and exports it with
//! [`export_policy!`]:
//!
//! ```ignore
//! use snapgate_plugin_sdk::{export_policy, Decision, Policy, Request};
//!
//! struct NoWeekendSaves;
//! impl Policy for NoWeekendSaves {
//!     fn evaluate(req: &Request) -> Decision {
//!         Decision::allow()
//!     }
//! }
//! export_policy!(NoWeekendSaves);
//! ```
//!
//! The bindings come from `wit/` beside this crate's `Cargo.toml`: in the snapgate repository a
//! link to `wit/0.2.0/` (the same file the gateway's host bindings are generated from); in a
//! crate made by `snapgate plugin new`, a copy of it. Contract: `snapgate:policy@0.2.0`.

/// Generated bindings of the `snapgate:policy` world. Plugins use the re-exports below.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "snapgate:policy/policy@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "snapgate_plugin_sdk::bindings",
    });
}

#[cfg(feature = "arena-allocator")]
mod arena;
mod config;
mod decision;

#[cfg(feature = "arena-allocator")]
#[global_allocator]
static ALLOCATOR: arena::BumpThenSystem = arena::BumpThenSystem;

/// The CPU record (named `cpu` in the WIT).
pub use bindings::Cpu;
pub use bindings::{
    CpuCompatibility, Disk, Instance, LogLevel, Operation, QuotaUsage, Request, ResourceUsage,
    SaveMode, SaveRequest, SavedState, SnapshotKind,
};
pub use config::{parse_config, ConfigError};
pub use decision::{Decision, Denial};

pub mod testing;

/// An admission policy. `evaluate` runs once per request in a fresh instance.
pub trait Policy {
    fn evaluate(req: &Request) -> Decision;
}

/// Writes a line to the gateway log. The host caps lines per evaluation and their length.
pub fn log(level: LogLevel, message: &str) {
    bindings::log(level, message);
}

/// Logs `message` at error level and stops the evaluation with a trap. The gateway records the
/// plugin's outcome as `error` and its `on_error` setting decides (deny by default). Use it for
/// operator mistakes such as a bad configuration, which must not be mistaken for a verdict.
pub fn fail(message: &str) -> ! {
    log(LogLevel::Error, message);
    // A trap, not a panic: a panic would try to print through WASI, which the host does not
    // provide.
    std::process::abort()
}

/// Exports a [`Policy`] implementation as the component's `evaluate` function.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        struct __SnapgatePolicyExport;

        impl $crate::bindings::Guest for __SnapgatePolicyExport {
            fn evaluate(req: $crate::Request) -> $crate::bindings::Decision {
                <$policy as $crate::Policy>::evaluate(&req).into_wit()
            }
        }

        $crate::bindings::__export_policy_world!(__SnapgatePolicyExport with_types_in $crate::bindings);
    };
}
