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
