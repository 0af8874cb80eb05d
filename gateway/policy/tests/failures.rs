//! Misbehaving plugins: deadline, memory cap, trap, wrong world. Each failure is recorded as
//! `error`, `on_error` decides, fail-open is counted, and the engine keeps serving.

mod common;

use common::*;
use snapgate_core::ports::PolicyEngine;
use snapgate_policy::{LoadError, Mode, OnError, WasmPolicyEngine};

/// Loads `[bad, no-passthrough]` with `on_error`, evaluates a save twice and checks the
/// recorded error, the verdict, the fail-open counter, and that the engine still answers.
async fn check_failure(bad: &str, on_error: OnError, reason_part: &str) {
    let engine = WasmPolicyEngine::load(
        vec![
            spec_with(bad, "{}", on_error, Mode::Enforce),
            spec("no-passthrough"),
        ],
        runaway_limits(),
    )
    .expect("loads");
    for _ in 0..2 {
        let out = engine.evaluate(&save_request()).await;
        let d = &out.decisions[0];
        assert_eq!(d.plugin, bad);
        assert_eq!(d.outcome, "error", "{out:?}");
        assert_eq!(d.code.as_deref(), Some("policy_plugin_failed"));
        let reason = d.reason.clone().unwrap_or_default();
        assert!(
            reason.contains(reason_part),
            "{bad}: reason {reason:?} lacks {reason_part:?}"
        );
        match on_error {
            OnError::Deny => {
                assert!(!d.overridden);
                let (plugin, code, _) = out.denial.clone().expect("fails closed");
                assert_eq!(
                    (plugin.as_str(), code.as_str()),
                    (bad, "policy_plugin_failed")
                );
                assert_eq!(out.decisions.len(), 1, "the chain stops at the failure");
            }
            OnError::Allow => {
                assert!(d.overridden);
                assert_eq!(out.denial, None, "fails open");
                assert_eq!(out.decisions.len(), 2, "the chain goes on");
                assert_eq!(out.decisions[1].outcome, "allow");
            }
        }
    }
    let stats = engine.chain_info().plugins[0].stats;
    assert_eq!((stats.evaluations, stats.errors), (2, 2));
    assert_eq!(
        stats.fail_open,
        if on_error == OnError::Allow { 2 } else { 0 }
    );

    // Still serving: a request that a healthy plugin denies is denied by it.
    let mut req = save_request();
    req.instance.has_host_devices = true;
    let out = engine.evaluate(&req).await;
    if on_error == OnError::Allow {
        assert_eq!(out.denial.unwrap().0, "no-passthrough");
    }
}

#[tokio::test]
async fn loop_forever_is_stopped_by_the_deadline_and_fails_closed() {
    // The outcome `deadline` is the proof that the deadline, not the plugin, ended the call (a
    // runaway the deadline missed never returns, and the suite's timeout fails the test).
    check_failure("test-loop-forever", OnError::Deny, "deadline").await;
}

#[tokio::test]
async fn loop_forever_fails_open_when_configured() {
    check_failure("test-loop-forever", OnError::Allow, "deadline").await;
}

#[tokio::test]
async fn deadline_stops_a_runaway_plugin_promptly() {
    let engine = WasmPolicyEngine::load(vec![spec("test-loop-forever")], runaway_limits()).unwrap();
    let out = engine.evaluate(&save_request()).await;
    let latency_ms = out.decisions[0].latency_us / 1000;
    // 500 ms deadline at a 1 ms tick: stopped at 500 to ~502 ms; allow scheduling noise.
    assert!(
        (499..2000).contains(&latency_ms),
        "stopped after {latency_ms} ms"
    );
}

#[tokio::test]
async fn alloc_bomb_is_stopped_by_the_memory_cap_and_fails_closed() {
    check_failure("test-alloc-bomb", OnError::Deny, "memory_cap").await;
}

#[tokio::test]
async fn alloc_bomb_fails_open_when_configured() {
    check_failure(
        "test-alloc-bomb",
        OnError::Allow,
        "memory cap of 16777216 bytes",
    )
    .await;
}

#[tokio::test]
async fn trap_is_an_error_and_fails_closed() {
    check_failure("test-trap", OnError::Deny, "trap").await;
}

#[tokio::test]
async fn trap_fails_open_when_configured() {
    check_failure("test-trap", OnError::Allow, "trap").await;
}

#[tokio::test]
async fn audit_mode_never_blocks_even_on_failure() {
    let engine = WasmPolicyEngine::load(
        vec![spec_with("test-trap", "{}", OnError::Deny, Mode::Audit)],
        limits(),
    )
    .unwrap();
    let out = engine.evaluate(&save_request()).await;
    assert_eq!(out.denial, None);
    assert_eq!(
        (
            out.decisions[0].outcome.as_str(),
            out.decisions[0].overridden
        ),
        ("error", true)
    );
    assert_eq!(
        engine.chain_info().plugins[0].stats.fail_open,
        0,
        "audit is not fail-open"
    );
}

#[test]
fn wrong_exports_is_refused_at_load_naming_the_plugin() {
    let err = WasmPolicyEngine::load(
        vec![spec("no-passthrough"), spec("test-wrong-exports")],
        limits(),
    )
    .expect_err("a component of another world must not load");
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("plugin test-wrong-exports"), "{text}");
    assert!(
        text.contains("does not implement snapgate:policy/policy")
            && text.contains("policy@0.2.0: type-checking export func `evaluate`")
            && text.contains("policy@0.1.0: type-checking export func `evaluate`"),
        "every bound version says why: {text}"
    );
}

#[test]
fn a_core_module_or_garbage_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x01\0\0\0").unwrap();
    let err = WasmPolicyEngine::load(
        vec![snapgate_policy::PluginSpec::new("garbage", &garbage)],
        limits(),
    )
    .expect_err("a core module is not a component");
    assert!(matches!(err, LoadError::NotAComponent { .. }), "{err:?}");
    assert!(err.to_string().contains("plugin garbage"), "{err}");
}

#[test]
fn invalid_config_json_is_refused_at_load() {
    let err = WasmPolicyEngine::load(
        vec![spec_with(
            "disk-format",
            "{not json",
            OnError::Deny,
            Mode::Enforce,
        )],
        limits(),
    )
    .expect_err("bad JSON");
    assert!(matches!(err, LoadError::BadConfig { .. }), "{err:?}");
}

#[test]
fn duplicate_names_are_refused() {
    let err = WasmPolicyEngine::load(
        vec![spec("no-passthrough"), spec("no-passthrough")],
        limits(),
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::DuplicateName(_)), "{err:?}");
}
