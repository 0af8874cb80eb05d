//! memory-cap (save): refuses saves of instances with more memory than `max_memory_mib`,
//! unless the state's name starts with `big_name_prefix` (the caller marks a big save as
//! meant). Needs `snapgate:policy@0.2.0`: the save's name is in `request.save`.
//!
//! Config: `{"max_memory_mib": 4096, "big_name_prefix": "big-"}` (the defaults).

use serde::Deserialize;
use snapgate_plugin_sdk::{export_policy, fail, parse_config, Decision, Policy, Request};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    max_memory_mib: i64,
    big_name_prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_memory_mib: 4096,
            big_name_prefix: "big-".into(),
        }
    }
}

struct MemoryCap;

impl Policy for MemoryCap {
    fn evaluate(req: &Request) -> Decision {
        let cfg: Config = parse_config(req).unwrap_or_else(|e| fail(&e.to_string()));
        // `save` is set for saves only.
        let Some(save) = &req.save else {
            return Decision::allow();
        };
        let mib = req.instance.memory_bytes >> 20;
        if mib <= cfg.max_memory_mib {
            return Decision::allow();
        }
        if !cfg.big_name_prefix.is_empty() && save.name.starts_with(&cfg.big_name_prefix) {
            return Decision::allow_with_warning(format!(
                "{} has {mib} MiB of memory: a big save, allowed by its name",
                req.instance.name
            ));
        }
        Decision::deny(
            "memory_over_cap",
            format!(
                "{} has {mib} MiB of memory, over the {} MiB cap; name the state {}… to save it anyway",
                req.instance.name, cfg.max_memory_mib, cfg.big_name_prefix
            ),
        )
    }
}

export_policy!(MemoryCap);

#[cfg(test)]
mod tests {
    use super::*;
    use snapgate_plugin_sdk::testing::save_request;

    fn save(memory_mib: i64, name: &str) -> Decision {
        let mut req = save_request();
        req.instance.memory_bytes = memory_mib << 20;
        req.save.as_mut().unwrap().name = name.into();
        MemoryCap::evaluate(&req)
    }

    #[test]
    fn big_saves_need_a_big_name() {
        assert_eq!(save(4096, "nightly"), Decision::allow());
        assert!(matches!(save(8192, "nightly"), Decision::Deny(d) if d.code == "memory_over_cap"));
        assert!(
            matches!(save(8192, "big-nightly"), Decision::Allow { warnings } if warnings.len() == 1)
        );
    }
}
