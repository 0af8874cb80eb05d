//! Policy plugins through the HTTP API: the four example plugins allowed and denied, audit
//! mode, dry runs that change nothing, failing plugins with `on_error`, decision records, and
//! hot reload (admin call and SIGHUP) under concurrent requests.

use futures::future::join_all;
use serde_json::{json, Value};
use snapgate_tests::app::{demo, metric_value, repo_root, TestApp};

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

/// A `[[policy.plugins]]` entry.
fn entry(name: &str, file: &str, ops: &str, mode: &str, on_error: &str, config: &str) -> String {
    format!(
        "[[policy.plugins]]\nname = \"{name}\"\nfile = \"{}\"\noperations = [{ops}]\nmode = \"{mode}\"\non_error = \"{on_error}\"\nconfig = '{config}'\n",
        plugin(file)
    )
}

/// Policy limits, no quota in the way, and one compiled-plugin cache shared by every test
/// gateway (entries are keyed by the plugin's sha256 and the engine's compatibility hash).
fn limits() -> String {
    let cache = repo_root().join("target/plugin-cache-tests");
    format!(
        "[quota.defaults]\nstates = -1\nstate_bytes = -1\nconcurrent_operations = -1\nsaves_per_hour = -1\n\
         [policy]\ndeadline_ms = 500\nmemory_mib = 16\ncache_dir = \"{}\"\n",
        cache.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_plugins_allow_and_deny() {
    let chain = format!(
        "{}{}{}{}{}",
        limits(),
        entry(
            "no-passthrough",
            "no-passthrough",
            "\"save\"",
            "enforce",
            "deny",
            "{}"
        ),
        entry(
            "disk-format",
            "disk-format",
            "\"save\"",
            "enforce",
            "deny",
            r#"{"allowed": ["qcow2"]}"#
        ),
        entry(
            "max-states",
            "max-states-per-instance",
            "\"save\"",
            "enforce",
            "deny",
            r#"{"max": 2}"#
        ),
        entry(
            "cpu-compat",
            "cpu-compat",
            "\"apply\"",
            "enforce",
            "deny",
            r#"{"allow_superset": true}"#
        ),
    );
    let app = TestApp::builder().config(&chain).start().await;
    let m = &app.member;

    // disk-format: a raw disk is refused, naming the disk.
    let r = app.save(demo::RAW_DISK, "raw", m).await;
    assert_eq!((r.status, r.code()), (403, "policy_denied"), "{}", r.body);
    assert_eq!(r.body["error"]["plugin"], "disk-format");
    assert!(
        r.body["error"]["reason"].as_str().unwrap().contains("vda"),
        "{}",
        r.body
    );
    // no-passthrough: the GPU instance is refused by policy before the backend's own check.
    let r = app.save(demo::GPU, "gpu", m).await;
    assert_eq!((r.status, r.code()), (403, "policy_denied"), "{}", r.body);
    assert_eq!(r.body["error"]["plugin"], "no-passthrough");
    // max-states: two fit, the third is refused.
    let first = app.saved(demo::WEB, "one", m).await;
    app.saved(demo::WEB, "two", m).await;
    let r = app.save(demo::WEB, "three", m).await;
    assert_eq!((r.status, r.code()), (403, "policy_denied"), "{}", r.body);
    assert_eq!(r.body["error"]["plugin"], "max-states");
    // cpu-compat: the test driver cannot compare CPUs, so the verdict is unknown: refused.
    let r = app
        .post(
            &format!("/v1/instances/{}/states/apply", demo::WEB),
            m,
            json!({"uuid": first["uuid"]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "policy_denied"), "{}", r.body);
    assert_eq!(r.body["error"]["plugin"], "cpu-compat");
    assert_eq!(r.body["error"]["policy_code"], "cpu_unknown");
    // Deletes pass the chain (no plugin applies to them).
    let r = app
        .delete(
            &format!(
                "/v1/instances/{}/states/{}",
                demo::WEB,
                first["uuid"].as_str().unwrap()
            ),
            m,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);

    // Every decision is recorded and readable by admins, filtered.
    let d = app
        .get("/v1/policy/decisions?outcome=deny", &app.admin)
        .await;
    assert_eq!(d.status, 200, "{}", d.text);
    let plugins: Vec<&str> = d.body["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["plugin"].as_str().unwrap())
        .collect();
    for p in ["disk-format", "no-passthrough", "max-states", "cpu-compat"] {
        assert!(plugins.contains(&p), "{p} missing from {plugins:?}");
    }
    let one = &d.body["values"][0];
    for k in [
        "time",
        "tenant",
        "instance_uuid",
        "operation",
        "plugin_sha256",
        "mode",
        "outcome",
        "reason",
        "latency_us",
    ] {
        assert!(!one[k].is_null(), "{k} missing in {one}");
    }
    let d = app
        .get(
            "/v1/policy/decisions?plugin=disk-format&tenant=demo",
            &app.admin,
        )
        .await;
    assert!(d.body["values"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["plugin"] == "disk-format"));
    assert_eq!(
        app.get("/v1/policy/decisions", m).await.status,
        403,
        "admins only"
    );
    // The series exist from the load on (the handles are registered then): the values tell.
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"snapgate_policy_decisions_total{plugin="disk-format",outcome="deny""#
        ),
        1.0,
        "the raw-disk save is the one denial of disk-format:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_compat_allows_when_configured_and_audit_mode_records_without_refusing() {
    let chain = format!(
        "{}{}{}",
        limits(),
        entry(
            "cpu-compat",
            "cpu-compat",
            "\"apply\"",
            "enforce",
            "deny",
            r#"{"allow_unknown": true}"#
        ),
        entry(
            "disk-format",
            "disk-format",
            "\"save\"",
            "audit",
            "deny",
            "{}"
        ),
    );
    let app = TestApp::builder().config(&chain).start().await;
    let s = app.saved(demo::WEB, "s", &app.member).await;
    let r = app
        .post(
            &format!("/v1/instances/{}/states/apply", demo::WEB),
            &app.member,
            json!({"uuid": s["uuid"]}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    // cpu-compat warns when it allows an unknown verdict: the warning reaches the client.
    assert!(
        r.header("warning").is_some() || r.body["warnings"].is_array(),
        "{:?}",
        r.headers
    );
    // Audit: the raw disk is saved, the would-be denial recorded.
    let r = app
        .save(demo::RAW_DISK, "raw but audited", &app.member)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let d = app
        .get("/v1/policy/decisions?plugin=disk-format", &app.admin)
        .await;
    let v = &d.body["values"][0];
    assert_eq!(
        (
            v["outcome"].as_str(),
            v["mode"].as_str(),
            v["overridden"].as_bool()
        ),
        (Some("deny"), Some("audit"), Some(true)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing() {
    let chain = format!(
        "{}{}",
        limits(),
        entry(
            "disk-format",
            "disk-format",
            "\"save\"",
            "enforce",
            "deny",
            "{}"
        )
    );
    let app = TestApp::builder()
        .redis()
        .postgres()
        .config(&chain)
        .start()
        .await;
    let quota_before = app.get("/v1/quotas/demo", &app.member).await.body;
    let r = app
        .post(
            &format!("/v1/instances/{}/states?dry_run=true", demo::RAW_DISK),
            &app.member,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["allowed"], false);
    assert_eq!(r.body["denied_by"], "disk-format");
    let r = app
        .post(
            &format!("/v1/instances/{}/states?dry_run=true", demo::WEB),
            &app.member,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["allowed"].as_bool()),
        (200, Some(true)),
        "{}",
        r.body
    );
    // Nothing changed: no state, no quota, and the same name is still free.
    for vm in [demo::RAW_DISK, demo::WEB] {
        assert_eq!(
            app.get(&format!("/v1/instances/{vm}/states"), &app.member)
                .await
                .body["values"],
            json!([])
        );
    }
    assert_eq!(
        app.get("/v1/quotas/demo", &app.member).await.body,
        quota_before
    );
    let s = app.saved(demo::WEB, "x", &app.member).await;
    // Dry runs of apply and delete too.
    let sid = s["uuid"].as_str().unwrap();
    let r = app
        .post(
            &format!("/v1/instances/{}/states/apply?dry_run=true", demo::WEB),
            &app.member,
            json!({"uuid": sid}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["allowed"].as_bool()),
        (200, Some(true)),
        "{}",
        r.body
    );
    let r = app
        .call(
            "DELETE",
            &format!("/v1/instances/{}/states/{sid}?dry_run=true", demo::WEB),
            Some(&app.member),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body["dry_run"].as_bool()),
        (200, Some(true)),
        "{}",
        r.body
    );
    assert_eq!(
        app.get(
            &format!("/v1/instances/{}/states/{sid}", demo::WEB),
            &app.member
        )
        .await
        .body["status"],
        "available"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_plugins_respect_on_error_and_the_gateway_serves_on() {
    for (file, on_error, want) in [
        ("test-loop-forever", "deny", 403),
        ("test-loop-forever", "allow", 202),
        ("test-alloc-bomb", "deny", 403),
        ("test-alloc-bomb", "allow", 202),
        ("test-trap", "deny", 403),
        ("test-trap", "allow", 202),
    ] {
        let chain = format!(
            "{}{}",
            limits(),
            entry(file, file, "\"save\"", "enforce", on_error, "{}")
        );
        let app = TestApp::builder().config(&chain).start().await;
        let r = app.save(demo::WEB, "x", &app.member).await;
        assert_eq!(r.status, want, "{file} on_error={on_error}: {}", r.body);
        if want == 403 {
            assert_eq!(r.code(), "policy_denied");
        }
        if file == "test-trap" && want == 403 {
            // The client learns which plugin failed and how, not wasmtime's trap dump; the
            // log has the dump, in the request's span.
            assert_eq!(
                r.body["error"]["reason"],
                "policy plugin test-trap failed (trap): the plugin trapped",
                "{}",
                r.body
            );
            let request_id = r.header("x-request-id").unwrap().to_owned();
            let log = app.log();
            assert!(
                log.lines().any(|l| l.contains("policy plugin failed")
                    && l.contains(&request_id)
                    && l.contains("wasm")),
                "the trap's detail is logged with request id {request_id}:\n{log}"
            );
        }
        assert_eq!(app.call("GET", "/healthz", None, None).await.status, 200);
        let d = app
            .get(&format!("/v1/policy/decisions?plugin={file}"), &app.admin)
            .await;
        assert_eq!(d.body["values"][0]["outcome"], "error", "{}", d.body);
        let fail_open = app
            .metric(&format!(
                "snapgate_policy_fail_open_total{{plugin=\"{file}\"}}"
            ))
            .await;
        let want_fail_open = if on_error == "allow" { 1.0 } else { 0.0 };
        assert_eq!(
            fail_open, want_fail_open,
            "fail-open is counted, and only then"
        );
    }
    // A component with the wrong exports is refused at start with a clear message.
    let chain = format!(
        "{}{}",
        limits(),
        entry("wrong", "test-wrong-exports", "", "enforce", "deny", "{}")
    );
    let out = std::process::Command::new(snapgate_tests::app::snapgate_bin())
        .args(["plugin", "check", &plugin("test-wrong-exports")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let _ = chain;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_reload_under_load_loses_no_request() {
    let app = TestApp::builder()
        .config(&format!(
            "{}{}",
            limits(),
            entry(
                "disk-format",
                "disk-format",
                "\"save\"",
                "enforce",
                "deny",
                "{}"
            )
        ))
        .start()
        .await;
    let config_path = app.data_dir.parent().unwrap().join("snapgate.toml");
    let original = std::fs::read_to_string(&config_path).unwrap();

    // Add always-deny to the chain in the file, then reload while dry runs are in flight.
    let extended = format!(
        "{original}{}",
        entry(
            "always-deny",
            "test-always-deny",
            "\"save\"",
            "enforce",
            "deny",
            "{}"
        )
    );
    std::fs::write(&config_path, &extended).unwrap();
    // The reload starts once some of the load has been answered, so it lands amid the rest.
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let load = (0..60).map(|i| {
        let (app, answered) = (&app, &answered);
        async move {
            let r = app
                .post(
                    &format!("/v1/instances/{}/states?dry_run=true", demo::WEB),
                    &app.member,
                    json!({"name": format!("n{i}")}),
                )
                .await;
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r
        }
    });
    let reload = async {
        while answered.load(std::sync::atomic::Ordering::SeqCst) < 5 {
            tokio::task::yield_now().await;
        }
        app.post("/v1/policy/reload", &app.admin, json!({})).await
    };
    let (results, reloaded) = tokio::join!(join_all(load), reload);
    assert_eq!(reloaded.status, 200, "{}", reloaded.text);
    for r in &results {
        assert_eq!(
            r.status, 200,
            "a request was lost during the reload: {}",
            r.text
        );
    }
    let r = app.save(demo::WEB, "after reload", &app.member).await;
    assert_eq!(
        (r.status, r.body["error"]["plugin"].as_str()),
        (403, Some("always-deny")),
        "{}",
        r.body
    );
    let chain: Value = app.get("/v1/policy/plugins", &app.admin).await.body;
    assert!(chain.to_string().contains("always-deny"), "{chain}");

    // A broken chain is refused; the old chain keeps serving.
    std::fs::write(
        &config_path,
        format!("{original}[[policy.plugins]]\nname = \"ghost\"\nfile = \"/nonexistent.wasm\"\n"),
    )
    .unwrap();
    let r = app.post("/v1/policy/reload", &app.admin, json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (422, "policy_reload_failed"),
        "{}",
        r.text
    );
    assert_eq!(
        app.save(demo::WEB, "still denied", &app.member).await.body["error"]["plugin"],
        "always-deny"
    );

    // SIGHUP reloads from the file too.
    std::fs::write(&config_path, &original).unwrap();
    let pid = app.pid().unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let mut reloaded = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if !app
            .get("/v1/policy/plugins", &app.admin)
            .await
            .body
            .to_string()
            .contains("always-deny")
        {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "SIGHUP did not reload: {}", app.log());
    assert_eq!(
        app.save(demo::WEB, "after sighup", &app.member)
            .await
            .status,
        202
    );
}

/// The author's loop through the real binary: `plugin check`, `plugin eval` (exit 0 allow, 1
/// deny, 2 error; `--config` inline or `@file`), `plugin test` (non-zero on a mismatch) and
/// `plugin schema`.
#[test]
fn plugin_check_eval_test_and_schema_commands() {
    let bin = snapgate_tests::app::snapgate_bin();
    let snapgate = |args: &[&str]| {
        let out = std::process::Command::new(&bin)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = snapgate(&["plugin", "check", &plugin("cpu-compat")]);
    assert_eq!(code, 0, "{err}");
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["world"], "snapgate:policy/policy@0.2.0");
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);

    let request = repo_root().join("plugins/examples/save-request.json");
    let request = request.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let eval = |file: &str, config: Option<&str>| {
        let plugin = plugin(file);
        let mut args = vec!["plugin", "eval", &plugin, "--input", request];
        args.extend(["--deadline-ms", "1000"]);
        if let Some(c) = config {
            args.extend(["--config", c]);
        }
        let (code, out, err) = snapgate(&args);
        (
            code,
            serde_json::from_str::<Value>(&out).unwrap_or(Value::Null),
            err,
        )
    };
    let (code, denied, _) = eval("disk-format", None);
    assert_eq!((code, &denied["outcome"]), (1, &json!("deny")), "{denied}");
    assert_eq!(denied["code"], "disk_format_not_allowed");
    assert!(denied["elapsed"].is_object() && denied["peak_memory_bytes"].as_u64().unwrap() > 0);
    let (code, allowed, _) = eval("disk-format", Some(r#"{"allowed": ["qcow2", "raw"]}"#));
    assert_eq!(
        (code, &allowed["outcome"]),
        (0, &json!("allow")),
        "{allowed}"
    );
    let file = dir.path().join("config.json");
    std::fs::write(&file, r#"{"allowed": ["qcow2", "raw"]}"#).unwrap();
    let at_file = format!("@{}", file.display());
    assert_eq!(eval("disk-format", Some(&at_file)).0, 0);
    let (code, failed, _) = eval("test-trap", None);
    assert_eq!((code, &failed["outcome"]), (2, &json!("error")), "{failed}");
    let (code, _, err) = eval("disk-format", Some("{not json"));
    assert_eq!(code, 2, "bad input is an error, not a verdict: {err}");
    // The old (0.1) input shape is refused with a pointer to the schema.
    let old = dir.path().join("old.json");
    std::fs::write(
        &old,
        r#"{"operation": "save", "request_time": "2025-03-01T12:00:00Z"}"#,
    )
    .unwrap();
    let (code, _, err) = snapgate(&[
        "plugin",
        "eval",
        &plugin("disk-format"),
        "--input",
        old.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("plugin schema"), "{err}");

    // plugin test: one case matches, one does not.
    let cases = dir.path().join("cases.json");
    std::fs::write(
        &cases,
        json!({
            "plugin": plugin("disk-format"),
            "request": format!("@{request}"),
            "cases": [
                {"name": "raw is refused", "expect": {"verdict": "deny", "code": "disk_format_not_allowed"}},
                {"name": "raw allowed by config", "config": {"allowed": ["qcow2", "raw"]},
                 "expect": {"verdict": "allow"}},
                {"name": "wrongly expected", "request": {"instance": {"disks": []}},
                 "expect": {"verdict": "deny"}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let cases = cases.to_str().unwrap();
    let (code, out, err) = snapgate(&["plugin", "test", cases, "--deadline-ms", "1000"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("ok    raw is refused: deny disk_format_not_allowed"),
        "{out}"
    );
    assert!(out.contains("ok    raw allowed by config: allow"), "{out}");
    assert!(
        out.contains("FAIL  wrongly expected: expected deny, got allow"),
        "{out}"
    );
    assert!(out.contains("2 passed, 1 failed"), "{out}");
    let (code, _, err) = snapgate(&["plugin", "test", cases, "--plugin", "/nonexistent.wasm"]);
    assert_eq!(code, 2, "{err}");

    // plugin schema: JSON Schema of the WIT-shaped request.
    let (code, out, _) = snapgate(&["plugin", "schema"]);
    assert_eq!(code, 0);
    let schema: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(
        schema["properties"]["request-time-ms"].is_object(),
        "{schema}"
    );
    assert!(
        schema["$defs"]["SaveRequest"]["properties"]["expires-at-ms"].is_object(),
        "{schema}"
    );
}

/// `snapgate:policy@0.2.0`: a save's name, description and mode reach the plugins, so a rule
/// such as "no saves of big instances unless the state's name starts with `big-`" can be
/// written; a 0.1.0 plugin runs in the same chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_carry_what_the_caller_asked_for() {
    let chain = format!(
        "{}{}{}{}",
        limits(),
        entry("v0-1", "test-contract-v0-1", "", "enforce", "deny", "{}"),
        entry("echo", "test-echo-save", "", "enforce", "deny", "{}"),
        // demo-web has 512 MiB.
        entry(
            "memory-cap",
            "memory-cap",
            "\"save\"",
            "enforce",
            "deny",
            r#"{"max_memory_mib": 256, "big_name_prefix": "big-"}"#
        ),
    );
    let app = TestApp::builder().config(&chain).start().await;
    let m = &app.member;
    let path = format!("/v1/instances/{}/states", demo::WEB);

    let r = app.save(demo::WEB, "nightly", m).await;
    assert_eq!((r.status, r.code()), (403, "policy_denied"), "{}", r.body);
    assert_eq!(r.body["error"]["plugin"], "memory-cap");
    assert_eq!(r.body["error"]["policy_code"], "memory_over_cap");

    let r = app
        .post(
            &path,
            m,
            json!({"name": "big-nightly", "description": "before the upgrade", "mode": "external"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let warnings: Vec<&str> = r.body["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings.contains(
            &"save name=big-nightly description=before the upgrade mode=SaveMode::External \
              kind=SnapshotKind::External expires-at-ms=None"
        ),
        "{warnings:?}"
    );
    assert!(
        warnings.contains(&"v0.1 saw Operation::Save of demo-web"),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("big save")),
        "{warnings:?}"
    );

    // A dry run is asked the same, and an apply carries no save.
    let r = app
        .post(
            &format!("{path}?dry_run=true"),
            m,
            json!({"name": "dry", "mode": "auto"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["denial_code"], "memory_over_cap", "{}", r.body);
    assert!(
        r.body["warnings"]
            .to_string()
            .contains("save name=dry description=- mode=SaveMode::Auto"),
        "{}",
        r.body
    );
}
