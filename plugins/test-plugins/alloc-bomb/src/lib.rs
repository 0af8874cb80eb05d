//! Grows its memory without end: the host's memory cap must stop it.
use snapgate_plugin_sdk::{export_policy, Decision, Policy, Request};

struct AllocBomb;

impl Policy for AllocBomb {
    fn evaluate(_req: &Request) -> Decision {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}

export_policy!(AllocBomb);
