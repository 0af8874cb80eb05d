//! Shared helpers: backends over libvirt's test driver (`test:///default` and the demo node
//! file `deploy/demo-node.xml`). Every backend opens its own connections, and each new
//! test-driver connection starts from a fresh copy of the node, so tests never share state.

#![allow(dead_code)]

use std::path::PathBuf;

use snapgate_compute::{HostConfig, LibvirtBackend, LibvirtOptions};
use uuid::Uuid;

pub const DEFAULT_HOST: &str = "default";
pub const DEMO_HOST: &str = "demo";

/// The `test` domain built into `test:///default`.
pub const TEST_DOMAIN: Uuid = Uuid::from_u128(0x6695eb01_f6a4_8304_79aa_97f2502e193f);

pub const DEMO_WEB: Uuid = Uuid::from_u128(0x5a9e0c1e_0000_4000_8000_000000000001);
pub const DEMO_DB: Uuid = Uuid::from_u128(0x5a9e0c1e_0000_4000_8000_000000000002);
pub const NOVA_APP: Uuid = Uuid::from_u128(0x5a9e0c1e_0000_4000_8000_000000000003);
pub const RAW_DISK: Uuid = Uuid::from_u128(0x5a9e0c1e_0000_4000_8000_000000000004);
pub const GPU_VM: Uuid = Uuid::from_u128(0x5a9e0c1e_0000_4000_8000_000000000005);
pub const STOPPED_VM: Uuid = Uuid::from_u128(0x5a9e0c1e_0000_4000_8000_000000000006);

pub fn demo_node_uri() -> String {
    let node = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/demo-node.xml");
    let node = node.canonicalize().expect("deploy/demo-node.xml exists");
    format!("test://{}", node.display())
}

pub fn options() -> LibvirtOptions {
    LibvirtOptions::default()
}

/// A backend with the default test host and the demo node, in that order, both keeping their
/// state files in `state_dir` (the test driver writes none).
pub fn backend(state_dir: &std::path::Path) -> LibvirtBackend {
    LibvirtBackend::new(
        vec![
            HostConfig::new(DEFAULT_HOST, "test:///default").with_state_dir(state_dir),
            HostConfig::new(DEMO_HOST, demo_node_uri()).with_state_dir(state_dir),
        ],
        options(),
    )
}
