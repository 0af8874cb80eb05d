//! disk-format (save): refuses a save unless every disk's format is allowed.
//!
//! Config: `{"allowed": ["qcow2"]}` (the default). A disk whose format is unknown is refused.

use serde::Deserialize;
use snapgate_plugin_sdk::{
    export_policy, fail, parse_config, Decision, Operation, Policy, Request,
};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    allowed: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allowed: vec!["qcow2".to_string()],
        }
    }
}

struct DiskFormat;

impl Policy for DiskFormat {
    fn evaluate(req: &Request) -> Decision {
        let cfg: Config = parse_config(req).unwrap_or_else(|e| fail(&e.to_string()));
        if req.operation != Operation::Save {
            return Decision::allow();
        }
        let offending: Vec<String> = req
            .instance
            .disks
            .iter()
            .filter(|d| !d.format.as_ref().is_some_and(|f| cfg.allowed.contains(f)))
            .map(|d| {
                format!(
                    "{} ({})",
                    d.target,
                    d.format.as_deref().unwrap_or("unknown format")
                )
            })
            .collect();
        if offending.is_empty() {
            Decision::allow()
        } else {
            Decision::deny(
                "disk_format_not_allowed",
                format!(
                    "disks with formats not allowed (allowed: {}): {}",
                    cfg.allowed.join(", "),
                    offending.join(", ")
                ),
            )
        }
    }
}

export_policy!(DiskFormat);
