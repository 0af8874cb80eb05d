//! Plugins built against `snapgate:policy@0.1.0` keep loading and deciding beside 0.2.0 ones
//! in one chain; 0.2.0 plugins see what the caller of a save asked for.

mod common;

use common::*;
use snapgate_core::ports::PolicyEngine;
use snapgate_policy::{check_component, ContractVersion, PluginSpec, WasmPolicyEngine};

fn memory_cap() -> PluginSpec {
    let mut spec = spec("memory-cap");
    spec.config = r#"{"max_memory_mib": 64, "big_name_prefix": "big-"}"#.into();
    spec
}

fn save_named(name: &str) -> snapgate_core::ports::PolicyInput {
    let mut input = save_request();
    input
        .save
        .as_mut()
        .expect("a save carries its request")
        .name = name.into();
    input
}

#[tokio::test]
async fn a_v0_1_and_a_v0_2_plugin_decide_in_one_chain() {
    let engine = WasmPolicyEngine::load(vec![spec("test-contract-v0-1"), memory_cap()], limits())
        .expect("both versions load");
    let info = engine.chain_info();
    let contracts: Vec<_> = info.plugins.iter().map(|p| p.contract).collect();
    assert_eq!(contracts, [ContractVersion::V0_1, ContractVersion::V0_2]);

    // The instance has 128 MiB, over the 64 MiB cap: the 0.1.0 plugin allows (and says what it
    // saw), the 0.2.0 one reads the state's name and denies.
    let out = engine.evaluate(&save_named("nightly")).await;
    assert_eq!(out.decisions.len(), 2, "{out:?}");
    assert_eq!(out.decisions[0].plugin, "test-contract-v0-1");
    assert_eq!(out.decisions[0].outcome, "allow");
    assert_eq!(
        out.decisions[0].warnings,
        ["v0.1 saw Operation::Save of web-1"]
    );
    let (plugin, code, reason) = out.denial.clone().expect("memory-cap denies");
    assert_eq!(
        (plugin.as_str(), code.as_str()),
        ("memory-cap", "memory_over_cap")
    );
    assert!(
        reason.contains("128 MiB") && reason.contains("big-"),
        "{reason}"
    );

    // The same save named as meant passes both.
    let out = engine.evaluate(&save_named("big-nightly")).await;
    assert_eq!(out.denial, None, "{out:?}");
    assert_eq!(out.decisions.len(), 2);
    assert!(out.decisions.iter().all(|d| d.outcome == "allow"));
    assert!(
        out.warnings.iter().any(|w| w.contains("big save")),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_v0_1_plugin_denies_and_stops_the_chain() {
    let mut legacy = spec("test-contract-v0-1");
    legacy.config = r#"{"deny":true}"#.into();
    let engine = WasmPolicyEngine::load(vec![legacy, memory_cap()], limits()).unwrap();
    let out = engine.evaluate(&save_named("big-nightly")).await;
    let (plugin, code, _) = out.denial.clone().expect("denied");
    assert_eq!(
        (plugin.as_str(), code.as_str()),
        ("test-contract-v0-1", "v0_1_denied")
    );
    assert_eq!(out.decisions.len(), 1, "the chain stops at the denial");
}

#[test]
fn check_names_the_contract_version() {
    let legacy = check_component(&plugin("test-contract-v0-1")).unwrap();
    assert_eq!(legacy.world, "snapgate:policy/policy@0.1.0");
    let current = check_component(&plugin("memory-cap")).unwrap();
    assert_eq!(current.world, "snapgate:policy/policy@0.2.0");
    assert_eq!(current.contract, ContractVersion::V0_2);
}
