//! Schedules (issue 12, point 2) on the real gateway: the calls and their rules, scheduled
//! saves and retention, exactly-once runs across gateways, a missed run run once, and skipped
//! runs that say why.
//!
//! No test waits for the wall clock to reach a slot: either the timetable fires every second,
//! or the test makes a run due by moving `next_run_at` into the past in the database — what a
//! slot passing while no gateway looks amounts to.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use snapgate_core::ports::Repository;
use snapgate_core::{OperationStatus, StateStatus};
use snapgate_store::entity::schedules;
use snapgate_store::SeaRepository;
use snapgate_tests::app::{demo, repo_root, Db, Shared, TestApp};
use snapgate_tests::foreign::foreign_running_save;
use uuid::Uuid;

/// The scheduler looks every 0.1 s; a long `stale_after` leaves the tests' foreign work alone.
const FAST: &str =
    "[snapshots]\nstale_after_secs = 3600\n[lifecycle]\nschedule_check_interval_secs = 0.1\n";

fn schedules_path(instance: &str) -> String {
    format!("/v1/instances/{instance}/schedules")
}

fn schedule_path(instance: &str, s: &Value) -> String {
    format!(
        "{}/{}",
        schedules_path(instance),
        s["uuid"].as_str().unwrap()
    )
}

async fn create(app: &TestApp, instance: &str, body: Value) -> Value {
    let r = app.post(&schedules_path(instance), &app.member, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

async fn unlimited_quota(app: &TestApp) {
    let r = app
        .call(
            "PUT",
            &format!("/v1/quotas/{}", demo::TENANT),
            Some(&app.admin),
            Some(json!({"states": -1, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Makes the schedule's next run due at `at` (in the past), as if its slot had passed while
/// no gateway looked.
async fn make_due(db_url: &str, schedule: &Value, at: DateTime<Utc>) {
    let repo = SeaRepository::connect(db_url).await.unwrap();
    let id: Uuid = schedule["uuid"].as_str().unwrap().parse().unwrap();
    let changed = schedules::Entity::update_many()
        .col_expr(
            schedules::Column::NextRunAt,
            Expr::value(Some(at.trunc_subsecs(6))),
        )
        .filter(schedules::Column::Uuid.eq(id))
        .exec(repo.connection())
        .await
        .unwrap()
        .rows_affected;
    assert_eq!(changed, 1);
    repo.close().await;
}

/// Polls the schedule until `done` holds (bounded: a hang guard, not a timing).
async fn schedule_until(
    app: &TestApp,
    instance: &str,
    schedule: &Value,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = app
            .get(&schedule_path(instance, schedule), &app.admin)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        if done(&r.body) {
            return r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited a minute for {what}: {}\n{}",
            r.text,
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the run of slot `at` to end (not `started`) and returns the schedule.
async fn run_of(app: &TestApp, instance: &str, schedule: &Value, at: DateTime<Utc>) -> Value {
    let slot = at
        .trunc_subsecs(6)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let want: DateTime<Utc> = slot.parse().unwrap();
    schedule_until(app, instance, schedule, "the run's end", |s| {
        s["last_run"]["scheduled_for"]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
            == Some(want)
            && s["last_run"]["outcome"] != "started"
    })
    .await
}

async fn states_of(app: &TestApp, instance: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/v1/instances/{instance}/states?limit=500"),
            &app.admin,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["values"].as_array().unwrap().clone()
}

fn made_by<'a>(states: &'a [Value], schedule: &Value) -> Vec<&'a Value> {
    states
        .iter()
        .filter(|s| s["schedule_id"] == schedule["uuid"])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_calls_follow_the_rules_and_the_tenant_walls() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = TestApp::builder()
            .db(db)
            .config("[lifecycle]\nmax_schedules_per_tenant = 2")
            .start()
            .await;
        let t = &app.member;
        let r = app
            .post(
                &schedules_path(demo::WEB),
                t,
                json!({"cron": "30 2 * * *", "time_zone": "Europe/Paris",
                       "name_pattern": "nightly-%Y-%m-%d-%H%M", "retention": {"keep_last": 7}}),
            )
            .await;
        assert_eq!(r.status, 201, "{db:?}: {}", r.text);
        let s = r.body.clone();
        assert_eq!(
            r.header("location"),
            Some(schedule_path(demo::WEB, &s).as_str())
        );
        assert_eq!(
            (
                &s["enabled"],
                &s["mode"],
                &s["last_run"],
                &s["retention"]["keep_last"]
            ),
            (&json!(true), &Value::Null, &Value::Null, &json!(7))
        );
        let next: DateTime<Utc> = s["next_run_at"].as_str().unwrap().parse().unwrap();
        assert!(next > Utc::now(), "{s}");
        let read = app.get(&schedule_path(demo::WEB, &s), &app.reader).await;
        assert_eq!((read.status, &read.body), (200, &s));
        let list = app.get(&schedules_path(demo::WEB), &app.reader).await;
        assert_eq!(list.body["values"], json!([s]));

        // Validation: 400 with the field's code.
        for (body, code) in [
            (
                json!({"cron": "61 * * * *", "name_pattern": "x-%H"}),
                "invalid_cron",
            ),
            (
                json!({"cron": "0 0 30 2 *", "name_pattern": "x-%H"}),
                "invalid_cron",
            ),
            (
                json!({"cron": "@daily", "time_zone": "Mars/Base", "name_pattern": "x-%H"}),
                "invalid_time_zone",
            ),
            (
                json!({"cron": "@daily", "name_pattern": "always the same"}),
                "invalid_name_pattern",
            ),
            (
                json!({"cron": "@daily", "name_pattern": "x-%Q"}),
                "invalid_name_pattern",
            ),
            (
                json!({"cron": "@daily", "name_pattern": " x-%H"}),
                "invalid_name_pattern",
            ),
            (
                json!({"cron": "@daily", "name_pattern": "x-%H", "retention": {"keep_last": 0}}),
                "invalid_retention",
            ),
            (
                json!({"cron": "@daily", "name_pattern": "x-%H", "retention": {"keep_yearly": 1}}),
                "invalid_body",
            ),
            (json!({"cron": "@daily"}), "invalid_body"),
        ] {
            let r = app.post(&schedules_path(demo::WEB), t, body.clone()).await;
            assert_eq!((r.status, r.code()), (400, code), "{body}: {}", r.text);
        }

        // Roles and walls.
        let body = json!({"cron": "@hourly", "name_pattern": "h-%H"});
        let r = app
            .post(&schedules_path(demo::WEB), &app.reader, body.clone())
            .await;
        assert_eq!((r.status, r.code()), (403, "forbidden"));
        let r = app
            .post(&schedules_path(demo::WEB), &app.other_member, body.clone())
            .await;
        assert_eq!((r.status, r.code()), (404, "instance_not_found"));
        for method in ["GET", "PATCH", "DELETE"] {
            let body = (method == "PATCH").then(|| json!({"enabled": false}));
            let r = app
                .call(
                    method,
                    &schedule_path(demo::WEB, &s),
                    Some(&app.other_member),
                    body.clone(),
                )
                .await;
            assert_eq!(
                (r.status, r.code()),
                (404, "instance_not_found"),
                "{method}"
            );
            // Through an instance of its own: the schedule is still nobody's business.
            let foreign = format!(
                "{}/{}",
                schedules_path(demo::NOVA_APP),
                s["uuid"].as_str().unwrap()
            );
            let r = app
                .call(method, &foreign, Some(&app.other_member), body)
                .await;
            assert_eq!(
                (r.status, r.code()),
                (404, "schedule_not_found"),
                "{method}"
            );
        }
        let r = app.get(&schedules_path(demo::WEB), &app.other_reader).await;
        assert_eq!(r.status, 404);

        // Merge-patch: disabling clears the next run, enabling sets it again; retention
        // rules merge one by one; `null` removes one, or all.
        let path = schedule_path(demo::WEB, &s);
        let patch = |body: Value| app.call("PATCH", &path, Some(t), Some(body));
        let r = patch(json!({"enabled": false})).await;
        assert_eq!(
            (r.status, &r.body["next_run_at"]),
            (200, &Value::Null),
            "{}",
            r.text
        );
        let r = patch(json!({"enabled": true, "cron": "@hourly", "time_zone": "UTC"})).await;
        let next: DateTime<Utc> = r.body["next_run_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(next, next.trunc_subsecs(0));
        assert_eq!(chrono::Timelike::minute(&next), 0, "{}", r.text);
        let r = patch(json!({"retention": {"keep_daily": 3}, "mode": "internal"})).await;
        assert_eq!(
            r.body["retention"],
            json!({"keep_last": 7, "keep_hourly": null, "keep_daily": 3, "keep_weekly": null, "keep_monthly": null})
        );
        assert_eq!(r.body["mode"], "internal");
        let r = patch(json!({"retention": {"keep_last": null}, "mode": null})).await;
        assert_eq!(
            (
                &r.body["retention"]["keep_last"],
                &r.body["retention"]["keep_daily"],
                &r.body["mode"]
            ),
            (&Value::Null, &json!(3), &Value::Null)
        );
        let r = patch(json!({"retention": null})).await;
        assert_eq!(r.body["retention"]["keep_daily"], Value::Null);
        let r = patch(json!({"cron": "nope"})).await;
        assert_eq!((r.status, r.code()), (400, "invalid_cron"));
        let r = app
            .call(
                "PATCH",
                &path,
                Some(&app.reader),
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!((r.status, r.code()), (403, "forbidden"));

        // The per-tenant limit (2 here), counted across the tenant's instances.
        create(&app, demo::DB, body.clone()).await;
        let r = app
            .post(&schedules_path(demo::RAW_DISK), t, body.clone())
            .await;
        assert_eq!(
            (r.status, r.code()),
            (403, "schedule_limit_exceeded"),
            "{}",
            r.text
        );
        assert_eq!(r.body["error"]["limit"], 2);

        // Delete: 204, then gone; a place is free again.
        let r = app.delete(&path, t).await;
        assert_eq!(r.status, 204, "{}", r.text);
        let r = app.get(&path, t).await;
        assert_eq!((r.status, r.code()), (404, "schedule_not_found"));
        create(&app, demo::RAW_DISK, body).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_saves_run_and_retention_keeps_the_newest_never_a_users_state() {
    let app = TestApp::builder()
        .postgres()
        .redis()
        .config(FAST)
        .start()
        .await;
    unlimited_quota(&app).await;
    let by_hand = app.saved(demo::WEB, "by hand", &app.member).await;
    let s = create(
        &app,
        demo::WEB,
        json!({"cron": "* * * * * *", "name_pattern": "tick-%Y%m%d-%H%M%S", "retention": {"keep_last": 2}}),
    )
    .await;
    // Let it save several times (a second apart; a run that finds the instance busy with the
    // previous run's retention is skipped, which is fine here).
    // Every name the schedule is seen to make (names carry the slot's time, so they sort by it).
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app
        .metric("snapgate_schedule_runs_total{result=\"succeeded\"")
        .await
        < 4.0
    {
        let states = states_of(&app, demo::WEB).await;
        seen.extend(
            made_by(&states, &s)
                .iter()
                .map(|m| m["name"].as_str().unwrap().to_owned()),
        );
        assert!(tokio::time::Instant::now() < deadline, "{}", app.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A user's save in between the schedule's: tried again while the instance is busy.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let also_by_hand = loop {
        let r = app.save(demo::WEB, "also by hand", &app.member).await;
        if r.status == 202 {
            let op = app
                .wait(r.body["operation"].as_str().unwrap(), &app.member)
                .await;
            assert_eq!(op["status"], "succeeded", "{op}");
            break r.body;
        }
        assert_eq!(r.code(), "instance_busy", "{}", r.text);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the instance stayed busy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let r = app
        .call(
            "PATCH",
            &schedule_path(demo::WEB, &s),
            Some(&app.member),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Once the last run and its retention are over: the two newest scheduled states remain.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let kept = loop {
        let sched = app
            .get(&schedule_path(demo::WEB, &s), &app.member)
            .await
            .body;
        let states = states_of(&app, demo::WEB).await;
        let mine: Vec<Value> = made_by(&states, &s).into_iter().cloned().collect();
        seen.extend(mine.iter().map(|m| m["name"].as_str().unwrap().to_owned()));
        if sched["last_run"]["outcome"] != "started"
            && mine.len() == 2
            && mine.iter().all(|m| m["status"] == "available")
        {
            break mine;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sched}\n{mine:?}\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(app.metric("snapgate_retention_deletes_total").await >= 2.0);
    // They are the newest it made (names carry the slot's time, so they sort by it).
    let succeeded = app
        .metric("snapgate_schedule_runs_total{result=\"succeeded\"")
        .await;
    let mut names: Vec<&str> = kept.iter().map(|k| k["name"].as_str().unwrap()).collect();
    names.sort();
    let newest_seen: Vec<&str> = seen
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(names, newest_seen, "kept {names:?} of {seen:?}");
    assert!(seen.len() >= 4, "{seen:?}");
    let newest_run = app
        .get(&schedule_path(demo::WEB, &s), &app.member)
        .await
        .body;
    let last_state = newest_run["last_run"]["state"].clone();
    if newest_run["last_run"]["outcome"] == "succeeded" {
        assert!(
            kept.iter().any(|k| k["uuid"] == last_state),
            "{kept:?} {newest_run}"
        );
    }
    assert!(names.iter().all(|n| n.starts_with("tick-")), "{names:?}");
    assert!(succeeded >= 4.0);
    // The users' states are untouched.
    for state in [&by_hand, &also_by_hand] {
        let r = app
            .get(
                &format!(
                    "/v1/instances/{}/states/{}",
                    demo::WEB,
                    state["uuid"].as_str().unwrap()
                ),
                &app.member,
            )
            .await;
        assert_eq!((r.status, &r.body["schedule_id"]), (200, &Value::Null));
    }
}

/// Two gateways on one PostgreSQL database look for due schedules ten times a second: each
/// due run is claimed by one of them, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_due_run_happens_once_across_two_gateways() {
    let shared = std::sync::Arc::new(Shared::new(Db::Postgres, true).await);
    let hosts = [("demo".to_owned(), snapgate_tests::app::demo_host_uri())];
    let a = TestApp::start_with(shared.clone(), FAST, &hosts).await;
    let b = TestApp::start_with(shared.clone(), FAST, &hosts).await;
    unlimited_quota(&a).await;
    // Yearly: it never comes due by itself during the test.
    let s = create(
        &a,
        demo::WEB,
        json!({"cron": "0 0 1 1 *", "name_pattern": "run-%Y%m%d-%H%M%S"}),
    )
    .await;
    let rounds = 4;
    for round in 0..rounds {
        // A minute apart per round: never the slot of the round before.
        let slot = (Utc::now() - chrono::Duration::minutes(1 + round)).trunc_subsecs(0);
        make_due(&shared.db_url, &s, slot).await;
        let done = run_of(&b, demo::WEB, &s, slot).await;
        assert_eq!(done["last_run"]["outcome"], "succeeded", "{done}");
        let next: DateTime<Utc> = done["next_run_at"].as_str().unwrap().parse().unwrap();
        assert!(
            next > slot && chrono::Datelike::ordinal(&next) == 1,
            "{done}"
        );
    }
    let claims = a.metric("snapgate_schedule_runs_claimed_total").await
        + b.metric("snapgate_schedule_runs_claimed_total").await;
    assert_eq!(
        claims, rounds as f64,
        "each due run was claimed once in all"
    );
    let states = states_of(&a, demo::WEB).await;
    assert_eq!(made_by(&states, &s).len(), rounds as usize, "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_missed_while_every_gateway_was_down_runs_once() {
    // Both databases: the claim compares timestamps, stored differently by each.
    for db in [Db::Sqlite, Db::Postgres] {
        let mut app = TestApp::builder().db(db).redis().config(FAST).start().await;
        unlimited_quota(&app).await;
        let s = create(
            &app,
            demo::WEB,
            json!({"cron": "0 * * * *", "name_pattern": "hourly-%Y%m%d-%H%M"}),
        )
        .await;
        app.kill9().await;
        // Five hourly slots pass while no gateway runs.
        let missed = (Utc::now() - chrono::Duration::hours(5)).trunc_subsecs(0);
        make_due(&app.shared.db_url, &s, missed).await;
        app.restart().await;
        let done = run_of(&app, demo::WEB, &s, missed).await;
        assert_eq!(done["last_run"]["outcome"], "succeeded", "{done}");
        // One run, and the next is the coming slot, not the next missed one.
        let next: DateTime<Utc> = done["next_run_at"].as_str().unwrap().parse().unwrap();
        assert!(next > missed + chrono::Duration::hours(4), "{done}");
        assert_eq!(chrono::Timelike::minute(&next), 0, "{done}");
        assert_eq!(
            app.metric("snapgate_schedule_runs_claimed_total").await,
            1.0
        );
        let states = states_of(&app, demo::WEB).await;
        assert_eq!(made_by(&states, &s).len(), 1, "{states:?}");
    }
}

fn plugin_chain() -> String {
    let plugin = repo_root().join("plugins/dist/max-states-per-instance.wasm");
    assert!(
        plugin.exists(),
        "{} is missing: run scripts/build-plugins.sh",
        plugin.display()
    );
    format!(
        "[policy]\ndeadline_ms = 500\nmemory_mib = 16\ncache_dir = \"{}\"\n\
         [[policy.plugins]]\nname = \"max-states\"\nfile = \"{}\"\noperations = [\"save\"]\nmode = \"enforce\"\non_error = \"deny\"\nconfig = '{{\"max\": 2}}'\n",
        repo_root().join("target/plugin-cache-tests").display(),
        plugin.display()
    )
}

/// Makes the schedule due (a distinct slot per `round`) and returns its run once over.
async fn trigger(app: &TestApp, s: &Value, round: i64) -> Value {
    // A minute apart per round: never the slot of the round before.
    let slot = (Utc::now() - chrono::Duration::minutes(1 + round)).trunc_subsecs(0);
    make_due(&app.shared.db_url, s, slot).await;
    run_of(app, demo::DB, s, slot).await["last_run"].clone()
}

/// A run that cannot save is `skipped`, with the refusal's code and message in `last_run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_cannot_save_are_skipped_with_the_reason() {
    let app = TestApp::builder()
        .postgres()
        .redis()
        .config(&format!("{FAST}{}", plugin_chain()))
        .start()
        .await;
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let s = create(
        &app,
        demo::DB,
        json!({"cron": "0 0 1 1 *", "name_pattern": "s-%Y%m%d-%H%M%S"}),
    )
    .await;
    let mut round = 0;
    let mut run = || {
        round += 1;
        trigger(&app, &s, round)
    };

    // Quota full.
    let r = app
        .call("PUT", &format!("/v1/quotas/{}", demo::TENANT), Some(&app.admin),
            Some(json!({"states": 0, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let last = run().await;
    assert_eq!(
        (&last["outcome"], &last["error"]["code"]),
        (&json!("skipped"), &json!("quota_exceeded")),
        "{last}"
    );
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("states"),
        "{last}"
    );
    let r = app
        .call("PUT", &format!("/v1/quotas/{}", demo::TENANT), Some(&app.admin),
            Some(json!({"states": -1, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1})))
        .await;
    assert_eq!(r.status, 200);

    // The instance busy with another gateway's save.
    let (mut state, mut op) = foreign_running_save(&repo, demo::DB).await;
    let last = run().await;
    assert_eq!(
        (&last["outcome"], &last["error"]["code"]),
        (&json!("skipped"), &json!("instance_busy")),
        "{last}"
    );
    op.status = OperationStatus::Failed;
    op.finished_at = Some(Utc::now());
    state.status = StateStatus::Error;
    repo.finish_operation(&op, Some(&state)).await.unwrap();

    // The policy denies: the instance keeps two states (the failed one and a user's), the
    // plugin allows 2.
    app.saved(demo::DB, "by hand", &app.member).await;
    let last = run().await;
    assert_eq!(
        (&last["outcome"], &last["error"]["code"]),
        (&json!("skipped"), &json!("policy_denied")),
        "{last}"
    );
    assert!(last["state"].is_null(), "{last}");

    // None of it made a state, and the gateway is fine.
    let states = states_of(&app, demo::DB).await;
    assert!(made_by(&states, &s).is_empty(), "{states:?}");
    assert_eq!(
        app.metric("snapgate_schedule_runs_total{result=\"skipped\",reason=\"policy_denied\"}")
            .await,
        1.0
    );
    assert_eq!(app.call("GET", "/healthz", None, None).await.status, 200);
}

fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(snapgate_tests::app::snapgate_bin())
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
async fn schedule_commands_of_the_cli() {
    let app = TestApp::builder().start().await;
    let run = |args: &[&str]| tokio::task::block_in_place(|| cli(&app, args));
    let (code, out, err) = run(&[
        "schedule",
        "create",
        demo::WEB,
        "--cron",
        "0 3 * * *",
        "--name-pattern",
        "nightly-%Y-%m-%d",
        "--time-zone",
        "Europe/Berlin",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&s["retention"]["keep_daily"], &s["time_zone"]),
        (&json!(7), &json!("Europe/Berlin"))
    );
    let id = s["uuid"].as_str().unwrap();
    let (code, out, _) = run(&["schedule", "list", demo::WEB]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("UUID") && out.contains(id) && out.contains("nightly-%Y-%m-%d"),
        "{out}"
    );
    let (code, out, err) = run(&[
        "schedule",
        "update",
        demo::WEB,
        id,
        "--disable",
        "--keep-last",
        "3",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &s["enabled"],
            &s["next_run_at"],
            &s["retention"]["keep_last"],
            &s["retention"]["keep_daily"]
        ),
        (&json!(false), &Value::Null, &json!(3), &json!(7))
    );
    let (code, out, _) = run(&["schedule", "show", demo::WEB, id]);
    assert_eq!(code, 0);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.contains(&vec!["last", "run", "none", "yet"])
            && rows.contains(&vec!["enabled", "false"]),
        "{out}"
    );
    let (code, out, _) = run(&["schedule", "delete", demo::WEB, id]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("schedule {id} deleted").as_str())
    );
    let (code, _, err) = run(&["schedule", "show", demo::WEB, id]);
    assert_eq!(code, 1);
    assert!(err.contains("schedule not found"), "{err}");
}
