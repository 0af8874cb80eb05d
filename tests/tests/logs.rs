//! What the gateway writes to its log: lines a log shipper can use as they are.

use serde_json::Value;
use snapgate_tests::app::{demo, TestApp};

/// With `log.format = "json"` every line is one flat JSON object, and an operation's lines
/// carry its operation id, the tenant and the id of the request that started it as top-level
/// fields (not nested in span lists a shipper would have to search).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_request_tenant_and_operation_ids_as_fields() {
    let app = TestApp::builder()
        .config("[log]\nformat = \"json\"")
        .start()
        .await;
    let accepted = app.save(demo::WEB, "logged", &app.member).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let request_id = accepted
        .header("x-request-id")
        .expect("every answer names its request")
        .to_owned();
    let op = accepted.body["operation"].as_str().unwrap().to_owned();
    app.wait(&op, &app.member).await;

    let log = app.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ended = lines
        .iter()
        .find(|l| l["message"] == "operation ended" && l["operation_id"] == op.as_str())
        .unwrap_or_else(|| panic!("no 'operation ended' line for {op}:\n{log}"));
    assert_eq!(ended["request_id"], request_id.as_str(), "{ended}");
    assert_eq!(ended["tenant"], "demo", "{ended}");
    assert_eq!(ended["instance"], demo::WEB, "{ended}");
    assert_eq!(ended["status"], "succeeded", "{ended}");
    assert_eq!(ended["level"], "INFO", "{ended}");
    assert!(ended["timestamp"].as_str().is_some_and(|t| t.contains('T')));
}

/// Every state change leaves an audit line when accepted (who, in which tenant, what, on which
/// instance and state) and one when it ends (the outcome), joined by the operation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_leave_audit_lines_with_actor_and_outcome() {
    let app = TestApp::builder()
        .config("[log]\nformat = \"json\"")
        .start()
        .await;
    let state = app.saved(demo::WEB, "audited", &app.member).await;
    let state_id = state["uuid"].as_str().unwrap().to_owned();
    let deleted = app
        .delete(
            &format!("/v1/instances/{}/states/{state_id}", demo::WEB),
            &app.member,
        )
        .await;
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    let delete_op = deleted.body["uuid"].as_str().unwrap().to_owned();
    app.wait(&delete_op, &app.member).await;

    let log = app.log();
    let audit: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "snapgate::audit")
        .collect();
    for action in ["save", "delete"] {
        let accepted = audit
            .iter()
            .find(|l| l["action"] == action && l["outcome"] == "accepted")
            .unwrap_or_else(|| panic!("no accepted {action} audit line:\n{log}"));
        assert!(
            accepted["actor"].as_str().is_some_and(|a| !a.is_empty()),
            "{accepted}"
        );
        assert_eq!(accepted["tenant"], "demo", "{accepted}");
        assert_eq!(accepted["instance"], demo::WEB, "{accepted}");
        assert_eq!(accepted["state_id"], state_id.as_str(), "{accepted}");
        let op = accepted["operation_id"].as_str().unwrap();
        let ended = audit
            .iter()
            .find(|l| l["operation_id"] == op && l["outcome"] != "accepted")
            .unwrap_or_else(|| panic!("no end audit line for {op}:\n{log}"));
        assert_eq!(ended["outcome"], "succeeded", "{ended}");
        assert_eq!(ended["action"], action, "{ended}");
    }
}

/// Text logs written to a file (or the journal) hold no terminal colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_to_a_file_hold_no_colour_codes() {
    let app = TestApp::builder().start().await;
    let r = app
        .get(
            "/v1/instances/00000000-0000-4000-8000-000000000000/states",
            &app.member,
        )
        .await;
    assert_eq!(r.status, 404);
    let log = app.log();
    assert!(log.contains("INFO"), "the gateway logged nothing:\n{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
}
