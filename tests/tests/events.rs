//! The event log (issue 12, point 4) on real gateways: every change is an event, in order, with
//! its data; `GET /v1/events` streams it from the database (so any gateway serves the same
//! stream), resumes with `Last-Event-ID` without gap or repeat, keeps tenants apart; the CLI
//! follows it; retention purges it.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use snapgate_core::events::EventFilter;
use snapgate_core::ports::EventLog;
use snapgate_store::SeaRepository;
use snapgate_tests::app::{demo, repo_root, snapgate_bin, Db, Shared, TestApp};
use snapgate_tests::foreign::foreign_running_save;
use snapgate_tests::sse::{self, assert_dense, Opened};

fn plugin(name: &str) -> String {
    let path = repo_root()
        .join("plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh (the test command does)",
        path.display()
    );
    path.display().to_string()
}

/// Maintenance (reconciler, expiry, purge) every 0.2 s; work without heartbeat for 1 s is a
/// dead gateway's (so a foreign save is ended as failed); at most one state per instance by
/// policy; two states for the tenant by quota.
fn config() -> String {
    let cache = repo_root().join("target/plugin-cache-tests");
    format!(
        "[snapshots]\nmaintenance_interval_secs = 0.2\nstale_after_secs = 1\n\
         [policy]\ndeadline_ms = 500\nmemory_mib = 16\ncache_dir = \"{}\"\n\
         [[policy.plugins]]\nname = \"max-states\"\nfile = \"{}\"\noperations = [\"save\"]\nmode = \"enforce\"\non_error = \"deny\"\nconfig = '{{\"max\": 1}}'\n",
        cache.display(),
        plugin("max-states-per-instance")
    )
}

fn in_secs(secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn set_quota(app: &TestApp, states: i64) {
    let r = app
        .call(
            "PUT",
            &format!("/v1/quotas/{}", demo::TENANT),
            Some(&app.admin),
            Some(json!({"states": states, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_and_refusal_is_an_event_in_order_sqlite() {
    every_change_and_refusal_is_an_event_in_order(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_and_refusal_is_an_event_in_order_postgres() {
    every_change_and_refusal_is_an_event_in_order(Db::Postgres).await;
}

/// Save, apply, a policy denial, a quota refusal, delete, a failed save and an expiry: each is
/// one event of its kind, about its instance, state and operation, with its data, in the
/// order they happened, numbered without gaps.
async fn every_change_and_refusal_is_an_event_in_order(db: Db) {
    let app = TestApp::builder().db(db).config(&config()).start().await;
    set_quota(&app, 2).await;
    let m = &app.member;
    let mut stream = sse::open(&app, "?after=0", m, None).await.stream();
    let mut all = Vec::new();

    // state.saved
    let web = app.saved(demo::WEB, "first", m).await;
    let e = stream.next_event().await;
    assert_eq!(e["kind"], "state.saved", "{e}");
    assert_eq!(e["tenant"], demo::TENANT);
    assert_eq!(e["instance_uuid"], demo::WEB);
    assert_eq!(e["state_uuid"], web["uuid"]);
    assert_eq!(e["data"]["state_name"], "first");
    assert_eq!(e["data"]["status"], "available");
    assert_eq!(e["data"]["size_bytes"], web["size_bytes"]);
    assert!(e["operation_uuid"].is_string());
    all.push(e);

    // state.applied
    let r = app
        .post(
            &format!("/v1/instances/{}/states/apply", demo::WEB),
            m,
            json!({"uuid": web["uuid"]}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = app.wait(r.body["uuid"].as_str().unwrap(), m).await;
    assert_eq!(op["status"], "succeeded");
    let e = stream.next_event().await;
    assert_eq!(e["kind"], "state.applied", "{e}");
    assert_eq!(e["operation_uuid"], op["uuid"]);
    assert_eq!(e["state_uuid"], web["uuid"]);
    assert_eq!(e["data"]["state_name"], "first");
    all.push(e);

    // policy.denied (a second state of the instance)
    let r = app.save(demo::WEB, "second", m).await;
    assert_eq!((r.status, r.code()), (403, "policy_denied"), "{}", r.text);
    let e = stream.next_event().await;
    assert_eq!(e["kind"], "policy.denied", "{e}");
    assert_eq!(e["instance_uuid"], demo::WEB);
    assert_eq!(e["data"]["plugin"], "max-states");
    assert_eq!(e["data"]["operation"], "save");
    assert_eq!(e["data"]["state_name"], "second");
    assert!(e["data"]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    all.push(e);

    // A second instance's save fills the quota; a third state is refused by it.
    let db_state = app.saved(demo::DB, "db", m).await;
    let e = stream.next_event().await;
    assert_eq!(
        (e["kind"].as_str(), &e["state_uuid"]),
        (Some("state.saved"), &db_state["uuid"])
    );
    all.push(e);
    let r = app.save(demo::DB, "db-2", m).await;
    assert_eq!((r.status, r.code()), (403, "quota_exceeded"), "{}", r.text);
    let e = stream.next_event().await;
    assert_eq!(e["kind"], "quota.exceeded", "{e}");
    assert_eq!(e["instance_uuid"], demo::DB);
    assert_eq!(e["data"]["dimension"], "states");
    assert_eq!(e["data"]["limit"], 2);
    assert_eq!(e["data"]["in_use"], 2);
    assert_eq!(e["data"]["operation"], "save");
    all.push(e);

    // state.deleted
    let r = app
        .delete(
            &format!(
                "/v1/instances/{}/states/{}",
                demo::DB,
                db_state["uuid"].as_str().unwrap()
            ),
            m,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    app.wait(r.body["uuid"].as_str().unwrap(), m).await;
    let e = stream.next_event().await;
    assert_eq!(e["kind"], "state.deleted", "{e}");
    assert_eq!(e["state_uuid"], db_state["uuid"]);
    assert_eq!(e["data"]["state_name"], "db");
    all.push(e);

    // state.failed: a save whose gateway died; the reconciler rolls it back.
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let (foreign, foreign_op) = foreign_running_save(&repo, demo::DB).await;
    let e = stream.next_event().await;
    assert_eq!(e["kind"], "state.failed", "{e}");
    assert_eq!(e["state_uuid"], foreign.uuid.to_string());
    assert_eq!(e["operation_uuid"], foreign_op.uuid.to_string());
    assert_eq!(e["data"]["operation"], "save");
    assert_eq!(e["data"]["error_code"], "interrupted");
    assert_eq!(e["data"]["status"], "error");
    assert_eq!(e["data"]["state_name"], foreign.name);
    all.push(e);

    // state.expired, not state.deleted, for the maintenance loop's delete of an expired state.
    let r = app
        .call(
            "PATCH",
            &format!(
                "/v1/instances/{}/states/{}",
                demo::WEB,
                web["uuid"].as_str().unwrap()
            ),
            Some(m),
            Some(json!({"expires_at": in_secs(1)})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = stream.next_event().await;
    assert_eq!(e["kind"], "state.expired", "{e}");
    assert_eq!(e["state_uuid"], web["uuid"]);
    assert_eq!(e["data"]["state_name"], "first");
    assert!(e["data"]["expires_at"].is_string(), "{e}");
    all.push(e);

    assert_eq!(all[0]["seq"], 1, "the log starts at 1");
    assert_dense(&all);
    let ids: std::collections::HashSet<_> = all.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids.len(), all.len(), "every event has its own id");
}

/// Two gateways on one PostgreSQL database: a client of B sees, in order, the events of saves
/// made through A; after a disconnect, resuming with `Last-Event-ID` gets exactly the events
/// it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_one_gateway_sees_the_other_gateways_events_and_resumes_without_gaps() {
    let shared = std::sync::Arc::new(Shared::new(Db::Postgres, true).await);
    let a = TestApp::start_with(shared.clone(), "", &[]).await;
    let b = TestApp::start_with(shared.clone(), "", &[]).await;
    set_quota(&a, -1).await;

    let mut on_b = sse::open(&b, "?type=state.saved", &b.member, None)
        .await
        .stream();
    let mut saved = Vec::new();
    for i in 0..3 {
        let s = a
            .saved(demo::WEB, &format!("through A {i}"), &a.member)
            .await;
        saved.push(s["uuid"].clone());
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(on_b.next_event().await);
    }
    assert_eq!(
        seen.iter()
            .map(|e| e["state_uuid"].clone())
            .collect::<Vec<_>>(),
        saved
    );
    assert_dense(&seen);

    // The client drops after the first of the next events; more happen meanwhile.
    for i in 3..6 {
        let s = a
            .saved(demo::WEB, &format!("through A {i}"), &a.member)
            .await;
        saved.push(s["uuid"].clone());
    }
    seen.push(on_b.next_event().await);
    drop(on_b);
    for i in 6..8 {
        let s = a
            .saved(demo::DB, &format!("while away {i}"), &a.member)
            .await;
        saved.push(s["uuid"].clone());
    }
    let last = seen.last().unwrap()["seq"].as_i64().unwrap();
    let mut resumed = sse::open(&b, "?type=state.saved", &b.member, Some(last))
        .await
        .stream();
    for _ in seen.len()..saved.len() {
        seen.push(resumed.next_event().await);
    }
    assert_eq!(
        seen.iter()
            .map(|e| e["state_uuid"].clone())
            .collect::<Vec<_>>(),
        saved,
        "every save once, in order"
    );
    assert_dense(&seen);
    // `?after=` is the same resume, on the other gateway.
    let first = seen[0]["seq"].as_i64().unwrap();
    let mut on_a = sse::open(
        &a,
        &format!("?type=state.saved&after={first}"),
        &a.member,
        None,
    )
    .await
    .stream();
    let again = on_a.next_event().await;
    assert_eq!(again, seen[1]);
}

/// Tenant X never sees tenant Y's events: not in its own stream, not by naming Y's instance,
/// not by naming Y as `tenant` (ignored for a tenant's caller). The operator sees both and can
/// pick one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_events() {
    let app = TestApp::builder().start().await;
    set_quota(&app, -1).await;
    let mut demo_stream = sse::open(
        &app,
        &format!("?after=0&tenant={}", demo::NOVA_TENANT),
        &app.member,
        None,
    )
    .await
    .stream();
    let mut nova_stream = sse::open(&app, "?after=0", &app.other_member, None)
        .await
        .stream();
    let mut operator = sse::open(&app, "?after=0", &app.admin, None).await.stream();

    let nova = app.saved(demo::NOVA_APP, "nova's", &app.other_member).await;
    let web = app.saved(demo::WEB, "demo's", &app.member).await;

    // The nova save came first: had it leaked, it would come before demo's.
    let e = demo_stream.next_event().await;
    assert_eq!(
        (e["tenant"].as_str(), &e["state_uuid"]),
        (Some(demo::TENANT), &web["uuid"])
    );
    let e = nova_stream.next_event().await;
    assert_eq!(
        (e["tenant"].as_str(), &e["state_uuid"]),
        (Some(demo::NOVA_TENANT), &nova["uuid"])
    );
    let both = [operator.next_event().await, operator.next_event().await];
    assert_eq!(both[0]["state_uuid"], nova["uuid"]);
    assert_eq!(both[1]["state_uuid"], web["uuid"]);
    let mut only_nova = sse::open(
        &app,
        &format!("?after=0&tenant={}", demo::NOVA_TENANT),
        &app.admin,
        None,
    )
    .await
    .stream();
    assert_eq!(only_nova.next_event().await["state_uuid"], nova["uuid"]);

    // Demo's member naming nova's instance: its stream is demo's, so nothing, even from 0.
    // (The stream reads everything kept at once; a leak would arrive at once.)
    let mut probe = sse::open(
        &app,
        &format!("?after=0&instance={}", demo::NOVA_APP),
        &app.member,
        None,
    )
    .await
    .stream();
    assert!(
        probe.next_within(Duration::from_secs(2)).await.is_none(),
        "another tenant's instance yields nothing"
    );
    assert!(demo_stream
        .next_within(Duration::from_millis(300))
        .await
        .is_none());
}

/// Bad filters are 400 with stable codes; a tenant's streams are bounded per gateway (429 with
/// `Retry-After`), and a closed stream frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_are_checked_and_streams_are_bounded_per_tenant() {
    let app = TestApp::builder()
        .config("[api]\nmax_event_streams_per_tenant = 2")
        .start()
        .await;
    for (query, code) in [
        ("?type=state.saved,state.nope", "unknown_event_type"),
        ("?after=-1", "invalid_event_id"),
    ] {
        match sse::open(&app, query, &app.member, None).await {
            Opened::Refused { status, body, .. } => {
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (400, Some(code)),
                    "{query}"
                );
            }
            Opened::Stream(_) => panic!("{query} was accepted"),
        }
    }
    let r = app
        .call_with_headers(
            "GET",
            "/v1/events",
            &app.member,
            &[("last-event-id", b"x")],
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_event_id"),
        "{}",
        r.text
    );

    let first = sse::open(&app, "", &app.member, None).await.stream();
    let _second = sse::open(&app, "?type=state.saved", &app.reader, None)
        .await
        .stream();
    match sse::open(&app, "", &app.member, None).await {
        Opened::Refused {
            status,
            retry_after,
            body,
        } => {
            assert_eq!(status, 429);
            assert_eq!(body["error"]["code"], "too_many_event_streams");
            assert!(retry_after.is_some());
        }
        Opened::Stream(_) => panic!("a third stream of the tenant was accepted"),
    }
    // Another tenant has its own allowance.
    let _nova = sse::open(&app, "", &app.other_member, None).await.stream();
    drop(first);
    // The server notices the closed connection when it next writes (a keep-alive at worst):
    // wait for the gauge.
    app.wait_for_metrics("the closed stream's place freed", |m| {
        snapgate_tests::app::metric_value(m, "snapgate_event_streams_open") == 2.0
    })
    .await;
    let _third = sse::open(&app, "", &app.member, None).await.stream();
}

/// `snapgate events -o json` prints the events of a save, one JSON object per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_follows_the_events_of_a_save() {
    let app = TestApp::builder().start().await;
    set_quota(&app, -1).await;
    let mut child = std::process::Command::new(snapgate_bin())
        .args([
            "events",
            "-o",
            "json",
            "--after",
            "0",
            "--instance",
            demo::WEB,
        ])
        .env("SNAPGATE_URL", &app.url)
        .env("SNAPGATE_TOKEN", &app.member)
        .env_remove("SNAPGATE_OUTPUT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run snapgate events");
    let stdout = child.stdout.take().unwrap();
    let state = app.saved(demo::WEB, "seen by the CLI", &app.member).await;
    let line = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        lines.next().expect("a line").expect("readable")
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(event["kind"], "state.saved");
    assert_eq!(event["state_uuid"], state["uuid"]);
    assert_eq!(event["data"]["state_name"], "seen by the CLI");
    assert_eq!(event["seq"], 1);
}

/// Events older than `events.retention_hours` are purged by the maintenance loop (the newest
/// is kept so numbering goes on after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_events() {
    // 0.0005 h = 1.8 s.
    let app = TestApp::builder()
        .config("[snapshots]\nmaintenance_interval_secs = 0.2\n[events]\nretention_hours = 0.0005")
        .start()
        .await;
    set_quota(&app, -1).await;
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let mut stream = sse::open(&app, "?after=0", &app.member, None)
        .await
        .stream();
    app.saved(demo::WEB, "old", &app.member).await;
    let old = stream.next_event().await;
    app.saved(demo::DB, "newer", &app.member).await;
    let newer = stream.next_event().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let kept = repo
            .events_after(0, &EventFilter::default(), 10)
            .await
            .unwrap();
        let seqs: Vec<i64> = kept.iter().map(|e| e.seq).collect();
        if !seqs.contains(&old["seq"].as_i64().unwrap()) {
            // The newest numbered event is never purged.
            assert_eq!(seqs, [newer["seq"].as_i64().unwrap()]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not purged: {seqs:?}\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A client resuming from before the purge gets what is left.
    let mut late = sse::open(&app, "?after=0", &app.member, None)
        .await
        .stream();
    assert_eq!(late.next_event().await["seq"], newer["seq"]);
    assert!(app.metric("snapgate_events_purged_total").await >= 1.0);
}

/// A schedule's runs are events: `schedule.run` naming the state it saves (whose
/// `state.saved` names the schedule), and `schedule.skipped` with the refusal's code once the
/// quota is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_runs_and_skips_are_events() {
    let app = TestApp::builder()
        .config("[snapshots]\nstale_after_secs = 3600\n[lifecycle]\nschedule_check_interval_secs = 0.1\n")
        .start()
        .await;
    set_quota(&app, 1).await;
    let mut stream = sse::open(
        &app,
        &format!(
            "?after=0&instance={}&type=schedule.run,schedule.skipped,state.saved",
            demo::WEB
        ),
        &app.member,
        None,
    )
    .await
    .stream();
    let r = app
        .post(
            &format!("/v1/instances/{}/schedules", demo::WEB),
            &app.member,
            json!({"cron": "* * * * * *", "name_pattern": "tick-%Y%m%d-%H%M%S", "retention": {"keep_last": 10}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let schedule = r.body["uuid"].clone();
    let events = stream.until(|e| e["kind"] == "schedule.skipped").await;
    let run = events
        .iter()
        .find(|e| e["kind"] == "schedule.run")
        .expect("a schedule.run before the skip");
    assert_eq!(run["data"]["schedule_id"], schedule);
    assert!(run["data"]["state_name"]
        .as_str()
        .unwrap()
        .starts_with("tick-"));
    let saved = events
        .iter()
        .find(|e| e["kind"] == "state.saved")
        .expect("the run's state.saved");
    assert_eq!(saved["state_uuid"], run["state_uuid"]);
    assert_eq!(saved["data"]["schedule_id"], schedule);
    let skipped = events.last().unwrap();
    assert_eq!(skipped["data"]["schedule_id"], schedule);
    assert_eq!(skipped["data"]["code"], "quota_exceeded");
    assert!(skipped["data"]["scheduled_for"].is_string());
    let r = app
        .delete(
            &format!(
                "/v1/instances/{}/schedules/{}",
                demo::WEB,
                schedule.as_str().unwrap()
            ),
            &app.member,
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
}

/// Open streams end when the gateway shuts down (its graceful shutdown does not wait for them),
/// and a client resumes on the restarted gateway from where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_at_shutdown_and_resume_after_a_restart() {
    let mut app = TestApp::builder().start().await;
    set_quota(&app, -1).await;
    let mut stream = sse::open(&app, "?after=0", &app.member, None)
        .await
        .stream();
    app.saved(demo::WEB, "before the restart", &app.member)
        .await;
    let first = stream.next_event().await;
    app.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("the stream ends (hang guard)");
    assert!(ended.is_none(), "{ended:?}");
    app.restart_gracefully().await;
    let s = app.saved(demo::DB, "after the restart", &app.member).await;
    let mut resumed = sse::open(&app, "", &app.member, first["seq"].as_i64())
        .await
        .stream();
    let next = resumed.next_event().await;
    assert_eq!(next["seq"], first["seq"].as_i64().unwrap() + 1);
    assert_eq!(next["state_uuid"], s["uuid"]);
}
