//! Hostile input: schemathesis generates requests from the gateway's own OpenAPI document
//! (valid ones, invalid ones, unknown methods, missing and wrong tokens, sequences that create
//! and delete things) and fails on any 5xx, any status, body, header or content type the
//! document does not promise, and any refusal of a valid request or acceptance of an invalid
//! one. Settings, seed and the accepted exceptions are in `tests/fuzz/schemathesis.toml`.
//!
//! The gateway runs on loopback over its own PostgreSQL database and Redis key prefix (one per
//! run), on the demo cloud (libvirt's test driver); schemathesis runs in its own directory and
//! is told to use no proxy, so nothing leaves the machine.

use std::process::Stdio;

use snapgate_tests::app::{repo_root, TestApp};

/// The last lines of a long report, for an assertion message.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The number right after `label` in the report (`Selected: 18/18` gives 18).
fn number_after(report: &str, label: &str) -> Option<u32> {
    let rest = &report[report.find(label)? + label.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_find_no_fault() {
    let st = repo_root().join(".venv/bin/st");
    assert!(
        st.exists(),
        "{} is missing: run scripts/install-deps.sh (it installs tests/fuzz/requirements.txt)",
        st.display()
    );
    let mut app = TestApp::builder().postgres().redis().start().await;
    let pid = app.pid().expect("the gateway runs");
    let workdir = tempfile::tempdir().unwrap();

    let out = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(repo_root().join("tests/fuzz/schemathesis.toml"))
        .arg("--no-color")
        .arg("run")
        .arg(format!("{}/openapi.json", app.url))
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", app.admin))
        .arg("--output-truncate")
        .arg("false")
        .current_dir(workdir.path())
        // Loopback only, whatever the environment says about proxies.
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout).into_owned()
        + &String::from_utf8_lossy(&out.stderr);

    // The gateway survived: same process, still healthy.
    assert_eq!(app.pid(), Some(pid));
    let health = app.call("GET", "/healthz", None, None).await;
    assert_eq!(
        health.status,
        200,
        "the gateway is unhealthy after the run:\n{}",
        tail(&app.log(), 50)
    );
    assert!(
        !app.log().contains("panicked"),
        "a handler panicked:\n{}",
        tail(&app.log(), 80)
    );
    assert!(
        out.status.success(),
        "schemathesis found faults (exit {}):\n{}",
        out.status,
        tail(&report, 400)
    );
    // A run that tested nothing proves nothing: every selected operation was tested.
    let selected = number_after(&report, "Selected: ").expect("a summary");
    assert_eq!(
        number_after(&report, "Tested: "),
        Some(selected),
        "not every operation was tested:\n{}",
        tail(&report, 60)
    );
    assert!(selected >= 18, "{selected} operations selected");
    app.stop().await;
}
