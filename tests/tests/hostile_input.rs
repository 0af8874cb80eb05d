//! Hostile input: schemathesis generates requests from the gateway's own OpenAPI document
//! (valid ones, invalid ones, unknown methods, missing and wrong tokens, sequences that create
//! and delete things) and fails on any 5xx, any status, body, header or content type the
//! document does not promise, and any refusal of a valid request or acceptance of an invalid
//! one. Settings, seed and the accepted exceptions are in `tests/fuzz/schemathesis.toml`, its
//! one hook (a key of its own per stateful request) in `tests/fuzz/hooks.py`.
//!
//! The gateway runs on loopback over its own PostgreSQL database and Redis key prefix (one per
//! run), on the demo cloud (libvirt's test driver); schemathesis runs in its own directory and
//! is told to use no proxy, so nothing leaves the machine.

use std::process::Stdio;

use snapgate_tests::app::{repo_root, Db, TestApp};

/// The last lines of a long report, for an assertion message.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The number right after `label` in the report (`Selected: 18/18` gives 18).
fn number_after(report: &str, label: &str) -> Option<u32> {
    let rest = &report[report.find(label)? + label.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_find_no_fault() {
    let st = repo_root().join(".venv/bin/st");
    assert!(
        st.exists(),
        "{} is missing: run scripts/install-deps.sh (it installs tests/fuzz/requirements.txt)",
        st.display()
    );
    let mut app = TestApp::builder().postgres().redis().start().await;
    let pid = app.pid().expect("the gateway runs");
    let workdir = tempfile::tempdir().unwrap();

    let out = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(repo_root().join("tests/fuzz/schemathesis.toml"))
        .arg("--no-color")
        .arg("run")
        .arg(format!("{}/openapi.json", app.url))
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", app.admin))
        .arg("--output-truncate")
        .arg("false")
        .current_dir(workdir.path())
        // Stateful sequences send each valid request with an idempotency key of its own.
        .env(
            "SCHEMATHESIS_HOOKS",
            repo_root().join("tests/fuzz/hooks.py"),
        )
        // Loopback only, whatever the environment says about proxies.
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run schemathesis");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);

    // The gateway survived: same process, still healthy.
    assert_eq!(app.pid(), Some(pid));
    let health = app.call("GET", "/healthz", None, None).await;
    assert_eq!(
        health.status,
        200,
        "the gateway is unhealthy after the run:\n{}",
        tail(&app.log(), 50)
    );
    assert!(
        !app.log().contains("panicked"),
        "a handler panicked:\n{}",
        tail(&app.log(), 80)
    );
    assert!(
        out.status.success(),
        "schemathesis found faults (exit {}):\n{}",
        out.status,
        tail(&report, 400)
    );
    // A run that tested nothing proves nothing: every selected operation was tested.
    let selected = number_after(&report, "Selected: ").expect("a summary");
    assert_eq!(
        number_after(&report, "Tested: "),
        Some(selected),
        "not every operation was tested:\n{}",
        tail(&report, 60)
    );
    // Every operation of the public listener (`/metrics` is on the operator's): the document
    // holds 28 (openapi_document.rs holds it equal to the router); schemathesis 4.32 reported
    // 22 selected of 23 before the five listings (`/v1/me`, `/v1/instances`, `/v1/tenants`,
    // `/v1/hosts`, `/v1/operations`) were added: the floor is what it selects, and every
    // selected one must be tested (above).
    assert!(selected >= 27, "{selected} operations selected");
    app.stop().await;
}

/// Found by the fuzz run: a NUL byte in a decision-log filter reached PostgreSQL, which refuses
/// it in text, and the client got a 500. Control characters in a filter are a 400 now, on
/// either database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_filters_with_control_characters_are_refused_not_a_500() {
    for db in [Db::Postgres, Db::Sqlite] {
        let app = TestApp::builder().db(db).start().await;
        for filter in ["tenant=a%00b", "plugin=%00", "outcome=deny%0A"] {
            let r = app
                .get(&format!("/v1/policy/decisions?{filter}"), &app.admin)
                .await;
            assert_eq!(
                (r.status, r.code()),
                (400, "invalid_parameter"),
                "{db:?} {filter}: {}",
                r.text
            );
        }
        let r = app
            .get("/v1/policy/decisions?tenant=demo&outcome=deny", &app.admin)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

/// Found by the fuzz run: what the document says of tenant ids (1–255 characters, no control
/// characters) holds for every quota call: GET refused nothing, and PUT counted bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_tenant_ids_follow_the_documented_rule_on_every_method() {
    let app = TestApp::builder().postgres().start().await;
    let too_long = "t".repeat(256);
    let r = app.get(&format!("/v1/quotas/{too_long}"), &app.admin).await;
    assert_eq!((r.status, r.code()), (400, "invalid_tenant"), "{}", r.text);
    // Printable ASCII without space, up to 255 characters: within the rule, on every method.
    let longest = format!("{}{}", "p-.:@~", "t".repeat(249));
    let limits = serde_json::json!({"states": 1, "state_bytes": -1, "concurrent_operations": 1, "saves_per_hour": -1});
    let r = app
        .call(
            "PUT",
            &format!("/v1/quotas/{longest}"),
            Some(&app.admin),
            Some(limits.clone()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.get(&format!("/v1/quotas/{longest}"), &app.admin).await;
    assert_eq!(
        (r.status, r.body["custom"].as_bool()),
        (200, Some(true)),
        "{}",
        r.text
    );
    // Anything else is refused alike on every method: non-ASCII, a space, a control.
    for bad in ["%C3%A9t%C3%A9", "a%20b", "a%09b"] {
        let path = format!("/v1/quotas/{bad}");
        for (method, body) in [
            ("GET", None),
            ("PUT", Some(limits.clone())),
            ("DELETE", None),
        ] {
            let r = app.call(method, &path, Some(&app.admin), body).await;
            assert_eq!(
                (r.status, r.code()),
                (400, "invalid_tenant"),
                "{method} {bad}: {}",
                r.text
            );
        }
    }
}

/// Found by the fuzz run: JSON Schema's `integer`, which the document declares for quota
/// limits, admits `3.0`; the gateway refused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_limits_written_as_integral_numbers_are_accepted() {
    let app = TestApp::builder().start().await;
    let path = format!("/v1/quotas/{}", snapgate_tests::app::demo::TENANT);
    let limits = serde_json::json!({"states": 3.0, "state_bytes": -1.0, "concurrent_operations": 2, "saves_per_hour": 0.0});
    let r = app.call("PUT", &path, Some(&app.admin), Some(limits)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["usage"]["states"]["limit"], 3, "{}", r.body);
    let limits = serde_json::json!({"states": 3.5, "state_bytes": -1, "concurrent_operations": 2, "saves_per_hour": 0});
    let r = app.call("PUT", &path, Some(&app.admin), Some(limits)).await;
    assert_eq!((r.status, r.code()), (400, "invalid_body"), "{}", r.text);
}

/// Found by the fuzz run: page sizes are `int64` in the document; one past it (accepted as a
/// u64 before) and a negative one are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_sizes_outside_the_documented_range_are_refused() {
    let app = TestApp::builder().start().await;
    let states = format!("/v1/instances/{}/states", snapgate_tests::app::demo::WEB);
    for (path, ok) in [
        (format!("{states}?limit=-1"), false),
        (format!("{states}?limit=9223372036854775808"), false),
        (format!("{states}?limit=9223372036854775807"), true),
        ("/v1/policy/decisions?limit=-1".to_owned(), false),
        (
            "/v1/policy/decisions?limit=16413226326029389824".to_owned(),
            false,
        ),
        ("/v1/policy/decisions?limit=0".to_owned(), true),
    ] {
        let r = app.get(&path, &app.admin).await;
        if ok {
            assert_eq!(r.status, 200, "{path}: {}", r.text);
        } else {
            assert_eq!(
                (r.status, r.code()),
                (400, "invalid_parameter"),
                "{path}: {}",
                r.text
            );
        }
    }
}
