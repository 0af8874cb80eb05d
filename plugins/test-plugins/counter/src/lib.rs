//! Counts its evaluations in a global and reports the count as a warning. With a fresh
//! instance per evaluation the count is always 1; anything else means state leaked.
use std::sync::atomic::{AtomicU32, Ordering};

use snapgate_plugin_sdk::{export_policy, Decision, Policy, Request};

static EVALUATIONS: AtomicU32 = AtomicU32::new(0);

struct Counter;

impl Policy for Counter {
    fn evaluate(_req: &Request) -> Decision {
        let n = EVALUATIONS.fetch_add(1, Ordering::SeqCst) + 1;
        Decision::allow_with_warning(format!("evaluations={n}"))
    }
}

export_policy!(Counter);
