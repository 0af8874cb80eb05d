//! The four example plugins, each allowing and denying, through `WasmPolicyEngine`.

mod common;

use common::*;
use snapgate_core::ports::{PolicyEngine, PolicyOutcome};
use snapgate_core::{CpuCompatibility, DiskInfo, OperationKind};
use snapgate_policy::{Mode, OnError, PluginSpec, WasmPolicyEngine};

fn engine_of(spec: PluginSpec) -> WasmPolicyEngine {
    WasmPolicyEngine::load(vec![spec], limits()).expect("plugin loads")
}

fn denial_code(outcome: &PolicyOutcome) -> Option<&str> {
    outcome.denial.as_ref().map(|(_, code, _)| code.as_str())
}

#[tokio::test]
async fn cpu_compat_allows_identical_and_superset_by_default() {
    let engine = engine_of(spec("cpu-compat"));
    for compat in [CpuCompatibility::Identical, CpuCompatibility::Superset] {
        let out = engine
            .evaluate(&apply_request(compat, &["avx"], &["avx", "avx2"]))
            .await;
        assert_eq!(out.denial, None, "{compat:?}: {out:?}");
        assert_eq!(out.decisions.len(), 1);
        assert_eq!(out.decisions[0].outcome, "allow");
        assert_eq!(out.decisions[0].plugin, "cpu-compat");
        assert_eq!(out.decisions[0].plugin_sha256.len(), 64);
    }
}

#[tokio::test]
async fn cpu_compat_denies_incompatible_naming_missing_features() {
    let engine = engine_of(spec("cpu-compat"));
    let out = engine
        .evaluate(&apply_request(
            CpuCompatibility::Incompatible,
            &["avx", "avx512f", "amx-tile"],
            &["avx"],
        ))
        .await;
    let (plugin, code, reason) = out.denial.clone().expect("denied");
    assert_eq!(
        (plugin.as_str(), code.as_str()),
        ("cpu-compat", "cpu_incompatible")
    );
    assert!(
        reason.contains("avx512f") && reason.contains("amx-tile"),
        "{reason}"
    );
    assert!(
        !reason.contains("avx,"),
        "present feature named as missing: {reason}"
    );
    assert_eq!(out.decisions[0].outcome, "deny");
    assert!(!out.decisions[0].overridden);
}

#[tokio::test]
async fn cpu_compat_strict_mode_refuses_superset() {
    let mut s = spec("cpu-compat");
    s.config = r#"{"allow_superset": false}"#.into();
    let engine = engine_of(s);
    let out = engine
        .evaluate(&apply_request(
            CpuCompatibility::Superset,
            &["avx"],
            &["avx", "avx2"],
        ))
        .await;
    assert_eq!(denial_code(&out), Some("cpu_not_identical"), "{out:?}");
    let out = engine
        .evaluate(&apply_request(
            CpuCompatibility::Identical,
            &["avx"],
            &["avx"],
        ))
        .await;
    assert_eq!(out.denial, None);
}

#[tokio::test]
async fn cpu_compat_unknown_is_denied_unless_allowed() {
    let engine = engine_of(spec("cpu-compat"));
    let out = engine
        .evaluate(&apply_request(
            CpuCompatibility::Unknown,
            &["avx"],
            &["avx"],
        ))
        .await;
    assert_eq!(denial_code(&out), Some("cpu_unknown"));

    let mut s = spec("cpu-compat");
    s.config = r#"{"allow_unknown": true}"#.into();
    let engine = engine_of(s);
    let out = engine
        .evaluate(&apply_request(
            CpuCompatibility::Unknown,
            &["avx"],
            &["avx"],
        ))
        .await;
    assert_eq!(out.denial, None);
    assert_eq!(
        out.warnings.len(),
        1,
        "an allowed unknown verdict warns: {out:?}"
    );
}

#[tokio::test]
async fn cpu_compat_bad_config_is_an_error_that_fails_closed() {
    let mut s = spec("cpu-compat");
    s.config = r#"{"allow_superset": "yes"}"#.into();
    let engine = engine_of(s);
    let out = engine
        .evaluate(&apply_request(CpuCompatibility::Identical, &[], &[]))
        .await;
    assert_eq!(out.decisions[0].outcome, "error");
    assert_eq!(denial_code(&out), Some("policy_plugin_failed"));
}

#[tokio::test]
async fn disk_format_allows_qcow2_and_denies_raw_naming_the_disk() {
    let engine = engine_of(spec("disk-format"));
    assert_eq!(engine.evaluate(&save_request()).await.denial, None);

    let mut req = save_request();
    req.instance.disks.push(DiskInfo {
        target: "vdb".into(),
        format: Some("raw".into()),
        source: None,
        size_bytes: None,
    });
    req.instance.disks.push(DiskInfo {
        target: "vdc".into(),
        format: None,
        source: None,
        size_bytes: None,
    });
    let out = engine.evaluate(&req).await;
    let (_, code, reason) = out.denial.expect("denied");
    assert_eq!(code, "disk_format_not_allowed");
    assert!(
        reason.contains("vdb (raw)") && reason.contains("vdc (unknown format)"),
        "{reason}"
    );
    assert!(!reason.contains("vda"), "{reason}");
}

#[tokio::test]
async fn disk_format_follows_its_config() {
    let mut s = spec("disk-format");
    s.config = r#"{"allowed": ["qcow2", "raw"]}"#.into();
    let engine = engine_of(s);
    let mut req = save_request();
    req.instance.disks[0].format = Some("raw".into());
    assert_eq!(engine.evaluate(&req).await.denial, None);
}

#[tokio::test]
async fn max_states_per_instance_denies_at_the_cap() {
    let mut s = spec("max-states-per-instance");
    s.config = r#"{"max": 3}"#.into();
    let engine = engine_of(s);
    let mut req = save_request();
    req.instance_state_count = 2;
    assert_eq!(engine.evaluate(&req).await.denial, None);
    req.instance_state_count = 3;
    let out = engine.evaluate(&req).await;
    assert_eq!(denial_code(&out), Some("too_many_states"));
    assert!(out.denial.unwrap().2.contains("at most 3"));
}

#[tokio::test]
async fn max_states_per_instance_defaults_to_five() {
    let engine = engine_of(spec("max-states-per-instance"));
    let mut req = save_request();
    req.instance_state_count = 4;
    assert_eq!(engine.evaluate(&req).await.denial, None);
    req.instance_state_count = 5;
    assert_eq!(
        denial_code(&engine.evaluate(&req).await),
        Some("too_many_states")
    );
}

#[tokio::test]
async fn no_passthrough_denies_host_devices() {
    let engine = engine_of(spec("no-passthrough"));
    assert_eq!(engine.evaluate(&save_request()).await.denial, None);
    let mut req = save_request();
    req.instance.has_host_devices = true;
    assert_eq!(
        denial_code(&engine.evaluate(&req).await),
        Some("host_devices_attached")
    );
}

#[tokio::test]
async fn chain_runs_in_order_only_matching_operations_and_stops_at_first_denial() {
    let mut disk = spec("disk-format");
    disk.operations = vec![OperationKind::Save];
    let mut cpu = spec("cpu-compat");
    cpu.operations = vec![OperationKind::Apply];
    let mut max = spec("max-states-per-instance");
    max.operations = vec![OperationKind::Save];
    let mut nopass = spec("no-passthrough");
    nopass.operations = vec![OperationKind::Save];
    let engine = WasmPolicyEngine::load(vec![disk, cpu, max, nopass], limits()).unwrap();

    let out = engine.evaluate(&save_request()).await;
    let names: Vec<_> = out.decisions.iter().map(|d| d.plugin.as_str()).collect();
    assert_eq!(
        names,
        ["disk-format", "max-states-per-instance", "no-passthrough"]
    );
    assert_eq!(out.denial, None);

    let mut req = save_request();
    req.instance_state_count = 9;
    req.instance.has_host_devices = true;
    let out = engine.evaluate(&req).await;
    let names: Vec<_> = out.decisions.iter().map(|d| d.plugin.as_str()).collect();
    assert_eq!(
        names,
        ["disk-format", "max-states-per-instance"],
        "no-passthrough must not run after a denial"
    );
    assert_eq!(out.denial.unwrap().0, "max-states-per-instance");

    let out = engine
        .evaluate(&apply_request(CpuCompatibility::Identical, &[], &[]))
        .await;
    let names: Vec<_> = out.decisions.iter().map(|d| d.plugin.as_str()).collect();
    assert_eq!(names, ["cpu-compat"]);
    assert!(out.decisions.iter().all(|d| d.latency_us > 0));
}

#[tokio::test]
async fn audit_mode_records_the_denial_and_allows() {
    let mut nopass = spec_with("no-passthrough", "{}", OnError::Deny, Mode::Audit);
    nopass.operations = vec![OperationKind::Save];
    let missing = PluginSpec::new("not-built", repo_root().join("plugins/dist/not-built.wasm"));
    let engine = WasmPolicyEngine::load(vec![nopass, missing], limits());
    // A missing file names the plugin.
    let err = engine.expect_err("missing plugin file");
    assert!(err.to_string().contains("plugin not-built"), "{err}");

    let mut nopass = spec_with("no-passthrough", "{}", OnError::Deny, Mode::Audit);
    nopass.operations = vec![OperationKind::Save];
    let engine = WasmPolicyEngine::load(vec![nopass, spec("disk-format")], limits()).unwrap();
    let mut req = save_request();
    req.instance.has_host_devices = true;
    let out = engine.evaluate(&req).await;
    assert_eq!(out.denial, None);
    assert_eq!(
        out.decisions.len(),
        2,
        "an audit denial does not stop the chain"
    );
    let d = &out.decisions[0];
    assert_eq!(
        (d.outcome.as_str(), d.overridden, d.mode.as_str()),
        ("deny", true, "audit")
    );
    assert_eq!(d.code.as_deref(), Some("host_devices_attached"));
    assert_eq!(engine.chain_info().plugins[0].stats.denied, 1);
}

#[tokio::test]
async fn warnings_are_collected_from_every_plugin() {
    let audit_deny = spec_with("test-always-deny", "{}", OnError::Deny, Mode::Audit);
    let engine = WasmPolicyEngine::load(vec![audit_deny, spec("test-counter")], limits()).unwrap();
    let out = engine.evaluate(&save_request()).await;
    assert_eq!(out.denial, None);
    assert_eq!(out.warnings, ["always-deny was here", "evaluations=1"]);
}
