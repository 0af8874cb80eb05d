//! The listings a client needs to show a tenant or an operator their world without knowing
//! uuids first (`/v1/me`, `/v1/instances`, `/v1/tenants`, `/v1/hosts`, `/v1/operations`), each
//! through the tenant wall: nothing of another tenant is listed.

use serde_json::{json, Value};
use snapgate_store::SeaRepository;
use snapgate_tests::app::demo_inventory_read;
use snapgate_tests::app::{demo, TestApp};
use snapgate_tests::foreign::{end_foreign_save, foreign_running_save};

/// The demo cloud's instances of tenant `demo` (every one but the Nova project's).
const DEMO_INSTANCES: [&str; 5] = [
    demo::WEB,
    demo::DB,
    demo::RAW_DISK,
    demo::GPU,
    demo::STOPPED,
];

fn uuids(listing: &Value) -> Vec<String> {
    listing["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["uuid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_names_the_caller_its_tenant_roles_and_scope() {
    let app = TestApp::builder().start().await;
    let r = app.get("/v1/me", &app.member).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["tenant_id"], demo::TENANT);
    assert_eq!(r.body["role"], "member");
    assert_eq!(r.body["roles"], json!(["member", "reader"]));
    assert_eq!(r.body["operator"], false);
    let r = app.get("/v1/me", &app.tenant_admin).await;
    assert_eq!(
        (r.body["role"].as_str(), r.body["operator"].as_bool()),
        (Some("admin"), Some(false))
    );
    let r = app.get("/v1/me", &app.admin).await;
    assert_eq!(r.body["operator"], true);
    let r = app.call("GET", "/v1/me", None, None).await;
    assert_eq!((r.status, r.code()), (401, "unauthenticated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_listed_within_the_tenant_wall_a_page_at_a_time() {
    let app = TestApp::builder().start().await;
    demo_inventory_read(&app).await;

    // A member lists its tenant's instances, by uuid, described on their host.
    let r = app.get("/v1/instances", &app.member).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut expected: Vec<String> = DEMO_INSTANCES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(uuids(&r.body), expected);
    let web = &r.body["values"][0];
    assert_eq!(web["uuid"], demo::WEB);
    assert_eq!(web["name"], "demo-web");
    assert_eq!(web["owner"], demo::TENANT);
    assert_eq!(web["owner_source"], "metadata");
    assert_eq!(web["host"], "demo");
    assert_eq!(
        (web["reachable"].as_bool(), web["running"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(web["vcpus"].as_u64().unwrap() >= 1 && web["memory_bytes"].as_i64().unwrap() > 0);
    assert_eq!(r.body["instances_links"], json!([]));

    // The other tenant sees only its own; the operator sees both tenants'.
    let r = app.get("/v1/instances", &app.other_reader).await;
    assert_eq!(uuids(&r.body), vec![demo::NOVA_APP.to_owned()]);
    let r = app.get("/v1/instances", &app.admin).await;
    assert!(uuids(&r.body).contains(&demo::NOVA_APP.to_owned()));

    // Pages of two, following the next links, give the whole listing once.
    let mut seen = Vec::new();
    let mut path = "/v1/instances?limit=2".to_owned();
    loop {
        let r = app.get(&path, &app.member).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.body["values"].as_array().unwrap().len() <= 2);
        seen.extend(uuids(&r.body));
        match r.body["instances_links"][0]["href"].as_str() {
            Some(next) => path = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    // Another tenant's instance is no marker: refused like an unknown uuid.
    let r = app
        .get(
            &format!("/v1/instances?marker={}", demo::NOVA_APP),
            &app.member,
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_marker"), "{}", r.text);
    let r = app.get("/v1/instances?limit=0", &app.member).await;
    assert_eq!((r.status, r.code()), (400, "invalid_parameter"));

    // An operator's owner assignment moves the instance between the tenants' listings.
    let r = app
        .call(
            "PUT",
            &format!("/v1/instances/{}/owner", demo::STOPPED),
            Some(&app.admin),
            Some(json!({"tenant_id": demo::NOVA_TENANT})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app.get("/v1/instances", &app.member).await;
    assert!(!uuids(&r.body).contains(&demo::STOPPED.to_owned()));
    let r = app.get("/v1/instances", &app.other_member).await;
    let stopped = r.body["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["uuid"] == demo::STOPPED)
        .expect("the new owner lists it")
        .clone();
    assert_eq!(stopped["owner_source"], "assigned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_listed_with_their_quotas_to_the_operator_and_only_its_own_to_a_tenant() {
    let app = TestApp::builder().start().await;
    demo_inventory_read(&app).await;
    let r = app
        .call(
            "PUT",
            "/v1/quotas/limited-tenant",
            Some(&app.admin),
            Some(json!({"states": 3, "state_bytes": -1, "concurrent_operations": 2, "saves_per_hour": 10})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.saved(demo::WEB, "counted", &app.member).await;

    let r = app.get("/v1/tenants", &app.admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tenants: Vec<&str> = r.body["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant_id"].as_str().unwrap())
        .collect();
    // Sorted: limits of its own, kept states, owned instances.
    assert_eq!(
        tenants,
        vec![demo::NOVA_TENANT, demo::TENANT, "limited-tenant"]
    );
    let limited = &r.body["values"][2];
    assert_eq!(limited["custom"], true);
    assert_eq!(limited["usage"]["states"]["limit"], 3);
    let own = &r.body["values"][1];
    assert_eq!(own["usage"]["states"]["in_use"], 1);

    // A tenant's caller, whatever its role, lists its own tenant only.
    for token in [&app.member, &app.reader, &app.tenant_admin] {
        let r = app.get("/v1/tenants", token).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["values"].as_array().unwrap().len(), 1, "{}", r.text);
        assert_eq!(r.body["values"][0]["tenant_id"], demo::TENANT);
    }
    let r = app.get("/v1/tenants", &app.other_reader).await;
    assert_eq!(r.body["values"][0]["tenant_id"], demo::NOVA_TENANT);
    assert_eq!(r.body["values"][0]["usage"]["states"]["in_use"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_and_their_health_are_the_operators_only() {
    let app = TestApp::builder().start().await;
    demo_inventory_read(&app).await;
    let r = app.get("/v1/hosts", &app.admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["values"],
        json!([{"name": "demo", "up": true, "breaker": "closed", "connected": true, "instances": 6}])
    );
    for token in [&app.member, &app.tenant_admin, &app.other_reader] {
        let r = app.get("/v1/hosts", token).await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_in_flight_are_listed_within_the_tenant_wall() {
    let app = TestApp::builder().start().await;
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    // A finished operation is not in flight.
    app.saved(demo::DB, "done", &app.member).await;
    let r = app.get("/v1/operations", &app.member).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (200, json!({"values": []})),
        "{}",
        r.text
    );

    let running = foreign_running_save(&repo, demo::WEB).await;
    let op = running.1.uuid.to_string();
    let r = app.get("/v1/operations", &app.reader).await;
    assert_eq!(uuids(&r.body), vec![op.clone()]);
    assert_eq!(r.body["values"][0]["status"], "running");
    assert_eq!(r.body["values"][0]["kind"], "save");
    assert_eq!(r.body["values"][0]["tenant_id"], demo::TENANT);
    // Another tenant sees nothing of it; the operator does.
    let r = app.get("/v1/operations", &app.other_member).await;
    assert_eq!(r.body, json!({"values": []}));
    let r = app.get("/v1/operations", &app.admin).await;
    assert_eq!(uuids(&r.body), vec![op.clone()]);

    end_foreign_save(&repo, running).await;
    let r = app.get("/v1/operations", &app.admin).await;
    assert_eq!(r.body, json!({"values": []}));
}
