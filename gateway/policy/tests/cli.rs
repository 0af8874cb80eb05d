//! `check_component` and `eval_once`, the helpers behind `snapgate plugin check|eval`, on the
//! example request files an operator starts from.

mod common;

use common::*;
use snapgate_policy::json::Request;
use snapgate_policy::{check_component, eval_once, EvalError, LoadError};

/// An example request file: the WIT's request as JSON.
fn example(name: &str) -> Request {
    let path = repo_root().join("plugins/examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a request: {e}", path.display()))
}

#[test]
fn check_accepts_a_contract_component_and_lists_its_imports() {
    let info = check_component(&plugin("cpu-compat")).expect("valid plugin");
    assert_eq!(info.world, "snapgate:policy/policy@0.2.0");
    assert_eq!(info.sha256.len(), 64);
    assert!(
        info.imports.iter().any(|i| i == "log"),
        "{:?}",
        info.imports
    );
    assert_eq!(info.exports, ["evaluate"]);
    // Whatever else it imports (WASI from the Rust std) traps: listed for the operator.
    assert!(info.trapping_imports.iter().all(|i| i != "log"));
}

#[test]
fn check_refuses_another_world() {
    let err = check_component(&plugin("test-wrong-exports")).expect_err("wrong world");
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err:?}");
}

#[test]
fn eval_once_denies_the_example_apply_naming_missing_features() {
    let report = eval_once(
        &plugin("cpu-compat"),
        &example("apply-request.json"),
        "{}",
        limits(),
    )
    .unwrap();
    assert_eq!(report.outcome, "deny", "{report:?}");
    assert_eq!(report.code.as_deref(), Some("cpu_incompatible"));
    let reason = report.reason.unwrap();
    assert!(reason.contains("avx512f, avx512vl"), "{reason}");
    assert!(report.peak_memory_bytes > 0);
    assert!(report.elapsed.as_nanos() > 0);
}

#[test]
fn eval_once_runs_the_example_save_through_every_save_plugin() {
    let save = example("save-request.json");
    let disk = eval_once(&plugin("disk-format"), &save, "{}", limits()).unwrap();
    assert_eq!(
        disk.code.as_deref(),
        Some("disk_format_not_allowed"),
        "{disk:?}"
    );
    assert!(disk.reason.unwrap().contains("vdb (raw)"));
    let disk = eval_once(
        &plugin("disk-format"),
        &save,
        r#"{"allowed":["qcow2","raw"]}"#,
        limits(),
    )
    .unwrap();
    assert_eq!(disk.outcome, "allow");
    assert_eq!(
        eval_once(&plugin("max-states-per-instance"), &save, "{}", limits())
            .unwrap()
            .outcome,
        "allow"
    );
    assert_eq!(
        eval_once(&plugin("no-passthrough"), &save, "{}", limits())
            .unwrap()
            .outcome,
        "allow"
    );
}

#[test]
fn eval_once_reports_failures_as_errors() {
    let save = example("save-request.json");
    let report = eval_once(&plugin("test-alloc-bomb"), &save, "{}", limits()).unwrap();
    assert_eq!(report.outcome, "error");
    assert_eq!(
        report.error,
        Some(EvalError::MemoryCap {
            cap_bytes: 16 << 20
        })
    );
    let report = eval_once(&plugin("test-loop-forever"), &save, "{}", runaway_limits()).unwrap();
    assert_eq!(report.error, Some(EvalError::Deadline { deadline_ms: 500 }));
    let report = eval_once(&plugin("test-trap"), &save, "{}", limits()).unwrap();
    assert!(
        matches!(report.error, Some(EvalError::Trap { .. })),
        "{report:?}"
    );
}

#[test]
fn plugin_logs_are_kept_and_capped() {
    let save = example("save-request.json");
    let report = eval_once(&plugin("test-always-deny"), &save, "{}", limits()).unwrap();
    assert_eq!(report.logs.len(), 1);
    assert_eq!(report.logs[0].level, "info");
    assert!(
        report.logs[0].message.contains("tenant-a"),
        "{:?}",
        report.logs
    );

    let report = eval_once(
        &plugin("test-always-deny"),
        &save,
        r#"{"log_flood":true}"#,
        limits(),
    )
    .unwrap();
    assert_eq!(
        report.outcome, "deny",
        "flooding the log does not change the verdict"
    );
    assert_eq!(report.logs.len(), 16);
    assert_eq!(report.dropped_logs, 1001 - 16);
    assert!(report
        .logs
        .iter()
        .all(|l| l.message.len() <= 512 + '…'.len_utf8()));
}
