//! Idempotent retries over the real binary: `Idempotency-Key` on save, apply and delete. A
//! retry gets the first answer back from another gateway on the same PostgreSQL; the key with
//! another request is a 422; keys are each tenant's own; duplicates racing make one state;
//! refusals leave the key free; keys expire and are purged by the maintenance loop.

use std::sync::Arc;

use futures::future::join_all;
use serde_json::{json, Value};
use snapgate_tests::app::{demo, Db, Resp, Shared, TestApp};

fn states_path(instance: &str) -> String {
    format!("/v1/instances/{instance}/states")
}

fn fresh_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn save(app: &TestApp, token: &str, key: &str, instance: &str, name: &str) -> Resp {
    app.call_with_headers(
        "POST",
        &states_path(instance),
        token,
        &[("Idempotency-Key", key.as_bytes())],
        Some(json!({ "name": name })),
    )
    .await
}

async fn apply(app: &TestApp, token: &str, key: &str, instance: &str, state: &str) -> Resp {
    app.call_with_headers(
        "POST",
        &format!("{}/apply", states_path(instance)),
        token,
        &[("Idempotency-Key", key.as_bytes())],
        Some(json!({ "uuid": state })),
    )
    .await
}

async fn delete(app: &TestApp, token: &str, key: &str, instance: &str, state: &str) -> Resp {
    app.call_with_headers(
        "DELETE",
        &format!("{}/{state}", states_path(instance)),
        token,
        &[("Idempotency-Key", key.as_bytes())],
        None,
    )
    .await
}

/// The states of an instance named `name`.
async fn named(app: &TestApp, instance: &str, name: &str) -> Vec<Value> {
    let r = app
        .get(&format!("{}?limit=500", states_path(instance)), &app.member)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == name)
        .cloned()
        .collect()
}

fn assert_replay(first: &Resp, again: &Resp) {
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(again.body, first.body, "the first answer, as it was");
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.header("idempotent-replayed"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_gets_the_first_answer_from_another_gateway() {
    let shared = Arc::new(Shared::new(Db::Postgres, false).await);
    let a = TestApp::start_with(shared.clone(), "", &[]).await;
    let b = TestApp::start_with(shared.clone(), "", &[]).await;
    // Each gateway has its own token file; a's and b's member tokens name the same caller
    // (tenant `demo`, subject `demo:member`), as one user's token would on every gateway.

    // Save: the retry on the other gateway is the first 202, not a 409 duplicate_name.
    let key = fresh_key();
    let first = save(&a, &a.member, &key, demo::WEB, "retried save").await;
    assert_eq!(first.status, 202, "{}", first.text);
    let again = save(&b, &b.member, &key, demo::WEB, "retried save").await;
    assert_replay(&first, &again);
    let op = first.body["operation"].as_str().unwrap();
    a.wait(op, &a.member).await;
    // After the work ended, still the first answer (the state as it was accepted).
    let later = save(&b, &b.member, &key, demo::WEB, "retried save").await;
    assert_replay(&first, &later);
    assert_eq!(later.body["status"], "saving");
    assert_eq!(named(&a, demo::WEB, "retried save").await.len(), 1);
    let state = first.body["uuid"].as_str().unwrap().to_owned();

    // The same request once validated: a name in another normalisation form is the same name.
    let key = fresh_key();
    let decomposed = save(&a, &a.member, &key, demo::DB, "cafe\u{301}").await;
    assert_eq!(decomposed.status, 202, "{}", decomposed.text);
    let composed = save(&b, &b.member, &key, demo::DB, "caf\u{e9}").await;
    assert_replay(&decomposed, &composed);
    a.wait(decomposed.body["operation"].as_str().unwrap(), &a.member)
        .await;

    // Apply: the retry does not apply a second time.
    let key = fresh_key();
    let first = apply(&a, &a.member, &key, demo::WEB, &state).await;
    assert_eq!(first.status, 202, "{}", first.text);
    a.wait(first.body["uuid"].as_str().unwrap(), &a.member)
        .await;
    let again = apply(&b, &b.member, &key, demo::WEB, &state).await;
    assert_replay(&first, &again);

    // Delete: the retry after the state is gone is the first 202, not a 404.
    let key = fresh_key();
    let first = delete(&a, &a.member, &key, demo::WEB, &state).await;
    assert_eq!(first.status, 202, "{}", first.text);
    a.wait(first.body["uuid"].as_str().unwrap(), &a.member)
        .await;
    let again = delete(&b, &b.member, &key, demo::WEB, &state).await;
    assert_replay(&first, &again);
    assert!(named(&a, demo::WEB, "retried save").await.is_empty());

    // The key with another request: another body, another target, another operation.
    for other in [
        save(&b, &b.member, &key, demo::WEB, "another name").await,
        save(&b, &b.member, &key, demo::DB, "retried save").await,
        apply(&b, &b.member, &key, demo::WEB, &state).await,
    ] {
        assert_eq!(
            (other.status, other.code()),
            (422, "idempotency_key_reused"),
            "{}",
            other.text
        );
    }
}

/// Refused with one key, then the same request with a fresh key: what the two answers must
/// share for the key to tell nothing.
fn same_refusal(with_key: &Resp, fresh: &Resp) {
    assert_eq!(
        (
            with_key.status,
            with_key.code(),
            &with_key.body["error"]["message"]
        ),
        (fresh.status, fresh.code(), &fresh.body["error"]["message"]),
        "{} / {}",
        with_key.text,
        fresh.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_its_tenants_own_and_its_callers() {
    let app = TestApp::builder().start().await;
    let key = fresh_key();
    let demo_save = save(&app, &app.member, &key, demo::WEB, "the same key").await;
    assert_eq!(demo_save.status, 202, "{}", demo_save.text);

    // Another tenant learns nothing from the key: demo's very request, sent by Nova with
    // demo's key, answers what it answers with a key never used anywhere.
    let with_key = save(&app, &app.other_member, &key, demo::WEB, "the same key").await;
    let fresh = save(
        &app,
        &app.other_member,
        &fresh_key(),
        demo::WEB,
        "the same key",
    )
    .await;
    assert_eq!(with_key.status, 404, "{}", with_key.text);
    same_refusal(&with_key, &fresh);
    // ... and gets its own, independent answer with it.
    let nova_save = save(
        &app,
        &app.other_member,
        &key,
        demo::NOVA_APP,
        "the same key",
    )
    .await;
    assert_eq!(nova_save.status, 202, "{}", nova_save.text);
    assert_ne!(nova_save.body["uuid"], demo_save.body["uuid"]);
    assert_eq!(nova_save.header("idempotent-replayed"), None);
    let replayed = save(
        &app,
        &app.other_member,
        &key,
        demo::NOVA_APP,
        "the same key",
    )
    .await;
    assert_eq!(replayed.body, nova_save.body);
    // Each tenant's key still answers its own request.
    let replayed = save(&app, &app.member, &key, demo::WEB, "the same key").await;
    assert_eq!(replayed.body, demo_save.body);

    // Another caller of the same tenant does not get the member's answer either.
    let r = save(&app, &app.tenant_admin, &key, demo::WEB, "the same key").await;
    assert_eq!(
        (r.status, r.code()),
        (422, "idempotency_key_reused"),
        "{}",
        r.text
    );
    assert_eq!(named(&app, demo::WEB, "the same key").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_racing_on_two_gateways_make_one_state() {
    let shared = Arc::new(Shared::new(Db::Postgres, true).await);
    let a = TestApp::start_with(shared.clone(), "", &[]).await;
    let b = TestApp::start_with(shared.clone(), "", &[]).await;
    let key = fresh_key();
    let calls = (0..12).map(|i| {
        let (app, key) = (if i % 2 == 0 { &a } else { &b }, key.clone());
        async move { save(app, &app.member, &key, demo::WEB, "raced").await }
    });
    let answers = join_all(calls).await;
    let mut accepted = Vec::new();
    for r in &answers {
        match (r.status, r.code()) {
            (202, _) => accepted.push(r.body.clone()),
            (409, "idempotency_key_in_use") => {
                assert_eq!(r.header("retry-after"), Some("1"), "{}", r.text)
            }
            _ => panic!("a duplicate answered {}: {}", r.status, r.text),
        }
    }
    assert!(!accepted.is_empty());
    // Those told to come back get the one answer when they do.
    for _ in accepted.len()..answers.len() {
        accepted.push(retry_until_answered(&b, &key).await.body);
    }
    assert!(
        accepted.iter().all(|body| *body == accepted[0]),
        "{accepted:#?}"
    );
    let op = accepted[0]["operation"].as_str().unwrap();
    a.wait(op, &a.member).await;
    assert_eq!(named(&a, demo::WEB, "raced").await.len(), 1);
    // No quota was left reserved by the duplicates.
    let q = a
        .get(&format!("/v1/quotas/{}", demo::TENANT), &a.member)
        .await;
    assert_eq!(q.body["usage"]["states"]["in_use"], 1, "{}", q.text);
    assert_eq!(q.body["usage"]["concurrent_operations"]["reserved"], 0);
}

/// Sends the raced save again until it is answered (bounded: the first request's flow is
/// short).
async fn retry_until_answered(app: &TestApp, key: &str) -> Resp {
    for _ in 0..200 {
        let r = save(app, &app.member, key, demo::WEB, "raced").await;
        if r.status != 409 {
            assert_eq!(r.status, 202, "{}", r.text);
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the key stayed in use");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_leaves_the_key_free_and_dry_runs_ignore_it() {
    let app = TestApp::builder().start().await;
    // Refused, nothing was done: neither the answer nor the request is bound to the key.
    let key = fresh_key();
    let r = save(&app, &app.member, &key, demo::STOPPED, "refused").await;
    assert_eq!(
        (r.status, r.code()),
        (409, "instance_not_running"),
        "{}",
        r.text
    );
    let other = save(&app, &app.member, &key, demo::WEB, "another request").await;
    assert_eq!(other.status, 202, "{}", other.text);
    app.wait(other.body["operation"].as_str().unwrap(), &app.member)
        .await;

    // A transient refusal is not replayed: the retry succeeds once its cause is gone.
    let quota = format!("/v1/quotas/{}", demo::TENANT);
    let full =
        json!({"states": 1, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1});
    let r = app.call("PUT", &quota, Some(&app.admin), Some(full)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let key = fresh_key();
    let refused = save(&app, &app.member, &key, demo::WEB, "over quota").await;
    assert_eq!(
        (refused.status, refused.code()),
        (403, "quota_exceeded"),
        "{}",
        refused.text
    );
    let r = app.call("DELETE", &quota, Some(&app.admin), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let retried = save(&app, &app.member, &key, demo::WEB, "over quota").await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    assert_eq!(retried.header("idempotent-replayed"), None);
    app.wait(retried.body["operation"].as_str().unwrap(), &app.member)
        .await;
    // The accepted answer is the one the key keeps.
    let again = save(&app, &app.member, &key, demo::WEB, "over quota").await;
    assert_replay(&retried, &again);

    // A dry run with a key changes nothing and stores nothing: the real call then runs.
    let key = fresh_key();
    let dry = app
        .call_with_headers(
            "POST",
            &format!("{}?dry_run=true", states_path(demo::WEB)),
            &app.member,
            &[("Idempotency-Key", key.as_bytes())],
            Some(json!({ "name": "after a dry run" })),
        )
        .await;
    assert_eq!(
        (dry.status, &dry.body["allowed"]),
        (200, &json!(true)),
        "{}",
        dry.text
    );
    let real = save(&app, &app.member, &key, demo::WEB, "after a dry run").await;
    assert_eq!(real.status, 202, "{}", real.text);
    assert_eq!(real.header("idempotent-replayed"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_keys_are_refused_before_any_work() {
    let app = TestApp::builder().start().await;
    let bad: Vec<Vec<Vec<u8>>> = vec![
        vec![b"".to_vec()],
        vec![vec![b'k'; 256]],
        vec![b"a b".to_vec()],
        vec!["été".as_bytes().to_vec()],
        vec![vec![0xff]],
        vec![b"one".to_vec(), b"two".to_vec()],
    ];
    for values in &bad {
        let headers: Vec<(&str, &[u8])> = values
            .iter()
            .map(|v| ("Idempotency-Key", v.as_slice()))
            .collect();
        for (method, path, body) in [
            (
                "POST",
                states_path(demo::WEB),
                Some(json!({"name": "never made"})),
            ),
            (
                "DELETE",
                format!("{}/{}", states_path(demo::WEB), uuid::Uuid::new_v4()),
                None,
            ),
        ] {
            let r = app
                .call_with_headers(method, &path, &app.member, &headers, body)
                .await;
            assert_eq!(
                (r.status, r.code()),
                (400, "invalid_idempotency_key"),
                "{values:?} on {method}: {}",
                r.text
            );
        }
    }
    assert!(named(&app, demo::WEB, "never made").await.is_empty());
    // The longest key, printable ASCII of every kind, the draft's quoted form: accepted.
    for key in [
        "k".repeat(255),
        "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".to_owned(),
        "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"".to_owned(),
    ] {
        let r = save(
            &app,
            &app.member,
            &key,
            demo::DB,
            &format!("key {}", key.len()),
        )
        .await;
        assert_eq!(r.status, 202, "{key}: {}", r.text);
        app.wait(r.body["operation"].as_str().unwrap(), &app.member)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_and_the_maintenance_loop_purges_them() {
    let app = TestApp::builder()
        .postgres()
        .config("[snapshots]\nmaintenance_interval_secs = 0.2\n[api]\nidempotency_key_ttl_secs = 1")
        .start()
        .await;
    let key = fresh_key();
    let first = save(&app, &app.member, &key, demo::WEB, "before expiry").await;
    assert_eq!(first.status, 202, "{}", first.text);
    app.wait(first.body["operation"].as_str().unwrap(), &app.member)
        .await;
    app.wait_for_metrics("the expired key's purge", |page| {
        snapgate_tests::app::metric_value(page, "snapgate_idempotency_keys_purged_total") >= 1.0
    })
    .await;
    // Forgotten: the key is free for a new request.
    let second = save(&app, &app.member, &key, demo::WEB, "after expiry").await;
    assert_eq!(second.status, 202, "{}", second.text);
    assert_eq!(second.header("idempotent-replayed"), None);
    assert_ne!(second.body["uuid"], first.body["uuid"]);
}
