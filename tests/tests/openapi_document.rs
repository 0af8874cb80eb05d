//! The OpenAPI document served at `/openapi.json`: valid OpenAPI 3.1 (checked by a real
//! validator), the same routes and methods as the router, one operationId each, security per
//! operation, and every status the shared extractors and the auth layer answer documented.

use std::collections::BTreeSet;

use serde_json::Value;
use snapgate_tests::app::{demo, repo_root, TestApp};

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn document(app: &TestApp) -> Value {
    let r = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// `(method, path template, operation)` for every operation of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                ops.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    ops
}

/// A concrete path for a template: the demo cloud's things, or `bad` for uuid parameters.
fn concrete(template: &str, bad_uuid: bool) -> String {
    let uuid = if bad_uuid { "not-a-uuid" } else { demo::WEB };
    template
        .replace("{instance_uuid}", uuid)
        .replace(
            "{state_uuid}",
            if bad_uuid {
                "not-a-uuid"
            } else {
                "00000000-0000-4000-8000-000000000000"
            },
        )
        .replace(
            "{schedule_uuid}",
            if bad_uuid {
                "not-a-uuid"
            } else {
                "00000000-0000-4000-8000-000000000000"
            },
        )
        .replace(
            "{operation_uuid}",
            if bad_uuid {
                "not-a-uuid"
            } else {
                "00000000-0000-4000-8000-000000000000"
            },
        )
        .replace("{tenant_id}", demo::TENANT)
}

fn documented(op: &Value, status: u16) -> bool {
    op["responses"].get(status.to_string()).is_some()
}

/// The repository's venv (made by `scripts/install-deps.sh`).
fn venv_tool(name: &str) -> std::path::PathBuf {
    let tool = repo_root().join(".venv/bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run scripts/install-deps.sh (it installs tests/fuzz/requirements.txt)",
        tool.display()
    );
    tool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_validates_as_openapi_3_1() {
    let app = TestApp::builder().start().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(venv_tool("openapi-spec-validator"))
        .args(["--schema", "3.1", "--validation-errors", "all"])
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "the OpenAPI document does not validate as 3.1:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_ids_are_unique_and_security_is_declared_per_operation() {
    let app = TestApp::builder().start().await;
    let doc = document(&app).await;
    assert!(
        doc.get("security").is_none(),
        "no document-wide security: each operation says its own"
    );
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(
            !id.is_empty() && ids.insert(id.clone()),
            "{method} {path}: operationId {id:?} missing or not unique"
        );
        let security = &op["security"];
        if path.starts_with("/v1/") {
            assert_eq!(
                security,
                &serde_json::json!([{ "bearer": [] }]),
                "{method} {path} needs a bearer token"
            );
        } else {
            assert!(
                security.is_null(),
                "{method} {path} needs no token: {security}"
            );
            // And indeed answers without one.
            let r = app.call(&method.to_uppercase(), &path, None, None).await;
            assert_eq!(r.status, 200, "{method} {path} without a token: {}", r.text);
        }
    }
}

/// Router ⇄ document: the same paths, and on each path the same methods (the router's are read
/// from the `Allow` header of its 405 answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let app = TestApp::builder().start().await;
    let doc = document(&app).await;
    let documented_paths: BTreeSet<String> =
        doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routed_paths: BTreeSet<String> = snapgate_api::route_paths()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        routed_paths, documented_paths,
        "the router's paths (left) and the document's (right) differ"
    );

    for path in &documented_paths {
        let documented: BTreeSet<String> = doc["paths"][path]
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| METHODS.contains(&m.as_str()))
            .map(|m| m.to_uppercase())
            .collect();
        // TRACE is served nowhere: the answer is the router's 405 with the methods it has.
        let r = app.call("TRACE", &concrete(path, false), None, None).await;
        assert_eq!(
            (r.status, r.code()),
            (405, "method_not_allowed"),
            "TRACE {path}: {}",
            r.text
        );
        let routed: BTreeSet<String> = r
            .header("allow")
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_owned())
            // axum answers HEAD wherever it answers GET.
            .filter(|m| !m.is_empty() && m != "HEAD")
            .collect();
        assert_eq!(routed, documented, "{path}: router (left) vs document");
    }
}

/// What the auth layer, the extractors and the body limit answer is in the document, for every
/// operation they can reach, in the API's error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_of_the_shared_layers_is_documented() {
    let app = TestApp::builder()
        .config("[api]\nmax_body_bytes = 1024")
        .start()
        .await;
    let doc = document(&app).await;
    let mut checked = 0;
    for (method, template, op) in operations(&doc) {
        if !template.starts_with("/v1/") {
            continue;
        }
        let m = method.to_uppercase();
        let path = concrete(&template, false);
        let mut answers = Vec::new();

        // No token, a token nobody issued, a scheme that is not Bearer.
        answers.push(("no token", app.call(&m, &path, None, None).await));
        answers.push((
            "unknown token",
            app.call(&m, &path, Some("t_not-issued"), None).await,
        ));
        let basic = app
            .http
            .request(m.parse().unwrap(), format!("{}{path}", app.url))
            .header("Authorization", "Basic YWRtaW46YWRtaW4=")
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status().as_u16(), 401, "{m} {template} with Basic");
        assert!(documented(&op, 401), "{m} {template}: 401 undocumented");
        for (what, r) in &answers {
            assert_eq!(
                (r.status, r.code()),
                (401, "unauthenticated"),
                "{m} {template}, {what}: {}",
                r.text
            );
            assert!(r.header("www-authenticate").is_some());
        }

        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let uuid_in_path = template.contains("_uuid}");
        if uuid_in_path {
            let r = app
                .call(&m, &concrete(&template, true), Some(&app.admin), None)
                .await;
            assert_eq!(
                (r.status, r.code()),
                (400, "invalid_path"),
                "{m} {template}"
            );
            assert!(documented(&op, 400), "{m} {template}: 400 undocumented");
        }
        if params.iter().any(|p| p["in"] == "query") {
            let r = app
                .call(
                    &m,
                    &format!("{path}?no_such_parameter=1"),
                    Some(&app.admin),
                    None,
                )
                .await;
            assert_eq!(
                (r.status, r.code()),
                (400, "invalid_parameter"),
                "{m} {template}: {}",
                r.text
            );
            assert!(documented(&op, 400), "{m} {template}: 400 undocumented");
        }
        if op.get("requestBody").is_some() {
            let url = format!("{}{path}", app.url);
            let send = |content_type: &'static str, body: Vec<u8>| {
                app.http
                    .request(m.parse().unwrap(), url.clone())
                    .bearer_auth(&app.admin)
                    .header("Content-Type", content_type)
                    .body(body)
                    .send()
            };
            for (what, content_type, body, status) in [
                ("text body", "text/plain", b"{}".to_vec(), 415),
                ("malformed JSON", "application/json", b"{".to_vec(), 400),
                (
                    "a body over the limit",
                    "application/json",
                    vec![b' '; 4096],
                    413,
                ),
            ] {
                let r = send(content_type, body).await.unwrap();
                let got = r.status().as_u16();
                let json: Value = r.json().await.unwrap_or(Value::Null);
                assert_eq!(got, status, "{m} {template}, {what}: {json}");
                assert!(
                    json["error"]["code"].is_string(),
                    "{m} {template}, {what}: not the API's error shape: {json}"
                );
                assert!(
                    documented(&op, status),
                    "{m} {template}: {status} ({what}) undocumented"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} /v1 operations checked");
}

/// Found by the fuzz run with a tenant's admin token: the decision log answers another
/// tenant's name with the tenant wall's 404, which the document must list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_walls_404_on_policy_decisions_is_documented() {
    let app = TestApp::builder().start().await;
    let r = app
        .get(
            "/v1/policy/decisions?tenant=another-tenant",
            &app.tenant_admin,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (404, "tenant_not_found"),
        "{}",
        r.text
    );
    let doc = document(&app).await;
    let op = &doc["paths"]["/v1/policy/decisions"]["get"];
    assert!(documented(op, 404), "{op}");
}
