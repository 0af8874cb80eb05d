//! Cancelling a save (`DELETE /v1/operations/{id}`), on libvirtd's shared default test driver.
//! The test driver finishes a snapshot at once, so the save is held mid-way the way the other
//! tests do it: a proxy in front of libvirtd holds the gateway's snapshot call, unseen by
//! libvirtd, while everything else on the connection passes. The cancel is recorded while the
//! call is held; once released, libvirt makes the snapshot after all and the gateway running
//! the save, which reads the request when libvirt's call returns, deletes it and ends the save
//! as cancelled. (A real guest, whose libvirt job is aborted mid-way, is `realvm_progress`.)

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use snapgate_core::ports::Repository;
use snapgate_store::SeaRepository;
use snapgate_tests::app::{demo, snapgate_bin, Db, Shared, TestApp};
use snapgate_tests::hosts::{metric_sum, HostProxy, LIBVIRTD_SOCKET, SNAPSHOT_CREATE_CALL};
use snapgate_tests::shared_driver::{shared_driver_uri, SharedDriver};
use snapgate_tests::sse;
use uuid::Uuid;

const CONFIG: &str = "[compute]\nkeepalive_interval_secs = 0\nplacement_refresh_secs = 3600\n";

/// Polls `check` (every 50 ms, a minute at most as a hang guard) until it holds.
async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited a minute for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The demo tenant's usage as `gateway` shows it: (states, bytes) in use, and whether
/// anything is reserved.
async fn usage(gateway: &TestApp) -> (i64, i64, bool) {
    let q = gateway
        .get(&format!("/v1/quotas/{}", demo::TENANT), &gateway.member)
        .await;
    assert_eq!(q.status, 200, "{}", q.body);
    let u = &q.body["usage"];
    let reserved = [
        "states",
        "state_bytes",
        "concurrent_operations",
        "saves_per_hour",
    ]
    .iter()
    .any(|r| u[r]["reserved"].as_i64() != Some(0));
    (
        u["states"]["in_use"].as_i64().unwrap(),
        u["state_bytes"]["in_use"].as_i64().unwrap(),
        reserved,
    )
}

/// Runs the CLI against `app` as its member: (exit code, stdout, stderr).
fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(snapgate_bin())
        .args(args)
        .env("SNAPGATE_URL", &app.url)
        .env("SNAPGATE_TOKEN", &app.member)
        .env_remove("SNAPGATE_TOKEN_FILE")
        .env_remove("SNAPGATE_OUTPUT")
        .output()
        .expect("run snapgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Saves this gateway ran that ended cancelled (counted after their quota was settled).
fn cancelled_saves(page: &str) -> f64 {
    metric_sum(
        page,
        "snapgate_operations_total",
        &[("kind", "save"), ("result", "cancelled")],
    )
}

fn cancels(page: &str, outcome: &str) -> f64 {
    metric_sum(
        page,
        "snapgate_operation_cancels_total",
        &[("outcome", outcome)],
    )
}

/// A domain of the test's own on the shared host, owned by the demo tenant.
async fn domain(driver: &SharedDriver, dir: &Path, label: &str) -> (String, String) {
    let instance = Uuid::new_v4().to_string();
    let name = format!("{label}-{}", &instance[..8]);
    driver
        .running_domain(dir, &name, &instance, demo::TENANT)
        .await;
    (instance, name)
}

/// Starts a save whose snapshot call the proxy holds; returns (operation, state) ids.
async fn held_save(
    app: &TestApp,
    proxy: &HostProxy,
    instance: &str,
    name: &str,
) -> (String, String) {
    proxy.hold_calls(SNAPSHOT_CREATE_CALL);
    let r = app.save(instance, name, &app.member).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let op = r.body["operation"].as_str().unwrap().to_owned();
    let state = r.body["uuid"].as_str().unwrap().to_owned();
    until("the save's snapshot call held in the proxy", || {
        proxy.held_calls() == 1
    })
    .await;
    (op, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_save_leaves_no_state_no_snapshot_and_no_quota() {
    let dir = tempfile::tempdir().unwrap();
    let driver = SharedDriver::open().await;
    let (instance, dom) = domain(&driver, dir.path(), "cancel").await;
    let proxy = HostProxy::start(&dir.path().join("h0.sock"), Path::new(LIBVIRTD_SOCKET));
    let app = TestApp::builder()
        .config(CONFIG)
        .host("h0", &shared_driver_uri(&proxy.socket))
        .start()
        .await;
    let kept = app.saved(&instance, "kept", &app.member).await;
    let before = usage(&app).await;
    assert_eq!((before.0, before.2), (1, false), "{before:?}");

    let (op, state) = held_save(&app, &proxy, &instance, "to cancel").await;
    let running = app.get(&format!("/v1/operations/{op}"), &app.member).await;
    assert_eq!(running.body["status"], "running", "{}", running.body);
    assert_eq!(running.body["may_cancel"], true, "{}", running.body);
    assert_eq!(running.body["cancel_requested_at"], Value::Null);

    // Another tenant's member does not see it; a reader of the tenant sees it, may not cancel.
    let r = app
        .delete(&format!("/v1/operations/{op}"), &app.other_member)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (404, "operation_not_found"),
        "{}",
        r.text
    );
    let r = app
        .delete(&format!("/v1/operations/{op}"), &app.reader)
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.text);

    let r = app
        .delete(&format!("/v1/operations/{op}"), &app.member)
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["uuid"], op.as_str());
    assert_eq!(r.body["status"], "running", "{}", r.body);
    assert!(r.body["cancel_requested_at"].is_string(), "{}", r.body);
    // A repeat stands (here from the CLI, not waiting for the end).
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(&app, &["operation-cancel", &op, "--no-wait", "--json"])
    });
    assert_eq!(code, 0, "{out}{err}");
    let again: Value = serde_json::from_str(&out).expect("the operation as JSON");
    assert_eq!(again["uuid"], op.as_str());
    assert_eq!(again["cancel_requested_at"], r.body["cancel_requested_at"]);

    // libvirt gets the call after all and makes the snapshot; the gateway deletes it.
    proxy.release_calls();
    let ended = app.wait(&op, &app.member).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["error"]["code"], "cancelled", "{ended}");
    assert_eq!(ended["may_cancel"], false, "{ended}");
    assert_eq!(ended["cancel_requested_at"], r.body["cancel_requested_at"]);
    app.wait_for_metrics("the end of the cancelled save", |page| {
        cancelled_saves(page) == 1.0
    })
    .await;
    let gone = app
        .get(
            &format!("/v1/instances/{instance}/states/{state}"),
            &app.member,
        )
        .await;
    assert_eq!(
        gone.status, 404,
        "the cancelled save leaves no state: {}",
        gone.text
    );
    assert_eq!(
        driver.snapshots(&dom).await,
        vec![kept["uuid"].as_str().unwrap().to_owned()],
        "only the kept state's snapshot is on the host"
    );
    assert_eq!(usage(&app).await, before, "quota usage is back to before");
    // The end is an `operation.cancelled` event in the log (no `state.saved`, no `state.failed`).
    let mut events = sse::open(&app, "?after=0", &app.member, None)
        .await
        .stream();
    let seen = events
        .until(|e| e["operation_uuid"] == op.as_str() && e["kind"] != "operation.progress")
        .await;
    let end = seen.last().unwrap();
    assert_eq!(end["kind"], "operation.cancelled", "{end}");
    assert_eq!(end["state_uuid"], state.as_str(), "{end}");
    assert_eq!(end["data"]["state_name"], "to cancel", "{end}");

    // An ended operation cannot be cancelled; the CLI says so, with a hint.
    let r = app
        .delete(&format!("/v1/operations/{op}"), &app.member)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "operation_finished"),
        "{}",
        r.text
    );
    let (code, out, err) = tokio::task::block_in_place(|| cli(&app, &["operation-cancel", &op]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("(operation_finished, HTTP 409)") && err.contains("hint: "),
        "{err}"
    );

    // Applies and deletes never can (`may_cancel: false`), running or not.
    let apply = app
        .post(
            &format!("/v1/instances/{instance}/states/apply"),
            &app.member,
            serde_json::json!({ "uuid": kept["uuid"] }),
        )
        .await;
    assert_eq!(apply.status, 202, "{}", apply.text);
    assert_eq!(apply.body["may_cancel"], false, "{}", apply.body);
    let r = app
        .delete(
            &format!("/v1/operations/{}", apply.body["uuid"].as_str().unwrap()),
            &app.member,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "operation_not_cancellable"),
        "{}",
        r.text
    );
    app.wait(apply.body["uuid"].as_str().unwrap(), &app.member)
        .await;
    let delete = app
        .delete(
            &format!(
                "/v1/instances/{instance}/states/{}",
                kept["uuid"].as_str().unwrap()
            ),
            &app.member,
        )
        .await;
    assert_eq!(delete.status, 202, "{}", delete.text);
    let r = app
        .delete(
            &format!("/v1/operations/{}", delete.body["uuid"].as_str().unwrap()),
            &app.member,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "operation_not_cancellable"),
        "{}",
        r.text
    );
    app.wait(delete.body["uuid"].as_str().unwrap(), &app.member)
        .await;

    // An unknown operation is not found.
    let r = app
        .delete(&format!("/v1/operations/{}", Uuid::new_v4()), &app.member)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (404, "operation_not_found"),
        "{}",
        r.text
    );

    let page = app.metrics().await;
    assert_eq!(cancels(&page, "requested"), 2.0, "{page}");
    assert_eq!(cancels(&page, "cancelled"), 1.0);
    assert_eq!(cancels(&page, "finished"), 2.0);
    assert_eq!(cancels(&page, "not_cancellable"), 2.0);

    // The instance goes on: a later save succeeds.
    app.saved(&instance, "after", &app.member).await;
}

/// Two gateways on one PostgreSQL database and Redis, on one libvirt test driver: `a` reaches
/// it through `proxy` (which can hold its calls), `b` directly. One running domain.
struct TwoGateways {
    _dir: tempfile::TempDir,
    driver: SharedDriver,
    instance: String,
    dom: String,
    shared: std::sync::Arc<Shared>,
    proxy: HostProxy,
    a: TestApp,
    b: TestApp,
}

async fn two_gateways(config: &str, label: &str) -> TwoGateways {
    let dir = tempfile::tempdir().unwrap();
    let driver = SharedDriver::open().await;
    let (instance, dom) = domain(&driver, dir.path(), label).await;
    let shared = std::sync::Arc::new(Shared::new(Db::Postgres, true).await);
    let proxy = HostProxy::start(&dir.path().join("a.sock"), Path::new(LIBVIRTD_SOCKET));
    let a = TestApp::start_with(
        shared.clone(),
        config,
        &[("h0".into(), shared_driver_uri(&proxy.socket))],
    )
    .await;
    let b = TestApp::start_with(
        shared.clone(),
        config,
        &[("h0".into(), shared_driver_uri(Path::new(LIBVIRTD_SOCKET)))],
    )
    .await;
    TwoGateways {
        _dir: dir,
        driver,
        instance,
        dom,
        shared,
        proxy,
        a,
        b,
    }
}

/// Two gateways on one PostgreSQL database and Redis: A runs the save (its snapshot call held
/// in the proxy), B receives the cancel. A reads the request B recorded and ends the save.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_received_by_another_gateway_ends_the_save() {
    let TwoGateways {
        _dir,
        driver,
        instance,
        dom,
        shared,
        proxy,
        a,
        b,
    } = two_gateways(CONFIG, "cancel-ab").await;
    let before = usage(&b).await;

    let (op, state) = held_save(&a, &proxy, &instance, "cancelled through b").await;
    let r = b.delete(&format!("/v1/operations/{op}"), &b.member).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let repo = SeaRepository::connect(&shared.db_url).await.unwrap();
    assert!(
        repo.cancel_requested(op.parse().unwrap())
            .await
            .unwrap()
            .is_some(),
        "the request is in the database"
    );

    proxy.release_calls();
    let ended = b.wait(&op, &b.member).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["error"]["code"], "cancelled", "{ended}");
    // A ran it and ended it (counted once its quota is settled).
    a.wait_for_metrics("A's end of the cancelled save", |page| {
        cancelled_saves(page) == 1.0
    })
    .await;
    assert_eq!(cancels(&b.metrics().await, "requested"), 1.0);
    assert!(repo
        .get_state(state.parse().unwrap())
        .await
        .unwrap()
        .is_none());
    assert_eq!(driver.snapshots(&dom).await, Vec::<String>::new());
    assert_eq!(usage(&a).await, before);
    assert_eq!(usage(&b).await, before);
}

/// The gateway running a cancelled save dies before it ends it: the gateway that takes the
/// save over rolls it back and ends it as cancelled (state removed), not `interrupted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_save_whose_gateway_died_ends_cancelled_when_taken_over() {
    const STALE: &str = "[snapshots]\nstale_after_secs = 1\nmaintenance_interval_secs = 0.2\n\
        [compute]\nkeepalive_interval_secs = 0\nplacement_refresh_secs = 3600\n";
    let TwoGateways {
        _dir,
        driver,
        instance,
        dom,
        shared,
        proxy,
        mut a,
        b,
    } = two_gateways(STALE, "cancel-dead").await;
    let before = usage(&b).await;

    let (op, state) = held_save(&a, &proxy, &instance, "cancelled, then orphaned").await;
    let r = b.delete(&format!("/v1/operations/{op}"), &b.member).await;
    assert_eq!(r.status, 202, "{}", r.text);
    // A dies with its snapshot call still held: libvirtd never sees it.
    a.kill9().await;

    let ended = b.wait(&op, &b.member).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["error"]["code"], "cancelled", "{ended}");
    b.wait_for_metrics("B's end of the save it took over", |page| {
        cancels(page, "cancelled") == 1.0
    })
    .await;
    let repo = SeaRepository::connect(&shared.db_url).await.unwrap();
    assert!(repo
        .get_state(state.parse().unwrap())
        .await
        .unwrap()
        .is_none());
    assert_eq!(driver.snapshots(&dom).await, Vec::<String>::new());
    assert_eq!(usage(&b).await, before);
}
