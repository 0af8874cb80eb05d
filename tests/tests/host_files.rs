//! Issue 9, points 3 and 4 on libvirt's test driver: a host's state files are the host's (the
//! demo cloud's raw-disk VM saves, applies and deletes with no configuration), and states
//! survive a move of their instance to another host (internal ones apply there; external ones,
//! whose files stay behind, answer a clear 409 and stay listed).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use snapgate_tests::app::{demo, free_port, snapgate_bin, TestApp};

async fn wait_ready(http: &reqwest::Client, url: &str, child: &mut tokio::process::Child) {
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("snapgate exited at start with {status}");
        }
        if http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway did not become ready");
}

/// Sends a request and returns (status, body).
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn wait_operation(http: &reqwest::Client, url: &str, token: &str, op: &Value) -> Value {
    let op = op.as_str().expect("operation id");
    for _ in 0..20 {
        let (status, body) = call(
            http,
            reqwest::Method::GET,
            format!("{url}/v1/operations/{op}/wait?timeout=30"),
            token,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if body["status"] == "succeeded" || body["status"] == "failed" {
            return body;
        }
    }
    panic!("operation {op} did not end");
}

/// The README's walk-through with the VM whose raw disk only external states can save: with no
/// configuration at all, from a relative data directory, save, apply and delete succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_raw_disk_vm_saves_applies_and_deletes_out_of_the_box() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = tokio::process::Command::new(snapgate_bin())
        .arg("serve")
        .current_dir(dir.path())
        .env("SNAPGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("SNAPGATE_CONFIG")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &url, &mut child).await;
    let member = std::fs::read_to_string(dir.path().join("data/member.token")).unwrap();
    let member = member.trim();
    let states = format!("{url}/v1/instances/{}/states", demo::RAW_DISK);

    let (status, saved) = call(
        &http,
        reqwest::Method::POST,
        states.clone(),
        member,
        Some(json!({ "name": "raw" })),
    )
    .await;
    assert_eq!(status, 202, "{saved}");
    assert_eq!(saved["snapshot_kind"], "external", "{saved}");
    let op = wait_operation(&http, &url, member, &saved["operation"]).await;
    assert_eq!(op["status"], "succeeded", "save: {op}");
    let state = saved["uuid"].as_str().unwrap();

    let (status, applied) = call(
        &http,
        reqwest::Method::POST,
        format!("{states}/apply"),
        member,
        Some(json!({ "uuid": state })),
    )
    .await;
    assert_eq!(status, 202, "{applied}");
    let op = wait_operation(&http, &url, member, &applied["uuid"]).await;
    assert_eq!(op["status"], "succeeded", "apply: {op}");

    let (status, deleted) = call(
        &http,
        reqwest::Method::DELETE,
        format!("{states}/{state}"),
        member,
        None,
    )
    .await;
    assert_eq!(status, 202, "{deleted}");
    let op = wait_operation(&http, &url, member, &deleted["uuid"]).await;
    assert_eq!(op["status"], "succeeded", "delete: {op}");
    let (status, _) = call(
        &http,
        reqwest::Method::GET,
        format!("{states}/{state}"),
        member,
        None,
    )
    .await;
    assert_eq!(status, 404);
    // The test driver writes no file, and the gateway made none of its own.
    assert!(!dir.path().join("data/states").exists());
}

const MOVED_QCOW2: &str = "9e0e0000-0000-4000-8000-000000000001";
const MOVED_RAW: &str = "9e0e0000-0000-4000-8000-000000000002";

/// A test-driver node; `with_moved` puts the two instances that move between hosts on it.
fn write_node(path: &Path, host: &str, with_moved: bool) {
    let domain = |name: &str, uuid: &str, format: &str| {
        format!(
            "<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>\
             <metadata><snapgate:owner xmlns:snapgate='https://snapgate.dev/xmlns/owner/1.0' tenant='{}'/></metadata>\
             <memory unit='MiB'>256</memory><currentMemory unit='MiB'>256</currentMemory><vcpu>1</vcpu>\
             <os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>\
             <driver name='qemu' type='{format}'/><source file='/shared/{name}.{format}'/>\
             <target dev='vda' bus='virtio'/></disk></devices></domain>",
            demo::TENANT
        )
    };
    let mut xml = String::from(
        "<node><cpu><mhz>2400</mhz><model>x86_64</model><active>2</active><nodes>1</nodes>\
         <sockets>1</sockets><cores>2</cores><threads>1</threads></cpu><memory>8388608</memory>",
    );
    // Every node needs a domain of its own; these never move.
    xml.push_str(&domain(
        &format!("{host}-resident"),
        if host == "a" {
            "9e0e0000-0000-4000-8000-00000000000a"
        } else {
            "9e0e0000-0000-4000-8000-00000000000b"
        },
        "qcow2",
    ));
    if with_moved {
        xml.push_str(&domain("moved-qcow2", MOVED_QCOW2, "qcow2"));
        xml.push_str(&domain("moved-raw", MOVED_RAW, "raw"));
    }
    xml.push_str("</node>");
    std::fs::write(path, xml).unwrap();
}

/// Two hosts; each instance starts on `a`, is saved there, then moves to `b` (undefined on
/// one, defined on the other with the same disks: each test-driver connection reads its node
/// file afresh, so the gateway's restart is the move).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_survive_a_move_to_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let (node_a, node_b) = (dir.path().join("a.xml"), dir.path().join("b.xml"));
    write_node(&node_a, "a", true);
    write_node(&node_b, "b", false);
    let mut app = TestApp::builder()
        .host("a", &format!("test://{}", node_a.display()))
        .host("b", &format!("test://{}", node_b.display()))
        .start()
        .await;
    let token = app.member.clone();
    let internal = app
        .saved_in_mode(MOVED_QCOW2, "before the move", "internal", &token)
        .await;
    assert_eq!(
        (
            internal["snapshot_kind"].as_str(),
            internal["host"].as_str()
        ),
        (Some("internal"), Some("a")),
        "{internal}"
    );
    let external = app.saved(MOVED_RAW, "files stay on a", &token).await;
    assert_eq!(
        (
            external["snapshot_kind"].as_str(),
            external["host"].as_str()
        ),
        (Some("external"), Some("a")),
        "{external}"
    );

    write_node(&node_a, "a", false);
    write_node(&node_b, "b", true);
    app.restart().await;

    // The internal state's data moved with the disks: the snapshot is defined again on b
    // from the XML kept at save time, and applies there.
    let path = format!("/v1/instances/{MOVED_QCOW2}/states");
    let r = app
        .post(
            &format!("{path}/apply"),
            &token,
            json!({ "uuid": internal["uuid"] }),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["host"], "b", "{}", r.body);
    let op = app.wait(r.body["uuid"].as_str().unwrap(), &token).await;
    assert_eq!(op["status"], "succeeded", "{op}\n{}", app.log());
    // A second apply finds it defined already.
    let r = app
        .post(
            &format!("{path}/apply"),
            &token,
            json!({ "uuid": internal["uuid"] }),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let op = app.wait(r.body["uuid"].as_str().unwrap(), &token).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let r = app
        .delete(
            &format!("{path}/{}", internal["uuid"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let op = app.wait(r.body["uuid"].as_str().unwrap(), &token).await;
    assert_eq!(op["status"], "succeeded", "{op}");

    // The external state's files are on a: apply and delete say so, and nothing is lost.
    let path = format!("/v1/instances/{MOVED_RAW}/states");
    let state = external["uuid"].as_str().unwrap();
    let apply = app
        .post(&format!("{path}/apply"), &token, json!({ "uuid": state }))
        .await;
    let delete = app.delete(&format!("{path}/{state}"), &token).await;
    for r in [&apply, &delete] {
        assert_eq!(
            (r.status, r.code()),
            (409, "state_on_other_host"),
            "{}",
            r.body
        );
        assert_eq!(r.body["error"]["host"], "a", "{}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("host a"), "{message}");
    }
    let listed = app.get(&path, &token).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["values"][0]["uuid"], state, "{}", listed.body);
    assert_eq!(
        listed.body["values"][0]["status"], "available",
        "{}",
        listed.body
    );
}
