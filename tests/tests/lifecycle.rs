//! A state's life after its save (issue 12, point 1): `PATCH …/states/{s}` (name, description,
//! expiry) and expiry by the maintenance loop through the ordinary delete, on the real gateway.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use snapgate_store::SeaRepository;
use snapgate_tests::app::{demo, Db, Shared, TestApp};
use snapgate_tests::foreign::{end_foreign_save, foreign_running_save};
use uuid::Uuid;

/// Maintenance every 0.2 s, so expiry is seen quickly; a long `stale_after` so the reconciler
/// leaves the tests' "other replica" work alone.
const FAST_MAINTENANCE: &str =
    "[snapshots]\nmaintenance_interval_secs = 0.2\nstale_after_secs = 3600";

fn in_secs(secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn state_path(instance: &str, state: &Value) -> String {
    format!(
        "/v1/instances/{instance}/states/{}",
        state["uuid"].as_str().unwrap()
    )
}

/// Saves with a body of the test's choosing and waits for the save to end.
async fn saved_with(app: &TestApp, instance: &str, body: Value) -> Value {
    let r = app
        .post(
            &format!("/v1/instances/{instance}/states"),
            &app.member,
            body,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = app
        .wait(r.body["operation"].as_str().unwrap(), &app.member)
        .await;
    assert_eq!(op["status"], "succeeded", "{op}");
    r.body
}

/// Polls `GET path` until `done` holds for the response (bounded: a hang guard, not a timing).
async fn wait_until(app: &TestApp, path: &str, what: &str, done: impl Fn(u16, &Value) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = app.get(path, &app.admin).await;
        if done(r.status, &r.body) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited a minute for {what}: last answer {} {}\n{}",
            r.status,
            r.text,
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No quota limit in the way of the test's saves (the demo instances' disks are large).
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

async fn states_in_use(app: &TestApp) -> i64 {
    let q = app
        .get(&format!("/v1/quotas/{}", demo::TENANT), &app.admin)
        .await;
    assert_eq!(q.status, 200, "{}", q.text);
    q.body["usage"]["states"]["in_use"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_name_description_and_expiry_by_the_save_rules() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = TestApp::builder()
            .db(db)
            .config("[snapshots]\nstale_after_secs = 3600")
            .start()
            .await;
        let t = &app.member;
        let first = app.saved(demo::WEB, "first", t).await;
        let second = app.saved(demo::WEB, "second", t).await;
        let path = state_path(demo::WEB, &first);
        let patch = |body: Value| app.call("PATCH", &path, Some(t), Some(body));

        // Every field at once; what comes back is what a read returns.
        let expires = in_secs(3600);
        let r = patch(
            json!({"name": "renamed", "description": "kept for the audit", "expires_at": expires}),
        )
        .await;
        assert_eq!(r.status, 200, "{db:?}: {}", r.text);
        assert_eq!(r.body["name"], "renamed");
        assert_eq!(r.body["description"], "kept for the audit");
        assert_eq!(r.body["expires_at"], expires);
        assert_eq!(app.get(&path, t).await.body, r.body);

        // Merge-patch: a field left out stays, `null` clears description and expiry.
        let r = patch(json!({"description": null})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            (
                &r.body["name"],
                &r.body["description"],
                &r.body["expires_at"]
            ),
            (&json!("renamed"), &Value::Null, &json!(expires))
        );
        let r = patch(json!({"expires_at": null})).await;
        assert_eq!((r.status, &r.body["expires_at"]), (200, &Value::Null));

        // The name rules of a save: unique per instance (NFC), the character rules.
        let r = patch(json!({"name": "second"})).await;
        assert_eq!((r.status, r.code()), (409, "duplicate_name"), "{}", r.text);
        let r = patch(json!({"name": "caf\u{0065}\u{0301}"})).await;
        assert_eq!((r.status, &r.body["name"]), (200, &json!("caf\u{00E9}")));
        for (body, code) in [
            (json!({"name": " padded"}), "invalid_name"),
            (json!({"name": "zero\u{200B}width"}), "invalid_name"),
            (json!({"name": null}), "invalid_name"),
            (json!({"description": "bell\u{7}"}), "invalid_description"),
            (json!({"expires_at": in_secs(-60)}), "invalid_expires_at"),
            (
                json!({"expires_at": in_secs(11 * 366 * 86_400)}),
                "invalid_expires_at",
            ),
            (json!({"expires_at": "tomorrow"}), "invalid_body"),
            (json!({"size_bytes": 1}), "invalid_body"),
        ] {
            let r = patch(body.clone()).await;
            assert_eq!((r.status, r.code()), (400, code), "{body}: {}", r.text);
        }
        // The save takes an expiry too, by the same rule.
        let at_save = in_secs(7200);
        let s = saved_with(
            &app,
            demo::WEB,
            json!({"name": "with expiry", "expires_at": at_save}),
        )
        .await;
        assert_eq!(s["expires_at"], at_save);
        let r = app.get(&state_path(demo::WEB, &s), t).await;
        assert_eq!(r.body["expires_at"], at_save);
        let r = app
            .post(
                &format!("/v1/instances/{}/states", demo::WEB),
                t,
                json!({"name": "past", "expires_at": in_secs(-1)}),
            )
            .await;
        assert_eq!((r.status, r.code()), (400, "invalid_expires_at"));

        // Roles and walls: a reader may not; another tenant, or a state of another instance,
        // is a 404 exactly like a state that does not exist.
        let r = app
            .call(
                "PATCH",
                &path,
                Some(&app.reader),
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!((r.status, r.code()), (403, "forbidden"));
        for (token, p) in [
            (&app.other_member, path.clone()),
            (t, state_path(demo::DB, &first)),
            (
                t,
                format!("/v1/instances/{}/states/{}", demo::WEB, Uuid::now_v7()),
            ),
        ] {
            let r = app
                .call("PATCH", &p, Some(token), Some(json!({"name": "x"})))
                .await;
            assert_eq!(r.status, 404, "{p}: {}", r.text);
        }
        let unknown = app
            .call(
                "PATCH",
                &format!("/v1/instances/{}/states/{}", demo::WEB, Uuid::now_v7()),
                Some(t),
                Some(json!({"name": "x"})),
            )
            .await;
        let walled = app
            .call(
                "PATCH",
                &path,
                Some(&app.other_member),
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(walled.status, 404);
        assert_eq!(walled.code(), "instance_not_found", "{}", walled.text);
        assert_eq!(unknown.code(), "state_not_found");

        // A state with an operation on it cannot be edited.
        let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
        let foreign = foreign_running_save(&repo, demo::WEB).await;
        let r = app
            .call(
                "PATCH",
                &format!("/v1/instances/{}/states/{}", demo::WEB, foreign.0.uuid),
                Some(t),
                Some(json!({"description": "x"})),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (409, "state_not_available"),
            "{}",
            r.text
        );
        // Other states of the busy instance can.
        let r = app
            .call(
                "PATCH",
                &state_path(demo::WEB, &second),
                Some(t),
                Some(json!({"description": "fine"})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        end_foreign_save(&repo, foreign).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_states_are_deleted_through_the_ordinary_delete_and_free_their_quota() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = TestApp::builder()
            .db(db)
            .config(FAST_MAINTENANCE)
            .start()
            .await;
        let kept = app.saved(demo::WEB, "kept", &app.member).await;
        let before = states_in_use(&app).await;
        let expiring = app.saved(demo::WEB, "short-lived", &app.member).await;
        assert_eq!(states_in_use(&app).await, before + 1);
        let r = app
            .call(
                "PATCH",
                &state_path(demo::WEB, &expiring),
                Some(&app.member),
                Some(json!({"expires_at": in_secs(1)})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);

        // Once due, the maintenance loop deletes it: gone, and its quota is back.
        wait_until(
            &app,
            &state_path(demo::WEB, &expiring),
            "the expired state's delete",
            |status, _| status == 404,
        )
        .await;
        assert_eq!(states_in_use(&app).await, before, "{db:?}");
        assert_eq!(
            app.get(&state_path(demo::WEB, &kept), &app.member)
                .await
                .status,
            200
        );
        assert_eq!(
            app.metric("snapgate_states_expired_total{result=\"started\"}")
                .await,
            1.0
        );
        assert_eq!(
            app.metric("snapgate_operations_total{kind=\"delete\",result=\"succeeded\"}")
                .await,
            1.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_state_of_a_busy_instance_waits_for_it() {
    let app = TestApp::builder()
        .postgres()
        .config(FAST_MAINTENANCE)
        .start()
        .await;
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let expiring = app
        .saved(demo::WEB, "expires while busy", &app.member)
        .await;
    let foreign = foreign_running_save(&repo, demo::WEB).await;
    let path = state_path(demo::WEB, &expiring);
    let r = app
        .call(
            "PATCH",
            &path,
            Some(&app.member),
            Some(json!({"expires_at": in_secs(1)})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Due, tried, and put off because the instance is busy: the state stays…
    app.wait_for_metrics("an expiry put off", |page| {
        snapgate_tests::app::metric_value(
            page,
            "snapgate_states_expired_total{result=\"postponed\"}",
        ) >= 1.0
    })
    .await;
    let r = app.get(&path, &app.member).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("available")));
    // … and its expiry can no longer be changed: it is on its way out.
    let r = app
        .call(
            "PATCH",
            &path,
            Some(&app.member),
            Some(json!({"expires_at": null})),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "state_expired"), "{}", r.text);
    // A description still can.
    let r = app
        .call(
            "PATCH",
            &path,
            Some(&app.member),
            Some(json!({"description": "bye"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Once the instance is free, a later pass deletes it.
    end_foreign_save(&repo, foreign).await;
    wait_until(&app, &path, "the delayed expiry", |status, _| status == 404).await;
}

/// Two gateways on one PostgreSQL database: every expired state is deleted once, by one of
/// them — the delete's conditional start lets one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_gateways_each_expired_state_is_deleted_exactly_once() {
    let shared = std::sync::Arc::new(Shared::new(Db::Postgres, true).await);
    let hosts = [("demo".to_owned(), snapgate_tests::app::demo_host_uri())];
    let a = TestApp::start_with(shared.clone(), FAST_MAINTENANCE, &hosts).await;
    let b = TestApp::start_with(shared.clone(), FAST_MAINTENANCE, &hosts).await;
    unlimited_quota(&a).await;
    let mut paths = Vec::new();
    for instance in [demo::WEB, demo::DB, demo::RAW_DISK] {
        for n in 0..2 {
            let s = a.saved(instance, &format!("expiring {n}"), &a.member).await;
            paths.push(state_path(instance, &s));
        }
    }
    // All due at about the same moment, so both gateways' passes find them.
    for path in &paths {
        let r = a
            .call(
                "PATCH",
                path,
                Some(&a.member),
                Some(json!({"expires_at": in_secs(1)})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    for path in &paths {
        wait_until(&a, path, "every expired state's delete", |status, _| {
            status == 404
        })
        .await;
    }
    let series = "snapgate_states_expired_total{result=\"started\"}";
    let deletes = "snapgate_operations_total{kind=\"delete\",result=\"succeeded\"}";
    assert_eq!(
        a.metric(series).await + b.metric(series).await,
        paths.len() as f64,
        "each expired state's delete was started once in all"
    );
    assert_eq!(
        a.metric(deletes).await + b.metric(deletes).await,
        paths.len() as f64
    );
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
async fn state_update_from_the_cli() {
    let app = TestApp::builder().start().await;
    let s = app.saved(demo::WEB, "cli state", &app.member).await;
    let uuid = s["uuid"].as_str().unwrap().to_owned();
    let expires = in_secs(3600);
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(
            &app,
            &[
                "state-update",
                demo::WEB,
                &uuid,
                "--name",
                "renamed by cli",
                "--description",
                "note",
                "--expires-at",
                &expires,
                "--json",
            ],
        )
    });
    assert_eq!(code, 0, "{out}{err}");
    let updated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &updated["name"],
            &updated["description"],
            &updated["expires_at"]
        ),
        (&json!("renamed by cli"), &json!("note"), &json!(expires))
    );
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(
            &app,
            &[
                "state-update",
                demo::WEB,
                &uuid,
                "--expires-at",
                "never",
                "--clear-description",
            ],
        )
    });
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("expires never"), "{out}");
    let r = app.get(&state_path(demo::WEB, &s), &app.member).await;
    assert_eq!(
        (&r.body["description"], &r.body["expires_at"]),
        (&Value::Null, &Value::Null)
    );
    // A refusal exits non-zero with the gateway's message.
    let (code, _, err) = tokio::task::block_in_place(|| {
        cli(
            &app,
            &[
                "state-update",
                demo::WEB,
                &uuid,
                "--expires-at",
                "2001-01-01T00:00:00Z",
            ],
        )
    });
    assert_eq!(code, 1);
    assert!(err.contains("expires_at must be in the future"), "{err}");
}
