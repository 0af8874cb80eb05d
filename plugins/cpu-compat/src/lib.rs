//! cpu-compat (apply): refuses to apply a state on a host whose CPU cannot run the CPU the
//! state was saved with, instead of letting the restore fail late inside libvirt.
//!
//! Config: `{"allow_superset": true, "allow_unknown": false}`.
//! - `identical` is always allowed; `superset` only when `allow_superset` (the default);
//! - `incompatible` is denied (`cpu_incompatible`);
//! - `unknown` is denied (`cpu_unknown`) unless `allow_unknown`.
//!
//! The reason names the saved features the target host lacks.

use serde::Deserialize;
use snapgate_plugin_sdk::{
    export_policy, fail, parse_config, CpuCompatibility, Decision, Operation, Policy, Request,
};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    allow_superset: bool,
    allow_unknown: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allow_superset: true,
            allow_unknown: false,
        }
    }
}

struct CpuCompat;

impl Policy for CpuCompat {
    fn evaluate(req: &Request) -> Decision {
        let cfg: Config = parse_config(req).unwrap_or_else(|e| fail(&e.to_string()));
        if req.operation != Operation::Apply {
            return Decision::allow();
        }
        let Some(state) = &req.state else {
            return Decision::deny(
                "cpu_unknown",
                "apply request carries no saved state to compare",
            );
        };
        let missing: Vec<&str> = state
            .saved_cpu
            .features
            .iter()
            .filter(|f| !req.target_host_cpu.features.iter().any(|h| h == *f))
            .map(String::as_str)
            .collect();
        let missing_text = if missing.is_empty() {
            String::new()
        } else {
            format!("; missing features: {}", missing.join(", "))
        };
        let saved_model = state.saved_cpu.model.as_deref().unwrap_or("unspecified");
        match req.cpu_compatibility {
            CpuCompatibility::Identical => Decision::allow(),
            CpuCompatibility::Superset if cfg.allow_superset => Decision::allow(),
            CpuCompatibility::Superset => Decision::deny(
                "cpu_not_identical",
                format!(
                    "host {} has a different CPU than the one state {} was saved with (model {saved_model}); only identical CPUs are allowed{missing_text}",
                    req.target_host, state.name
                ),
            ),
            CpuCompatibility::Incompatible => Decision::deny(
                "cpu_incompatible",
                format!(
                    "host {} cannot run the CPU state {} was saved with (model {saved_model}){missing_text}",
                    req.target_host, state.name
                ),
            ),
            CpuCompatibility::Unknown if cfg.allow_unknown => {
                Decision::allow_with_warning(format!("CPU compatibility with host {} is unknown", req.target_host))
            }
            CpuCompatibility::Unknown => Decision::deny(
                "cpu_unknown",
                format!(
                    "CPU compatibility of state {} with host {} is unknown{missing_text}",
                    state.name, req.target_host
                ),
            ),
        }
    }
}

export_policy!(CpuCompat);
