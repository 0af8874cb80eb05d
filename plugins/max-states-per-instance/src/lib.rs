//! max-states-per-instance (save): refuses a save when the instance already keeps `max` states.
//!
//! Config: `{"max": 5}` (the default).

use serde::Deserialize;
use snapgate_plugin_sdk::{
    export_policy, fail, parse_config, Decision, Operation, Policy, Request,
};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    max: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { max: 5 }
    }
}

struct MaxStates;

impl Policy for MaxStates {
    fn evaluate(req: &Request) -> Decision {
        let cfg: Config = parse_config(req).unwrap_or_else(|e| fail(&e.to_string()));
        if req.operation != Operation::Save || req.instance_state_count < cfg.max {
            return Decision::allow();
        }
        Decision::deny(
            "too_many_states",
            format!(
                "instance {} keeps {} states; at most {} are allowed",
                req.instance.name, req.instance_state_count, cfg.max
            ),
        )
    }
}

export_policy!(MaxStates);
