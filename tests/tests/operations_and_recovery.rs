//! Operations: the one-operation-per-instance rule, waiting, and recovery after the gateway dies
//! in the middle of work (the reconciler's job). Also health, readiness, metrics and OpenAPI.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use snapgate_core::ports::Repository;
use snapgate_core::{Operation, OperationKind, OperationStatus, SnapshotKind, State, StateStatus};
use snapgate_store::SeaRepository;
use snapgate_tests::app::{demo, many_uuid, Db, TestApp};
use snapgate_tests::faults::{gateway_with_instances, saves_then_kill, SAVES_AT_ONCE};
use uuid::Uuid;

/// What another gateway replica (or a gateway that died) leaves in the shared database: a save
/// of `instance` recorded as running.
async fn foreign_running_save(
    repo: &SeaRepository,
    instance: &str,
    name: &str,
    updated_ago: Duration,
) -> (State, Operation) {
    let then = Utc::now() - chrono::Duration::from_std(updated_ago).unwrap();
    let state = State {
        uuid: Uuid::now_v7(),
        name: name.into(),
        date: then,
        instance_uuid: instance.parse().unwrap(),
        tenant_id: demo::TENANT.into(),
        status: StateStatus::Saving,
        description: None,
        host: "demo".into(),
        size_bytes: None,
        memory_bytes: None,
        includes_memory: true,
        disk_formats: vec!["qcow2".into()],
        cpu: None,
        snapshot_kind: SnapshotKind::Internal,
        parent: None,
        error: None,
        updated_at: then,
        cpu_xml: None,
        snapshot_xml: None,
        expires_at: None,
        schedule_id: None,
    };
    let op = Operation {
        uuid: Uuid::now_v7(),
        kind: OperationKind::Save,
        status: OperationStatus::Pending,
        instance_uuid: state.instance_uuid,
        state_uuid: state.uuid,
        tenant_id: demo::TENANT.into(),
        host: "demo".into(),
        error: None,
        created_at: then,
        updated_at: then,
        started_at: None,
        finished_at: None,
        reserved_bytes: 512 << 20,
        lease_epoch: 0,
        lease_owner: None,
        progress: None,
        may_cancel: false,
        cancel_requested_at: None,
    };
    repo.begin_save(&state, &op).await.unwrap();
    repo.mark_running(op.uuid, 0, then).await.unwrap();
    (state, op)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operation_per_instance_and_only_available_states_change() {
    for db in [Db::Sqlite, Db::Postgres] {
        // A long stale_after so the reconciler leaves the other replica's work alone.
        let app = TestApp::builder()
            .db(db)
            .config("[snapshots]\nstale_after_secs = 3600")
            .start()
            .await;
        let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
        let t = &app.member;
        // Internal, like the other replica's save below: libvirt keeps one kind per domain.
        let done = app.saved_in_mode(demo::WEB, "ready", "internal", t).await;
        let (busy_state, busy_op) =
            foreign_running_save(&repo, demo::WEB, "in progress", Duration::ZERO).await;

        // Every state-changing call on the busy instance: 409 naming the running operation.
        let r = app.save(demo::WEB, "another", t).await;
        assert_eq!(
            (r.status, r.code()),
            (409, "instance_busy"),
            "{db:?}: {}",
            r.body
        );
        assert_eq!(r.body["error"]["operation"], busy_op.uuid.to_string());
        let r = app
            .post(
                &format!("/v1/instances/{}/states/apply", demo::WEB),
                t,
                json!({ "uuid": done["uuid"] }),
            )
            .await;
        assert_eq!((r.status, r.code()), (409, "instance_busy"), "{}", r.body);
        let r = app
            .delete(
                &format!(
                    "/v1/instances/{}/states/{}",
                    demo::WEB,
                    done["uuid"].as_str().unwrap()
                ),
                t,
            )
            .await;
        assert_eq!((r.status, r.code()), (409, "instance_busy"), "{}", r.body);

        // A state that is not available cannot be applied or deleted.
        let r = app
            .post(
                &format!("/v1/instances/{}/states/apply", demo::WEB),
                t,
                json!({ "uuid": busy_state.uuid }),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (409, "state_not_available"),
            "{}",
            r.body
        );
        let r = app
            .delete(
                &format!("/v1/instances/{}/states/{}", demo::WEB, busy_state.uuid),
                t,
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (409, "state_not_available"),
            "{}",
            r.body
        );

        // Other instances are not affected.
        assert_eq!(app.save(demo::DB, "elsewhere", t).await.status, 202);

        // The waiting endpoint returns at its timeout with the operation still running (the
        // foreign save never ends, so only the timeout can have ended the wait).
        let r = app
            .get(
                &format!("/v1/operations/{}/wait?timeout=0.5", busy_op.uuid),
                t,
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["status"], "running");
        let r = app
            .get(
                &format!("/v1/operations/{}/wait?timeout=-1", busy_op.uuid),
                t,
            )
            .await;
        assert_eq!((r.status, r.code()), (400, "invalid_parameter"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reconciles_interrupted_work() {
    for db in [Db::Sqlite, Db::Postgres] {
        let mut app = TestApp::builder()
            .db(db)
            .config("[snapshots]\nstale_after_secs = 0.5\nmaintenance_interval_secs = 0.2")
            .start()
            .await;
        let t = app.member.clone();
        app.kill9().await;
        // What a gateway killed with -9 in the middle of a save leaves behind.
        let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
        let (state, op) =
            foreign_running_save(&repo, demo::WEB, "interrupted", Duration::from_secs(5)).await;
        app.restart().await;

        let ended = app.wait(&op.uuid.to_string(), &t).await;
        assert_eq!(ended["status"], "failed", "{ended}");
        assert_eq!(ended["error"]["code"], "interrupted");
        let s = app
            .get(
                &format!("/v1/instances/{}/states/{}", demo::WEB, state.uuid),
                &t,
            )
            .await;
        assert_eq!(s.body["status"], "error", "{}", s.body);
        // The instance is free again and the failed state can be cleaned up.
        let again = app.save(demo::WEB, "after restart", &t).await;
        assert_eq!(again.status, 202, "{}", again.body);
        app.wait(again.body["operation"].as_str().unwrap(), &t)
            .await;
        let d = app
            .delete(
                &format!("/v1/instances/{}/states/{}", demo::WEB, state.uuid),
                &t,
            )
            .await;
        assert_eq!(d.status, 202, "{}", d.body);
        assert_eq!(
            app.wait(d.body["uuid"].as_str().unwrap(), &t).await["status"],
            "succeeded"
        );
        // Every operation above was waited for: nothing may be left unfinished.
        assert!(repo.unfinished_operations().await.unwrap().is_empty());
    }
}

/// `kill -9` while saves run: the database shows saves still `running` after the kill (so the
/// kill landed mid-work), and after a restart every one of them ended (`interrupted` or, when
/// libvirt had finished it, `succeeded`), nothing is left unfinished and no state stays
/// `saving`. When every save had ended before the kill, nothing was proven: more saves at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_during_saves_leaves_nothing_stuck() {
    for n in SAVES_AT_ONCE {
        if kill_during_saves(n).await {
            return;
        }
        eprintln!("all {n} saves ended before the kill; retrying with more");
    }
    panic!("every save ended before the gateway was killed ({SAVES_AT_ONCE:?} at once): the test could not interrupt one");
}

/// One attempt; false when no save was running at the kill.
async fn kill_during_saves(n: usize) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let mut app = gateway_with_instances(dir.path(), n, false).await;
    let t = app.member.clone();
    let ops = saves_then_kill(&mut app, n).await;

    // The proof that the kill landed mid-work, read from the database with the gateway dead.
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let interrupted: Vec<String> = repo
        .unfinished_operations()
        .await
        .unwrap()
        .into_iter()
        .map(|op| {
            assert_eq!(op.status, OperationStatus::Running, "{op:?}");
            op.uuid.to_string()
        })
        .collect();
    if interrupted.is_empty() {
        return false;
    }
    eprintln!(
        "{} of {n} saves were running at the kill",
        interrupted.len()
    );

    app.restart().await;
    for op in &ops {
        let ended = app.wait(op, &t).await;
        if interrupted.contains(op) {
            assert!(
                ended["status"] == "succeeded" || ended["error"]["code"] == "interrupted",
                "{ended}"
            );
        } else {
            assert_eq!(ended["status"], "succeeded", "{ended}");
        }
    }
    assert!(repo.unfinished_operations().await.unwrap().is_empty());
    for i in 0..n {
        let l = app
            .get(&format!("/v1/instances/{}/states", many_uuid(i)), &t)
            .await;
        for s in l.body["values"].as_array().unwrap() {
            assert!(s["status"] == "available" || s["status"] == "error", "{s}");
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_openapi() {
    let app = TestApp::builder().postgres().start().await;
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(r.status, 200);
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app.operator_get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["checks"]["database"]["ok"], true);
    assert_eq!(r.body["checks"]["hosts"]["demo"]["ok"], true);

    app.saved(demo::WEB, "for metrics", &app.member).await;
    let r = app.operator_get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.text.contains("snapgate_http_requests_total"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("route=\"/v1/instances/{instance_uuid}/states\""),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("snapgate_operations_total{kind=\"save\",result=\"succeeded\"}"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("snapgate_operation_duration_seconds"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("snapgate_http_request_duration_seconds"),
        "{}",
        r.text
    );

    let r = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    for p in [
        "/v1/instances/{instance_uuid}/states",
        "/v1/instances/{instance_uuid}/states/apply",
        "/v1/operations/{operation_uuid}/wait",
        "/v1/quotas/{tenant_id}",
    ] {
        assert!(
            r.body["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    // Requests carry a request id back.
    assert!(r.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_database_makes_readyz_503() {
    let app = TestApp::builder().postgres().start().await;
    assert_eq!(app.call("GET", "/readyz", None, None).await.status, 200);
    // Take the database away under the running gateway.
    let name = app.shared.db_url.rsplit('/').next().unwrap().to_owned();
    let admin = SeaRepository::connect("postgres://postgres@127.0.0.1:5432/postgres").await;
    drop(admin);
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            &format!("DROP DATABASE \"{name}\" WITH (FORCE)"),
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, 503, "{}", r.body);
    let r = app.operator_get("/readyz").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["checks"]["database"]["ok"], false);
    // A request that needs the database gets a 503 in the API's shape, not a 500.
    let r = app
        .get(&format!("/v1/instances/{}/states", demo::WEB), &app.member)
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.code(), "database_unavailable");
}

/// How many maintenance passes the gateway has made (its Prometheus counter).
async fn maintenance_passes(app: &TestApp) -> u64 {
    app.metric("snapgate_maintenance_passes_total").await as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_operations_are_kept_for_the_retention_then_purged() {
    // Default retention (7 days): an ended operation stays readable across maintenance passes.
    let app = TestApp::builder()
        .config("[snapshots]\nmaintenance_interval_secs = 0.2")
        .start()
        .await;
    let r = app.save(demo::WEB, "kept op", &app.member).await;
    let op = r.body["operation"].as_str().unwrap().to_owned();
    app.wait(&op, &app.member).await;
    // Two whole maintenance passes after the operation ended (each may purge).
    let after = maintenance_passes(&app).await + 2;
    let mut passes = 0;
    for _ in 0..100 {
        passes = maintenance_passes(&app).await;
        if passes > after {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(passes > after, "maintenance passes did not run: {passes}");
    assert_eq!(
        app.get(&format!("/v1/operations/{op}"), &app.member)
            .await
            .status,
        200
    );

    // A retention of one second: purged by the next pass after it.
    let app = TestApp::builder()
        .config("[snapshots]\nmaintenance_interval_secs = 0.2\noperation_retention_secs = 1")
        .start()
        .await;
    let r = app.save(demo::WEB, "short-lived op", &app.member).await;
    let op = r.body["operation"].as_str().unwrap().to_owned();
    app.wait(&op, &app.member).await;
    let mut purged = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if app
            .get(&format!("/v1/operations/{op}"), &app.member)
            .await
            .status
            == 404
        {
            purged = true;
            break;
        }
    }
    assert!(purged, "operation was not purged after its retention");
    // The state it made is untouched.
    assert_eq!(
        app.get(
            &format!(
                "/v1/instances/{}/states/{}",
                demo::WEB,
                r.body["uuid"].as_str().unwrap()
            ),
            &app.member
        )
        .await
        .status,
        200
    );
}
