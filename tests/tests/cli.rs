//! The seed's CLI against a real gateway: state-save, state-list, state-load, state-delete,
//! `--json`, `--no-wait`, and exit codes.

use serde_json::Value;
use snapgate_tests::app::{demo, snapgate_bin, TestApp};
use snapgate_tests::lossy_proxy::AnswerLosingProxy;

fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(snapgate_bin())
        .args(args)
        .env("SNAPGATE_URL", &app.url)
        .env("SNAPGATE_TOKEN", &app.member)
        .output()
        .expect("run snapgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_commands_round_trip() {
    let app = TestApp::builder().start().await;
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(&app, &["state-save", demo::WEB, "from the cli", "--json"])
    });
    assert_eq!(code, 0, "{out}{err}");
    let saved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(saved["operation"]["status"], "succeeded");
    assert_eq!(saved["state"]["status"], "available");
    let state = saved["state"]["uuid"].as_str().unwrap().to_owned();

    let (code, out, _) = tokio::task::block_in_place(|| cli(&app, &["state-list", demo::WEB]));
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().starts_with("UUID"), "{out}");
    assert!(
        out.contains("from the cli") && out.contains(&state) && out.contains("available"),
        "{out}"
    );

    let (code, out, err) =
        tokio::task::block_in_place(|| cli(&app, &["state-load", demo::WEB, &state]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied"), "{out}");

    // --no-wait returns the operation at once.
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(
            &app,
            &["state-save", demo::WEB, "no wait", "--no-wait", "--json"],
        )
    });
    assert_eq!(code, 0, "{out}{err}");
    let accepted: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(accepted["status"], "saving");
    let second = accepted["uuid"].as_str().unwrap().to_owned();
    app.wait(accepted["operation"].as_str().unwrap(), &app.member)
        .await;

    let (code, out, err) =
        tokio::task::block_in_place(|| cli(&app, &["state-delete", demo::WEB, &state, &second]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("deleted").count(), 2, "{out}");
    let (_, out, _) =
        tokio::task::block_in_place(|| cli(&app, &["state-list", demo::WEB, "--json"]));
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["values"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero_with_the_message() {
    let app = TestApp::builder().start().await;
    let ghost = uuid::Uuid::new_v4().to_string();
    let (code, _, err) = tokio::task::block_in_place(|| cli(&app, &["state-list", &ghost]));
    assert_ne!(code, 0);
    assert!(
        err.contains("instance_not_found") && err.contains("404"),
        "{err}"
    );
    let (code, _, err) =
        tokio::task::block_in_place(|| cli(&app, &["state-save", demo::STOPPED, "x"]));
    assert_ne!(code, 0);
    assert!(err.contains("instance_not_running"), "{err}");
    // An unreachable gateway is a clear error too.
    let out = std::process::Command::new(snapgate_bin())
        .args(["state-list", demo::WEB, "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the gateway"));
}

/// Each state-changing command sends a fresh `Idempotency-Key`, and when the connection fails
/// after the gateway did the work (a proxy loses the answer), sends it once more with the same
/// key: the gateway answers what it answered the first time, so one state is made (not a 409
/// `duplicate_name`), one apply and one delete run (not a 409 or a 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_retried_with_the_same_key_and_the_work_is_done_once() {
    let app = TestApp::builder().start().await;
    let through = |proxy: &AnswerLosingProxy, args: &[&str]| {
        let out = std::process::Command::new(snapgate_bin())
            .args(args)
            .env("SNAPGATE_URL", &proxy.url)
            .env("SNAPGATE_TOKEN", &app.member)
            .output()
            .expect("run snapgate");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let retried = "retrying with the same Idempotency-Key";

    let proxy = AnswerLosingProxy::start(&app.url).await;
    let (code, out, err) = tokio::task::block_in_place(|| {
        through(&proxy, &["state-save", demo::WEB, "answer lost", "--json"])
    });
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(proxy.lost(), 1, "the proxy lost the save's answer");
    assert!(err.contains(retried), "{err}");
    let saved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(saved["operation"]["status"], "succeeded", "{saved}");
    let state = saved["state"]["uuid"].as_str().unwrap().to_owned();
    let listed = app
        .get(&format!("/v1/instances/{}/states", demo::WEB), &app.member)
        .await;
    let names: Vec<&str> = listed.body["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["answer lost"], "one state");

    let proxy = AnswerLosingProxy::start(&app.url).await;
    let (code, out, err) =
        tokio::task::block_in_place(|| through(&proxy, &["state-load", demo::WEB, &state]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(proxy.lost(), 1);
    assert!(
        err.contains(retried) && out.contains("applied"),
        "{out}{err}"
    );

    let proxy = AnswerLosingProxy::start(&app.url).await;
    let (code, out, err) =
        tokio::task::block_in_place(|| through(&proxy, &["state-delete", demo::WEB, &state]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(proxy.lost(), 1);
    assert!(
        err.contains(retried) && out.contains("deleted"),
        "{out}{err}"
    );
    let listed = app
        .get(&format!("/v1/instances/{}/states", demo::WEB), &app.member)
        .await;
    assert_eq!(listed.body["values"], serde_json::json!([]));
}
