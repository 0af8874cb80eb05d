//! Bounded resources under hostile or heavy use: metric labels from a fixed set, metrics and
//! readiness detail only on the operator's listener, a bound on requests in flight and on
//! their time, `/wait` served by notification with a cap per tenant, dry runs that reserve
//! nothing and are rate limited.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use serde_json::{json, Value};
use snapgate_core::ports::Repository;
use snapgate_core::{Operation, OperationKind, OperationStatus, SnapshotKind, State, StateStatus};
use snapgate_store::SeaRepository;
use snapgate_tests::app::{demo, demo_host_uri, metric_value, Db, Resp, Shared, TestApp};
use uuid::Uuid;

/// Polls `condition` until it holds. The gateway's own gauges are the condition here (the
/// waits it holds, the requests it serves), so the test waits on state, not on time.
async fn until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..2000 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// A save of `instance` that another replica is running (recorded as running, heartbeat
/// `updated_ago`): an operation that ends only when the test ends it.
async fn foreign_running_save(
    repo: &SeaRepository,
    instance: &str,
    updated_ago: Duration,
) -> (State, Operation) {
    let then = Utc::now() - chrono::Duration::from_std(updated_ago).unwrap();
    let state = State {
        uuid: Uuid::now_v7(),
        name: format!("held {}", Uuid::new_v4()),
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
        reserved_bytes: 0,
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

/// Ends `op` as the replica running it would (a failed save).
async fn end_foreign(repo: &SeaRepository, state: &State, op: &Operation) {
    let now = Utc::now();
    let done = Operation {
        status: OperationStatus::Failed,
        finished_at: Some(now),
        updated_at: now,
        ..op.clone()
    };
    let failed = State {
        status: StateStatus::Error,
        ..state.clone()
    };
    repo.finish_operation(&done, Some(&failed)).await.unwrap();
}

/// Starts a wait in the background and returns its handle.
fn spawn_wait(
    app: &TestApp,
    op: Uuid,
    token: &str,
    timeout_secs: u64,
) -> tokio::task::JoinHandle<Resp> {
    let (url, http, token) = (app.url.clone(), app.http.clone(), token.to_owned());
    tokio::spawn(async move {
        let r = http
            .get(format!(
                "{url}/v1/operations/{op}/wait?timeout={timeout_secs}"
            ))
            .bearer_auth(token)
            .send()
            .await
            .expect("wait reaches the gateway");
        read(r).await
    })
}

async fn read(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

async fn waits_in_progress(app: &TestApp) -> f64 {
    app.metric("snapgate_waits_in_progress").await
}

fn series_count(metrics: &str, name: &str) -> usize {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .count()
}

// ---- 4a: metric labels ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_and_paths_do_not_grow_the_metrics() {
    let app = TestApp::builder().start().await;
    // Each label set once, so the baseline has every series the flood below may touch.
    app.call("GET", "/no/such/route", None, None).await;
    let before = app.metrics().await;
    let series_before = series_count(&before, "snapgate_http_requests_total");

    let mut flood = Vec::new();
    for i in 0..40 {
        let method = format!("X{}{i}", "Q".repeat(4000));
        let path = if i % 2 == 0 {
            format!("/v1/quotas/{}", demo::TENANT)
        } else {
            format!("/nowhere/{}/{}", Uuid::new_v4(), "p".repeat(2000))
        };
        let (url, http) = (app.url.clone(), app.http.clone());
        flood.push(tokio::spawn(async move {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            http.request(m, format!("{url}{path}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for f in flood {
        let status = f.await.unwrap().expect("the gateway answers");
        assert!(matches!(status, 404 | 405), "{status}");
    }
    for i in 0..20 {
        app.call(
            "GET",
            &format!("/nowhere/{i}/{}", Uuid::new_v4()),
            None,
            None,
        )
        .await;
    }

    let after = app.metrics().await;
    assert!(!after.contains("QQQQ"), "a client's method became a label");
    assert!(
        !after.contains("/nowhere"),
        "a client's path became a label"
    );
    assert!(after.contains("method=\"other\""), "{after}");
    assert!(after.contains("route=\"unmatched\""), "{after}");
    // Unknown method × {unmatched 404, the quota route's 405}: two new series at most, plus a
    // few the gateway's own work may add meanwhile; never one per request.
    let series_after = series_count(&after, "snapgate_http_requests_total");
    assert!(
        series_after <= series_before + 4,
        "{series_before} → {series_after} series"
    );
    assert!(
        after.len() < before.len() + 64 * 1024,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
}

// ---- 4b: metrics and readiness detail ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_detail_are_for_the_operator_only() {
    let app = TestApp::builder()
        .host("demo", &demo_host_uri())
        .host("broken", "test:///nonexistent/secret-path/node.xml")
        .start()
        .await;
    // The broken host's breaker opens once the gateway has tried it (its first inventory).
    let mut detail = app.operator_get("/readyz").await;
    for _ in 0..600 {
        if detail.body["checks"]["hosts"]["broken"]["ok"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        detail = app.operator_get("/readyz").await;
    }
    // Public side: health open, readiness status only (ready: one host down costs only its
    // own instances), no metrics, nothing of the broken host.
    assert_eq!(app.call("GET", "/healthz", None, None).await.status, 200);
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({ "status": "ready" }), "{}", r.text);
    assert!(!r.text.contains("broken") && !r.text.contains("secret-path"));
    let r = app.call("GET", "/metrics", None, None).await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.text);
    assert!(!r.text.contains("snapgate_"));
    // Even with a valid admin token.
    let r = app.get("/metrics", &app.admin).await;
    assert_eq!(r.status, 404);

    // The operator's listener: the detail of each check, and the metrics.
    let r = detail;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "ready");
    assert_eq!(r.body["checks"]["hosts"]["demo"]["ok"], true);
    assert_eq!(
        r.body["checks"]["hosts"]["broken"]["ok"], false,
        "{}",
        r.text
    );
    assert!(r.body["checks"]["hosts"]["broken"]["error"].is_string());
    assert_eq!(r.body["checks"]["database"]["ok"], true);
    assert!(app.metrics().await.contains("snapgate_http_requests_total"));
    assert_eq!(app.operator_get("/healthz").await.status, 200);
}

// ---- 4c: requests in flight and request time -----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_are_refused_with_503() {
    let app = TestApp::builder()
        .config("[api]\nmax_requests_in_flight = 3\n[snapshots]\nstale_after_secs = 3600")
        .start()
        .await;
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let (state, op) = foreign_running_save(&repo, demo::WEB, Duration::ZERO).await;
    let waits: Vec<_> = (0..3)
        .map(|_| spawn_wait(&app, op.uuid, &app.member, 120))
        .collect();
    until("three waits in flight", || async {
        waits_in_progress(&app).await == 3.0
    })
    .await;
    assert_eq!(app.metric("snapgate_http_requests_in_flight").await, 3.0);

    let r = app
        .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
        .await;
    assert_eq!((r.status, r.code()), (503, "overloaded"), "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("1"));
    // Health stays answerable for load balancers.
    assert_eq!(app.call("GET", "/healthz", None, None).await.status, 200);

    // The operation ends (on "another replica"); the waits return and the room is back.
    end_foreign(&repo, &state, &op).await;
    for w in waits {
        let r = w.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["status"], "failed");
    }
    until("the waits left", || async {
        app.metric("snapgate_http_requests_in_flight").await == 0.0
    })
    .await;
    let r = app
        .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stuck_past_the_timeout_answers_504_and_waits_are_exempt() {
    let app = TestApp::builder()
        .postgres()
        .config("[api]\nrequest_timeout_secs = 1\n[snapshots]\nstale_after_secs = 3600")
        .start()
        .await;
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    // Another session holds the table a quota read needs: the read cannot finish.
    let db = repo.connection();
    let txn = db.begin().await.unwrap();
    txn.execute(Statement::from_string(
        db.get_database_backend(),
        "LOCK TABLE quota_limits IN ACCESS EXCLUSIVE MODE",
    ))
    .await
    .unwrap();
    let r = app
        .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
        .await;
    assert_eq!((r.status, r.code()), (504, "request_timeout"), "{}", r.text);
    txn.rollback().await.unwrap();
    let r = app
        .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A wait longer than the request timeout is bounded by its own timeout instead.
    let (_, op) = foreign_running_save(&repo, demo::WEB, Duration::ZERO).await;
    let r = app
        .get(
            &format!("/v1/operations/{}/wait?timeout=2", op.uuid),
            &app.member,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "running");
}

// ---- 4d: waits by notification ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_one_gateway_wakes_when_another_gateway_ends_the_operation() {
    let shared = Arc::new(Shared::new(Db::Postgres, false).await);
    let hosts = [("demo".to_owned(), demo_host_uri())];
    // B never reconciles the operation itself, and polls nothing: only a notification or
    // the wait's own deadline (600 s, far beyond the test) can end the wait.
    let b = TestApp::start_with(
        shared.clone(),
        "[api]\nmax_wait_secs = 600\n[snapshots]\nstale_after_secs = 3600\nmaintenance_interval_secs = 3600",
        &hosts,
    )
    .await;
    let repo = SeaRepository::connect(&shared.db_url).await.unwrap();
    // Left by a gateway that died an hour ago.
    let (_, op) = foreign_running_save(&repo, demo::WEB, Duration::from_secs(3600)).await;
    let wait = spawn_wait(&b, op.uuid, &b.member, 600);
    until("B's waiter is waiting", || async {
        waits_in_progress(&b).await == 1.0
    })
    .await;

    // A starts; its start-up reconciliation ends the dead gateway's save.
    let _a = TestApp::start_with(shared.clone(), "[snapshots]\nstale_after_secs = 1", &hosts).await;
    let r = wait.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "failed", "{}", r.body);
    assert_eq!(r.body["error"]["code"], "interrupted");
    let m = b.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "snapgate_wait_database_reads_total{reason=\"shared_poll\"}"
        ),
        0.0,
        "PostgreSQL gateways listen, they do not poll"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_do_not_poll_the_database_each() {
    let app = TestApp::builder()
        .postgres()
        .config("[snapshots]\nstale_after_secs = 3600")
        .start()
        .await;
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let (_, op) = foreign_running_save(&repo, demo::WEB, Duration::ZERO).await;
    const WAITERS: usize = 8;
    let waits: Vec<_> = (0..WAITERS)
        .map(|_| spawn_wait(&app, op.uuid, &app.member, 3))
        .collect();
    for w in waits {
        let r = w.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["status"], "running");
    }
    // Each waiter reads its operation when it starts and at its deadline. A waiter polling
    // every 200 ms would read about 15 times in 3 s.
    let reads = app.metric("snapgate_wait_database_reads_total").await;
    assert!(
        (WAITERS as f64..=(2 * WAITERS + 2) as f64).contains(&reads),
        "{reads} database reads for {WAITERS} waits:\n{}",
        app.metrics().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_holds_a_bounded_number_of_waits() {
    let app = TestApp::builder()
        .config("[api]\nmax_waits_per_tenant = 2\n[snapshots]\nstale_after_secs = 3600")
        .start()
        .await;
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let (state, op) = foreign_running_save(&repo, demo::WEB, Duration::ZERO).await;
    let waits: Vec<_> = (0..2)
        .map(|_| spawn_wait(&app, op.uuid, &app.member, 120))
        .collect();
    until("two waits held", || async {
        waits_in_progress(&app).await == 2.0
    })
    .await;
    let r = app
        .get(
            &format!("/v1/operations/{}/wait?timeout=1", op.uuid),
            &app.reader,
        )
        .await;
    assert_eq!((r.status, r.code()), (429, "too_many_waits"), "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("1"));
    // Another tenant is not held back by this one (and cannot see its operation).
    let r = app
        .get(
            &format!("/v1/operations/{}/wait?timeout=1", op.uuid),
            &app.other_member,
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "operation_not_found"));

    // SQLite: one shared check for both waiters finds the end.
    end_foreign(&repo, &state, &op).await;
    for w in waits {
        assert_eq!(w.await.unwrap().body["status"], "failed");
    }
    let r = app
        .get(
            &format!("/v1/operations/{}/wait?timeout=1", op.uuid),
            &app.reader,
        )
        .await;
    assert_eq!(r.status, 200, "the slots came back: {}", r.text);
}

// ---- 4e: dry runs ----------------------------------------------------------------------------

async fn usage(app: &TestApp) -> Value {
    app.get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
        .await
        .body["usage"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_dry_runs_all_get_their_verdict_and_reserve_nothing() {
    for redis in [true, false] {
        let mut builder = TestApp::builder().config("[quota]\ndry_runs_per_minute = 1000");
        if redis {
            builder = builder.redis();
        }
        let app = builder.start().await;
        let before = usage(&app).await;
        let runs: Vec<_> = (0..100)
            .map(|i| {
                let (url, http, token) = (app.url.clone(), app.http.clone(), app.member.clone());
                tokio::spawn(async move {
                    let r = http
                        .post(format!(
                            "{url}/v1/instances/{}/states?dry_run=true",
                            demo::WEB
                        ))
                        .bearer_auth(token)
                        .json(&json!({ "name": format!("dry {i}") }))
                        .send()
                        .await
                        .unwrap();
                    read(r).await
                })
            })
            .collect();
        for run in runs {
            let r = run.await.unwrap();
            assert_eq!(r.status, 200, "redis={redis}: {}", r.text);
            assert_eq!(r.body["dry_run"], true);
            assert_eq!(r.body["allowed"], true, "{}", r.body);
        }
        assert_eq!(
            usage(&app).await,
            before,
            "redis={redis}: dry runs changed usage"
        );

        // A refusal by quota is the verdict of a dry run, not an error; the real call is refused.
        let r = app
            .call(
                "PUT",
                &format!("/v1/quotas/{}", demo::TENANT),
                Some(&app.admin),
                Some(json!({"states": 0, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = app
            .post(
                &format!("/v1/instances/{}/states?dry_run=true", demo::WEB),
                &app.member,
                json!({ "name": "over" }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            (
                &r.body["allowed"],
                &r.body["denied_by"],
                &r.body["denial_code"]
            ),
            (&json!(false), &json!("quota"), &json!("quota_exceeded")),
            "{}",
            r.body
        );
        let r = app.save(demo::WEB, "over", &app.member).await;
        assert_eq!((r.status, r.code()), (403, "quota_exceeded"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_are_rate_limited_per_tenant() {
    let app = TestApp::builder()
        .config("[quota]\ndry_runs_per_minute = 3")
        .start()
        .await;
    let dry = |token: String, instance: &'static str| {
        let app = &app;
        async move {
            app.post(
                &format!("/v1/instances/{instance}/states?dry_run=true"),
                &token,
                json!({ "name": "dry" }),
            )
            .await
        }
    };
    for _ in 0..3 {
        let r = dry(app.member.clone(), demo::WEB).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = dry(app.member.clone(), demo::WEB).await;
    assert_eq!(
        (r.status, r.code()),
        (429, "dry_run_rate_limited"),
        "{}",
        r.text
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    // Apply and delete dry runs share the budget; real calls do not use it.
    let r = app
        .post(
            &format!("/v1/instances/{}/states/apply?dry_run=true", demo::WEB),
            &app.member,
            json!({ "uuid": Uuid::new_v4() }),
        )
        .await;
    assert_eq!(r.code(), "dry_run_rate_limited");
    app.saved(demo::WEB, "real", &app.member).await;
    // Another tenant has its own budget.
    let r = dry(app.other_member.clone(), demo::NOVA_APP).await;
    assert_ne!(r.code(), "dry_run_rate_limited", "{}", r.text);
}
