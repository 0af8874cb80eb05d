//! Webhooks (issue 12, point 5) on the real gateway, with a real receiver on loopback
//! (`webhook_receiver.rs`): signatures checked here with HMAC-SHA256 as the Standard Webhooks
//! specification says, retries and disabling, at-least-once delivery across a SIGKILL, one
//! fan-out per event with two gateways on one PostgreSQL, the target allow-list, and the
//! tenant wall.

use std::collections::{HashMap, HashSet};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{json, Value};
use sha2::Sha256;
use snapgate_core::events::{EventKind, NewEvent};
use snapgate_core::ports::EventLog;
use snapgate_store::entity::webhook_deliveries;
use snapgate_store::SeaRepository;
use snapgate_tests::app::{demo, Db, Shared, TestApp};
use snapgate_tests::webhook_receiver::{Received, Receiver, Reply};
use uuid::Uuid;

/// Loopback allowed (the receiver is local), quick polls and retries.
const FAST: &str = "[webhooks]\nallow_loopback = true\npoll_interval_secs = 0.1\nretry_base_secs = 0.05\nretry_max_secs = 0.2\n";

async fn start(db: Db, webhooks: &str) -> TestApp {
    TestApp::builder().db(db).config(webhooks).start().await
}

/// Creates a webhook as the demo tenant's admin; returns it and its secret.
async fn create(app: &TestApp, body: Value) -> (Value, String) {
    let r = app.post("/v1/webhooks", &app.tenant_admin, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    (r.body, secret)
}

fn hook_path(hook: &Value) -> String {
    format!("/v1/webhooks/{}", hook["uuid"].as_str().unwrap())
}

/// Appends events straight to the log, as the gateway's emission does: the gateway's
/// sequencer numbers them and its dispatcher fans them out.
async fn emit(app: &TestApp, events: &[(&str, EventKind)]) -> Vec<Uuid> {
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let new: Vec<NewEvent> = events
        .iter()
        .map(|(tenant, kind)| NewEvent::new(*kind, *tenant, json!({"test": true})))
        .collect();
    repo.append_events(&new).await.unwrap();
    repo.close().await;
    new.iter().map(|e| e.id).collect()
}

/// `v1,<base64>` of HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed with the secret's
/// decoded bytes: the specification's signature, computed independently of the gateway.
fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The receiver's check: one of the space-separated signatures matches.
fn verifies(secret: &str, r: &Received, body: &str) -> bool {
    let expected = expected_signature(secret, r.id(), r.header("webhook-timestamp"), body);
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

/// Reads the webhook until `done` holds (a minute's hang guard).
async fn hook_until(
    app: &TestApp,
    hook: &Value,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = app.get(&hook_path(hook), &app.tenant_admin).await;
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
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn delivered_ids(requests: &[Received]) -> HashSet<String> {
    requests
        .iter()
        .filter(|r| r.reply.is_some_and(|s| (200..300).contains(&s)))
        .map(|r| r.id().to_owned())
        .collect()
}

#[tokio::test]
async fn a_saved_state_arrives_signed_and_a_tampered_body_fails_the_check() {
    let app = start(Db::Sqlite, FAST).await;
    let receiver = Receiver::start().await;
    let (hook, secret) = create(
        &app,
        json!({"url": receiver.url, "events": ["state.saved"], "description": "ci"}),
    )
    .await;
    assert_eq!(hook["enabled"], true);
    assert_eq!(hook["events"], json!(["state.saved"]));
    assert!(secret.starts_with("whsec_"), "{secret}");

    // A kind the webhook does not take, numbered first: passed over.
    emit(&app, &[(demo::TENANT, EventKind::QuotaExceeded)]).await;
    let state = app.saved(demo::WEB, "signed", &app.member).await;
    let got = receiver.wait_for(1).await;
    let r = &got[0];
    let event: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(event["kind"], "state.saved", "{}", r.body);
    assert_eq!(event["tenant"], demo::TENANT);
    assert_eq!(event["state_uuid"], state["uuid"], "{}", r.body);
    assert_eq!(
        r.id(),
        event["id"].as_str().unwrap(),
        "webhook-id is the event's id"
    );
    assert!(r.header("webhook-timestamp").parse::<i64>().is_ok());
    assert_eq!(r.header("content-type"), "application/json");
    assert!(verifies(&secret, r, &r.body), "signature {:?}", r.headers);
    // One byte changed, or another timestamp, and the check fails.
    let tampered = r.body.replacen("state.saved", "state.saveD", 1);
    assert!(!verifies(&secret, r, &tampered));
    let mut late = r.clone();
    late.headers.insert("webhook-timestamp".into(), "1".into());
    assert!(!verifies(&secret, &late, &r.body));

    // The secret is never shown again; the delivery is recorded.
    let detail = hook_until(&app, &hook, "the delivery recorded", |h| {
        h["deliveries"][0]["status"] == "delivered"
    })
    .await;
    assert!(detail.get("secret").is_none(), "{detail}");
    assert_eq!(
        detail["deliveries"].as_array().unwrap().len(),
        1,
        "{detail}"
    );
    assert!(receiver
        .requests()
        .iter()
        .all(|r| r.body.contains("\"state.saved\"")));
    assert_eq!(detail["deliveries"][0]["event_id"], event["id"]);
    assert_eq!(detail["deliveries"][0]["attempts"], 1);
    assert_eq!(detail["deliveries"][0]["last_status_code"], 200);
    let listed = app.get("/v1/webhooks", &app.reader).await;
    assert_eq!(listed.status, 200);
    assert!(listed.body["values"][0].get("secret").is_none());
    assert_eq!(listed.body["values"][0]["uuid"], hook["uuid"]);
}

#[tokio::test]
async fn failures_are_retried_with_every_attempt_recorded() {
    let app = start(Db::Sqlite, FAST).await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::Status(500), Reply::Status(500)]);
    let (hook, secret) = create(&app, json!({"url": receiver.url})).await;
    let ids = emit(&app, &[(demo::TENANT, EventKind::QuotaExceeded)]).await;

    let got = receiver.wait_for(3).await;
    assert_eq!(
        got.iter().map(|r| r.reply).collect::<Vec<_>>(),
        [Some(500), Some(500), Some(200)]
    );
    // The same event each time, signed each time (the timestamp may differ).
    for r in &got {
        assert_eq!(r.id(), ids[0].to_string());
        assert_eq!(r.body, got[0].body);
        assert!(verifies(&secret, r, &r.body));
    }
    // The webhook and its deliveries are two reads: wait for both to show the success.
    let detail = hook_until(&app, &hook, "the delivery to succeed", |h| {
        h["deliveries"][0]["status"] == "delivered" && h["consecutive_failures"] == 0
    })
    .await;
    let d = &detail["deliveries"][0];
    assert_eq!(d["attempts"], 3, "{detail}");
    assert_eq!(d["last_status_code"], 200);
    assert_eq!(d["next_attempt_at"], Value::Null);
    assert_eq!(detail["enabled"], true);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("snapgate_webhook_deliveries_total{outcome=\"retried\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn repeated_failures_disable_the_webhook_with_its_reason() {
    let app = start(Db::Sqlite, &format!("{FAST}disable_after_failures = 3\n")).await;
    let receiver = Receiver::start().await;
    receiver.answer_by_default(503);
    let (hook, _) = create(&app, json!({"url": receiver.url})).await;
    emit(&app, &[(demo::TENANT, EventKind::StateDeleted)]).await;

    let detail = hook_until(&app, &hook, "the webhook disabled", |h| {
        h["enabled"] == false
    })
    .await;
    let reason = detail["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("3 failed attempts in a row"), "{reason}");
    assert!(reason.contains("HTTP 503"), "{reason}");
    assert_eq!(detail["consecutive_failures"], 3);
    let d = &detail["deliveries"][0];
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["status"], "pending");
    assert_eq!(d["last_status_code"], 503);
    // The third failure disabled it: nothing is claimed for a disabled webhook.
    assert_eq!(receiver.requests().len(), 3);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("snapgate_webhooks_disabled_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_delivery_in_flight_when_the_gateway_is_killed_is_sent_again() {
    // Each attempt may take 10 s and is claimed for 11 s: the killed gateway's claim expires,
    // and the restarted gateway sends it again.
    let mut app = start(
        Db::Sqlite,
        &format!("{FAST}timeout_secs = 10\nclaim_secs = 11\n"),
    )
    .await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::Hold]);
    let (hook, _) = create(&app, json!({"url": receiver.url})).await;
    let ids = emit(
        &app,
        &[
            (demo::TENANT, EventKind::StateSaved),
            (demo::TENANT, EventKind::StateApplied),
            (demo::TENANT, EventKind::StateDeleted),
        ],
    )
    .await;

    // In flight: the receiver holds the request it was sent.
    let held = receiver
        .wait_until("a request held", |r| r.iter().any(|r| r.reply.is_none()))
        .await;
    let held_id = held
        .iter()
        .find(|r| r.reply.is_none())
        .unwrap()
        .id()
        .to_owned();
    app.restart().await; // SIGKILL, then a new process on the same database

    let all: HashSet<String> = ids.iter().map(Uuid::to_string).collect();
    let got = receiver
        .wait_until("every event delivered", |r| delivered_ids(r) == all)
        .await;
    let attempts_of_held: Vec<_> = got.iter().filter(|r| r.id() == held_id).collect();
    assert!(attempts_of_held.len() >= 2, "{got:#?}");
    assert_eq!(attempts_of_held[0].reply, None);
    assert_eq!(attempts_of_held.last().unwrap().reply, Some(200));
    let detail = hook_until(&app, &hook, "every delivery recorded", |h| {
        h["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == 3 && d.iter().all(|d| d["status"] == "delivered"))
    })
    .await;
    assert_eq!(detail["enabled"], true);
}

#[tokio::test]
async fn two_gateways_on_postgresql_fan_each_event_out_once() {
    let shared = std::sync::Arc::new(Shared::new(Db::Postgres, false).await);
    let a = TestApp::start_with(shared.clone(), FAST, &[]).await;
    let b = TestApp::start_with(shared.clone(), FAST, &[]).await;
    let receiver = Receiver::start().await;
    let (hook, secret) = create(&a, json!({"url": receiver.url})).await;

    let mut ids = Vec::new();
    for round in 0..10 {
        let app = if round % 2 == 0 { &a } else { &b };
        let batch: Vec<(&str, EventKind)> = (0..6)
            .map(|i| (demo::TENANT, EventKind::ALL[i % EventKind::ALL.len()]))
            .collect();
        ids.extend(emit(app, &batch).await);
    }
    let all: HashSet<String> = ids.iter().map(Uuid::to_string).collect();
    let got = receiver
        .wait_until("every event delivered", |r| delivered_ids(r) == all)
        .await;
    // Each event once: claims last 60 s, far longer than any attempt here.
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        *per_id.entry(r.id()).or_default() += 1;
        assert!(verifies(&secret, r, &r.body));
    }
    assert!(per_id.values().all(|n| *n == 1), "{per_id:?}");
    // And one delivery row per event: the fan-out made each once.
    let repo = SeaRepository::connect(&shared.db_url).await.unwrap();
    let rows = webhook_deliveries::Entity::find()
        .filter(
            webhook_deliveries::Column::WebhookUuid.eq(hook["uuid"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap()),
        )
        .count(repo.connection())
        .await
        .unwrap();
    assert_eq!(rows, ids.len() as u64);
    repo.close().await;
    // Every attempt recorded once, by whichever gateway made it (read until both have
    // counted: a counter moves just after its attempt's record commits).
    let delivered = "snapgate_webhook_deliveries_total{outcome=\"delivered\"}";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (on_a, on_b) = (a.metric(delivered).await, b.metric(delivered).await);
        if on_a + on_b == ids.len() as f64 {
            break;
        }
        assert!(
            on_a + on_b < ids.len() as f64 && tokio::time::Instant::now() < deadline,
            "{on_a} + {on_b} deliveries counted for {} events",
            ids.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn targets_outside_the_allow_list_are_refused_at_creation() {
    // The default configuration: public addresses only.
    let app = TestApp::builder().start().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:8080/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://2130706433/hook",
        "http://10.0.0.1/hook",
        "http://192.168.1.10/hook",
        "http://100.64.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
        "http://0.0.0.0/hook",
    ] {
        let r = app
            .post("/v1/webhooks", &app.tenant_admin, json!({"url": url}))
            .await;
        assert_eq!(r.status, 422, "{url}: {}", r.text);
        assert_eq!(r.code(), "webhook_target_refused", "{url}");
    }
    for url in [
        "ftp://example.com/",
        "http://user:pw@example.com/",
        "/relative",
    ] {
        let r = app
            .post("/v1/webhooks", &app.tenant_admin, json!({"url": url}))
            .await;
        assert_eq!(r.status, 400, "{url}: {}", r.text);
        assert_eq!(r.code(), "invalid_webhook_url", "{url}");
    }
    let r = app
        .post(
            "/v1/webhooks",
            &app.tenant_admin,
            json!({"url": "http://no-such-host.invalid/"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.code(), "webhook_target_unresolvable");
    let r = app
        .post(
            "/v1/webhooks",
            &app.tenant_admin,
            json!({"url": "http://example.com/", "events": ["state.nope"]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // A member may not create one.
    let r = app
        .post(
            "/v1/webhooks",
            &app.member,
            json!({"url": "http://127.0.0.1/"}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let listed = app.get("/v1/webhooks", &app.tenant_admin).await;
    assert_eq!(listed.body["values"], json!([]));
}

#[tokio::test]
async fn tenants_are_walls_for_webhooks_and_their_events() {
    let app = start(Db::Sqlite, &format!("{FAST}max_per_tenant = 1\n")).await;
    let receiver = Receiver::start().await;
    let (hook, _) = create(&app, json!({"url": receiver.url})).await;
    let path = hook_path(&hook);

    // Another tenant: 404 exactly like a webhook that does not exist, and never listed.
    let theirs = app.get(&path, &app.other_reader).await;
    let missing = app
        .get(
            &format!("/v1/webhooks/{}", Uuid::new_v4()),
            &app.other_reader,
        )
        .await;
    assert_eq!(theirs.status, 404);
    assert_eq!(theirs.code(), "webhook_not_found");
    assert_eq!(theirs.text, missing.text);
    assert_eq!(app.delete(&path, &app.other_member).await.status, 404);
    let listed = app.get("/v1/webhooks", &app.other_reader).await;
    assert_eq!(listed.body["values"], json!([]), "{}", listed.text);
    let named = app
        .get(
            &format!("/v1/webhooks?tenant={}", demo::TENANT),
            &app.other_reader,
        )
        .await;
    assert_eq!(named.status, 404, "{}", named.text);
    // The operator sees it when naming the tenant, and every tenant's without.
    for path in [
        format!("/v1/webhooks?tenant={}", demo::TENANT),
        "/v1/webhooks".into(),
    ] {
        let r = app.get(&path, &app.admin).await;
        assert_eq!(r.body["values"][0]["uuid"], hook["uuid"], "{}", r.text);
    }
    // The tenant's limit.
    let r = app
        .post(
            "/v1/webhooks",
            &app.tenant_admin,
            json!({"url": receiver.url}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.code(), "webhook_limit_exceeded");

    // Only the tenant's own events: the other tenant's, numbered first, never becomes one
    // of its deliveries (the fan-out reads the log in order).
    let ids = emit(
        &app,
        &[
            (demo::NOVA_TENANT, EventKind::StateSaved),
            (demo::TENANT, EventKind::StateSaved),
        ],
    )
    .await;
    receiver.wait_for(1).await;
    let detail = hook_until(&app, &hook, "the delivery recorded", |h| {
        h["deliveries"][0]["status"] == "delivered"
    })
    .await;
    let delivered: Vec<&str> = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(delivered, [ids[1].to_string().as_str()]);
    assert!(receiver
        .requests()
        .iter()
        .all(|r| r.id() == ids[1].to_string()));

    // Deleted: gone for its tenant too.
    assert_eq!(app.delete(&path, &app.tenant_admin).await.status, 204);
    assert_eq!(app.get(&path, &app.tenant_admin).await.status, 404);
}

/// `snapgate webhook …` as the tenant's admin; (exit code, stdout, stderr).
fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(snapgate_tests::app::snapgate_bin())
        .args(args)
        .env("SNAPGATE_URL", &app.url)
        .env("SNAPGATE_TOKEN", &app.tenant_admin)
        .env_remove("SNAPGATE_OUTPUT")
        .output()
        .expect("run snapgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_shows_and_deletes_webhooks() {
    let app = start(Db::Sqlite, FAST).await;
    let receiver = Receiver::start().await;
    let run = |args: &[&str]| tokio::task::block_in_place(|| cli(&app, args));

    let (code, out, err) = run(&[
        "webhook",
        "create",
        &receiver.url,
        "--event",
        "state.saved",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["uuid"].as_str().unwrap().to_owned();

    let (code, out, _) = run(&["webhook", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("state.saved"), "{out}");
    let (code, out, _) = run(&["webhook", "show", &id, "--output", "json"]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["url"], receiver.url.as_str());
    assert!(shown.get("secret").is_none(), "{out}");
    assert_eq!(shown["deliveries"], json!([]));

    let (code, _, err) = run(&["webhook", "create", "http://10.1.2.3/hook"]);
    assert_eq!(code, 1);
    assert!(err.contains("webhook_target_refused"), "{err}");
    assert!(err.contains("hint: "), "{err}");

    let (code, out, _) = run(&["webhook", "delete", &id]);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = run(&["webhook", "show", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("webhook_not_found"), "{err}");
}
