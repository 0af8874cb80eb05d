//! no-passthrough (save): refuses a live save of an instance with host devices (PCI, USB,
//! mediated), whose device state cannot be captured. No config.

use snapgate_plugin_sdk::{export_policy, Decision, Operation, Policy, Request};

struct NoPassthrough;

impl Policy for NoPassthrough {
    fn evaluate(req: &Request) -> Decision {
        if req.operation == Operation::Save && req.instance.has_host_devices {
            return Decision::deny(
                "host_devices_attached",
                format!(
                    "instance {} has host devices attached; their state cannot be saved live",
                    req.instance.name
                ),
            );
        }
        Decision::allow()
    }
}

export_policy!(NoPassthrough);
