//! Pre-instantiated instances: the deadline counts from the call, no state leaks whether the
//! instance came from the pool or was instantiated inline, and refiller threads end with
//! their chain.

mod common;

use std::time::{Duration, Instant};

use common::*;
use snapgate_core::ports::PolicyEngine;
use snapgate_policy::{LoadError, PolicyLimits, WasmPolicyEngine};

/// Refiller threads of this test process (named `prewarm-g<generation>`).
fn refiller_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task is readable")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| name.starts_with("prewarm-g"))
        .collect()
}

/// Polls until `refiller_threads()` equals `expected` (threads end asynchronously).
fn wait_for_refillers(expected: &[&str]) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let mut now = refiller_threads();
        now.sort();
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < until,
            "refiller threads {now:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_instance_that_waited_in_the_pool_gets_its_whole_deadline() {
    // 50 ms deadline; the instances wait 6 times that before their call. Were the deadline
    // set at instantiation, every call would be interrupted at once.
    let engine = WasmPolicyEngine::load(vec![spec("no-passthrough")], limits()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..4 {
        let out = engine.evaluate_blocking(&save_request());
        assert!(out.denial.is_none(), "evaluation {i}: {:?}", out.decisions);
        assert_eq!(out.decisions[0].outcome, "allow");
    }
}

#[tokio::test]
async fn no_state_leaks_with_pools_off_small_or_drained() {
    for prewarm_instances in [0, 1, 4] {
        let limits = PolicyLimits {
            prewarm_instances,
            ..limits()
        };
        let engine = WasmPolicyEngine::load(vec![spec("test-counter")], limits).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A burst larger than the pool: some instances pooled, the rest inline.
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let mut req = save_request();
                    req.tenant = format!("tenant-{}", i % 3);
                    engine.evaluate(&req).await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(
                t.await.unwrap().warnings,
                ["evaluations=1"],
                "prewarm_instances = {prewarm_instances}"
            );
        }
    }
}

#[test]
fn refiller_threads_end_with_their_chain() {
    let engine =
        WasmPolicyEngine::load(vec![spec("no-passthrough"), spec("disk-format")], limits())
            .unwrap();
    wait_for_refillers(&["prewarm-g1"]);
    for _ in 0..3 {
        engine
            .reload(vec![spec("no-passthrough"), spec("disk-format")])
            .unwrap();
        assert!(engine.evaluate_blocking(&save_request()).denial.is_none());
    }
    // Only the serving chain (generation 4) keeps a refiller.
    wait_for_refillers(&["prewarm-g4"]);
    drop(engine);
    wait_for_refillers(&[]);

    // No pools, no thread.
    let limits = PolicyLimits {
        prewarm_instances: 0,
        ..limits()
    };
    let engine = WasmPolicyEngine::load(vec![spec("no-passthrough")], limits).unwrap();
    assert!(engine.evaluate_blocking(&save_request()).denial.is_none());
    assert!(refiller_threads().is_empty());
}

#[test]
fn too_many_prewarmed_instances_are_refused() {
    let limits = PolicyLimits {
        prewarm_instances: PolicyLimits::MAX_PREWARM_INSTANCES + 1,
        ..limits()
    };
    let err = WasmPolicyEngine::load(vec![spec("no-passthrough")], limits).unwrap_err();
    assert!(matches!(err, LoadError::BadSpec(_)), "{err}");
}
