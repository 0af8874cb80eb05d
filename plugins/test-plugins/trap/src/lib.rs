//! Panics on every request: the host must record an error and apply `on_error`.
use snapgate_plugin_sdk::{export_policy, Decision, Policy, Request};

struct Trap;

impl Policy for Trap {
    fn evaluate(req: &Request) -> Decision {
        panic!("test plugin panics on purpose (tenant {})", req.tenant)
    }
}

export_policy!(Trap);
