//! Fresh instances (no state between evaluations) and the compiled-artifact cache.

mod common;

use common::*;
use snapgate_core::ports::PolicyEngine;
use snapgate_policy::{CompiledFrom, PolicyLimits, WasmPolicyEngine};

#[tokio::test]
async fn no_state_leaks_between_evaluations() {
    let engine = WasmPolicyEngine::load(vec![spec("test-counter")], limits()).unwrap();
    for i in 0..40 {
        let mut req = save_request();
        req.tenant = format!("tenant-{}", i % 3);
        let out = engine.evaluate(&req).await;
        assert_eq!(
            out.warnings,
            ["evaluations=1"],
            "evaluation {i} saw state of an earlier one"
        );
    }
    // Concurrent evaluations as well.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.evaluate(&save_request()).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().warnings, ["evaluations=1"]);
    }
}

#[test]
fn second_load_uses_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let limits = PolicyLimits {
        cache_dir: Some(dir.path().join("cache")),
        ..limits()
    };

    let first = WasmPolicyEngine::load(vec![spec("no-passthrough")], limits.clone()).unwrap();
    let info = first.chain_info();
    assert_eq!(info.plugins[0].compiled_from, CompiledFrom::Compiled);
    let sha = &info.plugins[0].sha256;
    let files: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with(sha.as_str()) && files[0].ends_with(".cwasm"),
        "{files:?}"
    );
    drop(first);

    let second = WasmPolicyEngine::load(vec![spec("no-passthrough")], limits.clone()).unwrap();
    assert_eq!(
        second.chain_info().plugins[0].compiled_from,
        CompiledFrom::Cache
    );
    let mut req = save_request();
    req.instance.has_host_devices = true;
    assert_eq!(
        second.evaluate_blocking(&req).denial.unwrap().1,
        "host_devices_attached"
    );
}

#[test]
fn a_damaged_cache_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let limits = PolicyLimits {
        cache_dir: Some(dir.path().to_path_buf()),
        ..limits()
    };
    drop(WasmPolicyEngine::load(vec![spec("no-passthrough")], limits.clone()).unwrap());
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&file, b"not an artifact").unwrap();

    let engine = WasmPolicyEngine::load(vec![spec("no-passthrough")], limits.clone()).unwrap();
    assert_eq!(
        engine.chain_info().plugins[0].compiled_from,
        CompiledFrom::Compiled
    );
    assert!(std::fs::metadata(&file).unwrap().len() > 1000, "rewritten");
    assert_eq!(engine.evaluate_blocking(&save_request()).denial, None);
}
