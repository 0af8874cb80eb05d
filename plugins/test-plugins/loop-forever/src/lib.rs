//! Never returns: the host's deadline (epoch interruption) must stop it.
use snapgate_plugin_sdk::{export_policy, Decision, Policy, Request};

struct LoopForever;

impl Policy for LoopForever {
    fn evaluate(_req: &Request) -> Decision {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export_policy!(LoopForever);
