//! The states API end to end: the real gateway over SQLite and PostgreSQL, libvirt's test
//! driver, every endpoint, the one-operation-per-instance rule, error shapes and pagination.

use serde_json::{json, Value};
use snapgate_tests::app::{demo, Db, TestApp};

/// Runs an async test body once per database backend.
macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Db::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Db::Postgres).await } )* }
    };
}

both_databases!(
    save_get_list_apply_delete,
    errors_have_stable_codes_and_statuses,
    pagination_newest_first,
    unknown_things_are_404
);

fn states_path(instance: &str) -> String {
    format!("/v1/instances/{instance}/states")
}

async fn save_get_list_apply_delete(db: Db) {
    let app = TestApp::builder().db(db).start().await;
    let t = &app.member;

    // Save: 202, Location, status saving, an operation.
    let r = app
        .post(
            &states_path(demo::WEB),
            t,
            json!({ "name": "before upgrade", "description": "kernel 6.1" }),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let state_id = r.body["uuid"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location").unwrap(),
        format!("/v1/instances/{}/states/{state_id}", demo::WEB)
    );
    assert_eq!(r.body["status"], "saving");
    assert_eq!(r.body["name"], "before upgrade");
    let op_id = r.body["operation"].as_str().unwrap().to_owned();

    // The operation ends; wait returns it.
    let op = app.wait(&op_id, t).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert_eq!(op["kind"], "save");
    assert_eq!(op["state_uuid"], state_id.as_str());
    assert_eq!(op["instance_uuid"], demo::WEB);
    for k in ["created_at", "started_at", "finished_at"] {
        assert!(op[k].is_string(), "{k} in {op}");
    }
    // The test driver's save runs no libvirt job to sample: no progress at all, not a made-up
    // one (docs/API.md, "Progress and cancel").
    assert!(op["progress"].is_null(), "{op}");

    // Get: the seed's fields plus ours.
    let s = app
        .get(&format!("{}/{state_id}", states_path(demo::WEB)), t)
        .await;
    assert_eq!(s.status, 200);
    let s = s.body;
    assert_eq!(s["uuid"], state_id.as_str());
    assert_eq!(s["status"], "available");
    assert_eq!(s["description"], "kernel 6.1");
    assert_eq!(s["includes_memory"], true);
    // No mode given: a live external save, the kind that pauses the guest the least.
    assert_eq!(s["snapshot_kind"], "external");
    assert_eq!(s["host"], "demo");
    assert_eq!(s["disk_formats"], json!(["qcow2"]));
    assert_eq!(s["memory_bytes"], json!(512i64 << 20));
    assert!(s["size_bytes"].as_i64().unwrap() >= 512i64 << 20, "{s}");
    assert_eq!(s["cpu"]["model"], "Haswell");
    assert!(chrono::DateTime::parse_from_rfc3339(s["date"].as_str().unwrap()).is_ok());
    assert!(
        s["date"].as_str().unwrap().ends_with('Z')
            || s["date"].as_str().unwrap().ends_with("+00:00")
    );
    assert!(s.get("tenant_id").is_none(), "tenant ids are not exposed");

    // A second state has the first as parent (the instance was at it).
    let second = app.saved(demo::WEB, "after upgrade", t).await;
    assert_eq!(second["parent"], state_id.as_str());

    // List: newest first.
    let l = app.get(&states_path(demo::WEB), &app.reader).await;
    assert_eq!(l.status, 200);
    let names: Vec<&str> = l.body["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["after upgrade", "before upgrade"]);

    // Apply: 202 with the operation, then the state is available again.
    let a = app
        .post(
            &format!("{}/apply", states_path(demo::WEB)),
            t,
            json!({ "uuid": state_id }),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["kind"], "apply");
    assert_eq!(
        a.header("location").unwrap(),
        format!("/v1/operations/{}", a.body["uuid"].as_str().unwrap())
    );
    let op = app.wait(a.body["uuid"].as_str().unwrap(), t).await;
    assert_eq!(op["status"], "succeeded", "{op}");

    // Delete: 202, then gone.
    let d = app
        .delete(&format!("{}/{state_id}", states_path(demo::WEB)), t)
        .await;
    assert_eq!(d.status, 202, "{}", d.body);
    assert_eq!(d.body["kind"], "delete");
    let op = app.wait(d.body["uuid"].as_str().unwrap(), t).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let g = app
        .get(&format!("{}/{state_id}", states_path(demo::WEB)), t)
        .await;
    assert_eq!(g.status, 404);
    assert_eq!(g.code(), "state_not_found");
    // Finished operations stay readable.
    assert_eq!(
        app.get(
            &format!("/v1/operations/{}", d.body["uuid"].as_str().unwrap()),
            t
        )
        .await
        .status,
        200
    );
}

async fn errors_have_stable_codes_and_statuses(db: Db) {
    let app = TestApp::builder().db(db).start().await;
    let t = &app.member;
    let path = states_path(demo::WEB);

    // A typo in a field name is named, not ignored.
    let r = app
        .post(&path, t, json!({ "name": "x", "descripton": "typo" }))
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_body"), "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("descripton"),
        "{}",
        r.body
    );

    // Malformed JSON, wrong type, missing field.
    let r = app
        .http
        .post(format!("{}{path}", app.url))
        .bearer_auth(t)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_json");
    let r = app.post(&path, t, json!({ "name": 5 })).await;
    assert_eq!((r.status, r.code()), (400, "invalid_body"));
    let r = app.post(&path, t, json!({})).await;
    assert_eq!((r.status, r.code()), (400, "invalid_body"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("name"));

    // Not JSON at all: 415. Too large: 413.
    let r = app
        .http
        .post(format!("{}{path}", app.url))
        .bearer_auth(t)
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let (status, body) = oversized_post(&app, &path, t).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("body_too_large"), "{body}");

    // Names: 1–255 printable characters.
    for bad in ["", "   ", "tab\there", &"n".repeat(256)] {
        let r = app.post(&path, t, json!({ "name": bad })).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_name"),
            "{bad:?}: {}",
            r.body
        );
    }
    // Path and XML metacharacters are just text.
    let odd = app
        .saved(demo::WEB, "../../etc/passwd <x/> & 'quotes'", t)
        .await;
    assert_eq!(odd["name"], "../../etc/passwd <x/> & 'quotes'");
    let r = app.post(&path, t, json!({ "name": "n".repeat(255) })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    app.wait(r.body["operation"].as_str().unwrap(), t).await;

    // Duplicate names are refused at once.
    let r = app
        .post(
            &path,
            t,
            json!({ "name": "../../etc/passwd <x/> & 'quotes'" }),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "duplicate_name"), "{}", r.body);

    // Instances that cannot get a memory snapshot are refused before any work.
    let r = app
        .post(&states_path(demo::STOPPED), t, json!({ "name": "x" }))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "instance_not_running"),
        "{}",
        r.body
    );
    let r = app
        .post(
            &states_path(demo::RAW_DISK),
            t,
            json!({ "name": "x", "mode": "internal" }),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "unsupported_disk_format"),
        "{}",
        r.body
    );
    assert!(
        r.body["error"]["message"].as_str().unwrap().contains("vda"),
        "{}",
        r.body
    );
    let r = app
        .post(&states_path(demo::GPU), t, json!({ "name": "x" }))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "host_devices_attached"),
        "{}",
        r.body
    );
    let listed = app.get(&states_path(demo::RAW_DISK), t).await;
    assert_eq!(listed.body["values"], json!([]), "nothing left behind");

    // Bad query parameters and path segments.
    let r = app.get(&format!("{path}?limit=0"), t).await;
    assert_eq!((r.status, r.code()), (400, "invalid_parameter"));
    let r = app.get(&format!("{path}?limit=abc"), t).await;
    assert_eq!((r.status, r.code()), (400, "invalid_parameter"));
    let r = app
        .get(&format!("{path}?marker={}", uuid::Uuid::new_v4()), t)
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_marker"));
    let r = app.get("/v1/instances/not-a-uuid/states", t).await;
    assert_eq!((r.status, r.code()), (400, "invalid_path"));
    let r = app.get("/v1/nothing-here", t).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = app.call("PATCH", &path, Some(t), None).await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));

    // Every error has the same shape.
    assert!(r.body["error"]["message"].is_string());
}

async fn pagination_newest_first(db: Db) {
    let app = TestApp::builder().db(db).start().await;
    let t = &app.member;
    for i in 0..7 {
        app.saved(demo::DB, &format!("s{i}"), t).await;
    }
    let mut seen = Vec::new();
    let mut next = Some(format!("{}?limit=3", states_path(demo::DB)));
    let mut pages = 0;
    while let Some(path) = next {
        let r = app.get(&path, t).await;
        assert_eq!(r.status, 200, "{}", r.body);
        pages += 1;
        for v in r.body["values"].as_array().unwrap() {
            seen.push(v["name"].as_str().unwrap().to_owned());
        }
        next = r.body["states_links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "next")
            .map(|l| l["href"].as_str().unwrap().to_owned());
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["s6", "s5", "s4", "s3", "s2", "s1", "s0"]);
    // Default page holds all seven; the maximum caps large limits.
    let r = app
        .get(&format!("{}?limit=100000", states_path(demo::DB)), t)
        .await;
    assert_eq!(r.body["values"].as_array().unwrap().len(), 7);
}

async fn unknown_things_are_404(db: Db) {
    let app = TestApp::builder().db(db).start().await;
    let t = &app.member;
    let ghost = uuid::Uuid::new_v4();
    let s = uuid::Uuid::new_v4();
    for (method, path, body) in [
        ("GET", format!("/v1/instances/{ghost}/states"), None),
        (
            "POST",
            format!("/v1/instances/{ghost}/states"),
            Some(json!({ "name": "x" })),
        ),
        ("GET", format!("/v1/instances/{ghost}/states/{s}"), None),
        ("DELETE", format!("/v1/instances/{ghost}/states/{s}"), None),
        (
            "POST",
            format!("/v1/instances/{ghost}/states/apply"),
            Some(json!({ "uuid": s })),
        ),
    ] {
        let r = app.call(method, &path, Some(t), body).await;
        assert_eq!(
            (r.status, r.code()),
            (404, "instance_not_found"),
            "{method} {path}: {}",
            r.body
        );
    }
    for (method, path, body) in [
        (
            "GET",
            format!("/v1/instances/{}/states/{s}", demo::WEB),
            None,
        ),
        (
            "DELETE",
            format!("/v1/instances/{}/states/{s}", demo::WEB),
            None,
        ),
        (
            "POST",
            format!("/v1/instances/{}/states/apply", demo::WEB),
            Some(json!({ "uuid": s })),
        ),
    ] {
        let r = app.call(method, &path, Some(t), body).await;
        assert_eq!(
            (r.status, r.code()),
            (404, "state_not_found"),
            "{method} {path}: {}",
            r.body
        );
    }
    let r = app.get(&format!("/v1/operations/{s}"), t).await;
    assert_eq!((r.status, r.code()), (404, "operation_not_found"));
    let r = app
        .get(&format!("/v1/operations/{s}/wait?timeout=1"), t)
        .await;
    assert_eq!((r.status, r.code()), (404, "operation_not_found"));
}

/// Posts a body larger than the limit over a raw connection, sending only part of it (more
/// than the limit) before reading the answer: the gateway must answer 413 without waiting for
/// the rest. (A client that keeps writing after the answer sees the connection close, which
/// would make this test flaky with an ordinary HTTP client.)
async fn oversized_post(app: &TestApp, path: &str, token: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let declared = 200_000;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut sent = String::from("{\"name\": \"x\", \"description\": \"");
    sent.push_str(&"d".repeat(70_000));
    let _ = stream.write_all(sent.as_bytes()).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "no answer to an oversized body");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_show_what_they_hold_and_are_compared_in_nfc() {
    let app = TestApp::builder().start().await;
    for name in [
        "\u{200B}", // zero-width only
        "\u{200B}\u{200D}\u{2060}",
        "backup\u{202E}exe.pdf", // bidi override
        "a\u{2066}b\u{2069}",    // bidi isolate
        "\u{FEFF}bom",
        "\u{3000}", // an ideographic space (whitespace at both ends)
        " padded",
        "padded ",
    ] {
        let r = app.save(demo::WEB, name, &app.member).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_name"),
            "{name:?}: {}",
            r.body
        );
    }
    let r = app
        .post(
            &format!("/v1/instances/{}/states", demo::WEB),
            &app.member,
            json!({"name": "fine", "description": "hidden\u{202E}text"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_description"),
        "{}",
        r.body
    );

    // "café" composed, then decomposed: the same name.
    let first = app.saved(demo::WEB, "caf\u{00E9}", &app.member).await;
    assert_eq!(first["name"], "caf\u{00E9}");
    let r = app.save(demo::WEB, "cafe\u{0301}", &app.member).await;
    assert_eq!((r.status, r.code()), (409, "duplicate_name"), "{}", r.body);
    // Decomposed first on another instance: stored composed.
    let other = app.saved(demo::DB, "cafe\u{0301}", &app.member).await;
    assert_eq!(other["name"], "caf\u{00E9}");
}

/// With no mode, a save is a live external one (the guest pauses the least), except on an
/// instance that keeps internal states: libvirt does not mix the kinds on one domain, so the
/// default follows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_mode_is_external_unless_the_instance_keeps_internal_states() {
    let app = TestApp::builder().start().await;
    let t = &app.member;
    let fresh = app.saved(demo::DB, "no mode, no states", t).await;
    assert_eq!(fresh["snapshot_kind"], "external", "{fresh}");

    let internal = app
        .saved_in_mode(demo::WEB, "made internal", "internal", t)
        .await;
    assert_eq!(internal["snapshot_kind"], "internal", "{internal}");
    let follows = app
        .saved(demo::WEB, "no mode after an internal one", t)
        .await;
    assert_eq!(follows["snapshot_kind"], "internal", "{follows}");
}
