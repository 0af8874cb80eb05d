//! Atomic reload: concurrent evaluations never fail or see half a chain; a failed reload
//! keeps the old chain.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use snapgate_core::ports::PolicyEngine;
use snapgate_policy::WasmPolicyEngine;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_atomically_under_concurrent_evaluations() {
    // Chain A denies every save (always-deny); chain B allows it (counter, no-passthrough).
    let chain_a = || vec![spec("test-always-deny")];
    let chain_b = || vec![spec("test-counter"), spec("no-passthrough")];
    let engine = WasmPolicyEngine::load(chain_a(), limits()).unwrap();
    assert_eq!(engine.chain_info().generation, 1);

    let stop = Arc::new(AtomicBool::new(false));
    let evaluators: Vec<_> = (0..8)
        .map(|_| {
            let engine = engine.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut a, mut b) = (0u32, 0u32);
                while !stop.load(Ordering::Relaxed) {
                    let out = engine.evaluate(&save_request()).await;
                    let plugins: Vec<_> = out.decisions.iter().map(|d| d.plugin.as_str()).collect();
                    // Every outcome comes entirely from one chain, and no evaluation fails.
                    assert!(
                        out.decisions.iter().all(|d| d.outcome != "error"),
                        "{out:?}"
                    );
                    match plugins.as_slice() {
                        ["test-always-deny"] => {
                            assert_eq!(out.denial.as_ref().unwrap().1, "always_deny");
                            a += 1
                        }
                        ["test-counter", "no-passthrough"] => {
                            assert_eq!(out.denial, None);
                            b += 1
                        }
                        other => panic!("mixed or empty chain: {other:?}"),
                    }
                }
                (a, b)
            })
        })
        .collect();

    for round in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let specs = if round % 2 == 0 { chain_b() } else { chain_a() };
        let info = engine.reload_async(specs).await.expect("reload");
        assert_eq!(info.generation, round + 2);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut a, mut b) = (0, 0);
    for e in evaluators {
        let (ea, eb) = e.await.expect("no evaluator failed");
        a += ea;
        b += eb;
    }
    assert!(a > 0 && b > 0, "both chains served: a={a} b={b}");
    assert_eq!(engine.chain_info().generation, 5);
}

#[tokio::test]
async fn a_failed_reload_keeps_the_old_chain() {
    let engine = WasmPolicyEngine::load(vec![spec("no-passthrough")], limits()).unwrap();
    let before = engine.chain_info();

    let err = engine
        .reload_async(vec![spec("disk-format"), spec("test-wrong-exports")])
        .await
        .expect_err("a chain with a bad plugin must not load");
    assert!(err.to_string().contains("test-wrong-exports"), "{err}");

    let after = engine.chain_info();
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.plugins.len(), 1);
    assert_eq!(after.plugins[0].name, "no-passthrough");
    let mut req = save_request();
    req.instance.has_host_devices = true;
    assert_eq!(
        engine.evaluate(&req).await.denial.unwrap().0,
        "no-passthrough"
    );
}

#[tokio::test]
async fn an_evaluation_keeps_the_chain_it_started_with() {
    // The loop plugin holds an evaluation for its 500 ms deadline; a reload meanwhile must
    // not change what that evaluation reports.
    let engine = WasmPolicyEngine::load(vec![spec("test-loop-forever")], runaway_limits()).unwrap();
    let running = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.evaluate(&save_request()).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    engine
        .reload_async(vec![spec("test-counter")])
        .await
        .unwrap();
    let out = running.await.unwrap();
    assert_eq!(out.decisions[0].plugin, "test-loop-forever");
    assert_eq!(
        engine.evaluate(&save_request()).await.decisions[0].plugin,
        "test-counter"
    );
}
