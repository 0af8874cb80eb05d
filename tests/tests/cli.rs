//! The seed's CLI against a real gateway: state-save, state-list, state-show, state-load,
//! state-delete, `--output json|yaml|table` (and `--json`), `--no-wait`, exit codes, errors
//! with their code and hint, records decoded through a newer gateway's additions, and the
//! progress display on a terminal.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use snapgate_api::routes::schedules::ScheduleList;
use snapgate_api::routes::states::StateList;
use snapgate_core::{ErrorBody, Operation, State, StateStatus};
use snapgate_tests::app::{demo, many_uuid, snapgate_bin, TestApp};
use snapgate_tests::hosts::{
    instances_node_file, metric_sum, system_libvirtd, HostProxy, LIBVIRTD_SOCKET,
    SNAPSHOT_CREATE_CALL,
};
use snapgate_tests::lossy_proxy::AnswerLosingProxy;
use snapgate_tests::newer_gateway::{NewerGateway, ADDED_MEMBER};

fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    cli_at(&app.url, &app.member, args)
}

fn cli_at(url: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(snapgate_bin())
        .args(args)
        .env("SNAPGATE_URL", url)
        .env("SNAPGATE_TOKEN", token)
        .env_remove("SNAPGATE_OUTPUT")
        .output()
        .expect("run snapgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the CLI and decodes its standard output with `decode`, failing on a non-zero exit.
fn decoded<T>(app: &TestApp, args: &[&str], decode: impl FnOnce(&str) -> Result<T, String>) -> T {
    let (code, out, err) = tokio::task::block_in_place(|| cli(app, args));
    assert_eq!(code, 0, "snapgate {args:?}: {out}{err}");
    decode(&out).unwrap_or_else(|e| panic!("snapgate {args:?}: {e}: {out}"))
}

fn json<T: serde::de::DeserializeOwned>(out: &str) -> Result<T, String> {
    serde_json::from_str(out).map_err(|e| e.to_string())
}

fn yaml<T: serde::de::DeserializeOwned>(out: &str) -> Result<T, String> {
    yaml_serde::from_str(out).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_commands_round_trip() {
    let app = TestApp::builder().start().await;
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(&app, &["state-save", demo::WEB, "from the cli", "--json"])
    });
    assert_eq!(code, 0, "{out}{err}");
    let saved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(saved["operation"]["status"], "succeeded");
    assert_eq!(saved["state"]["status"], "available");
    let state = saved["state"]["uuid"].as_str().unwrap().to_owned();

    let (code, out, _) = tokio::task::block_in_place(|| cli(&app, &["state-list", demo::WEB]));
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().starts_with("UUID"), "{out}");
    assert!(
        out.contains("from the cli") && out.contains(&state) && out.contains("available"),
        "{out}"
    );

    let (code, out, err) =
        tokio::task::block_in_place(|| cli(&app, &["state-load", demo::WEB, &state]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied"), "{out}");

    // --no-wait returns the operation at once.
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(
            &app,
            &["state-save", demo::WEB, "no wait", "--no-wait", "--json"],
        )
    });
    assert_eq!(code, 0, "{out}{err}");
    let accepted: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(accepted["status"], "saving");
    let second = accepted["uuid"].as_str().unwrap().to_owned();
    app.wait(accepted["operation"].as_str().unwrap(), &app.member)
        .await;

    let (code, out, err) =
        tokio::task::block_in_place(|| cli(&app, &["state-delete", demo::WEB, &state, &second]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("deleted").count(), 2, "{out}");
    let (_, out, _) =
        tokio::task::block_in_place(|| cli(&app, &["state-list", demo::WEB, "--json"]));
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["values"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero_with_the_message() {
    let app = TestApp::builder().start().await;
    let ghost = uuid::Uuid::new_v4().to_string();
    let (code, _, err) = tokio::task::block_in_place(|| cli(&app, &["state-list", &ghost]));
    assert_ne!(code, 0);
    assert!(
        err.contains("instance_not_found") && err.contains("404"),
        "{err}"
    );
    let (code, _, err) =
        tokio::task::block_in_place(|| cli(&app, &["state-save", demo::STOPPED, "x"]));
    assert_ne!(code, 0);
    assert!(err.contains("instance_not_running"), "{err}");
    // An unreachable gateway is a clear error too.
    let out = std::process::Command::new(snapgate_bin())
        .args(["state-list", demo::WEB, "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the gateway"));
}

/// Each state-changing command sends a fresh `Idempotency-Key`, and when the connection fails
/// after the gateway did the work (a proxy loses the answer), sends it once more with the same
/// key: the gateway answers what it answered the first time, so one state is made (not a 409
/// `duplicate_name`), one apply and one delete run (not a 409 or a 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_retried_with_the_same_key_and_the_work_is_done_once() {
    let app = TestApp::builder().start().await;
    let through = |proxy: &AnswerLosingProxy, args: &[&str]| {
        let out = std::process::Command::new(snapgate_bin())
            .args(args)
            .env("SNAPGATE_URL", &proxy.url)
            .env("SNAPGATE_TOKEN", &app.member)
            .output()
            .expect("run snapgate");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let retried = "retrying with the same Idempotency-Key";

    let proxy = AnswerLosingProxy::start(&app.url).await;
    let (code, out, err) = tokio::task::block_in_place(|| {
        through(&proxy, &["state-save", demo::WEB, "answer lost", "--json"])
    });
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(proxy.lost(), 1, "the proxy lost the save's answer");
    assert!(err.contains(retried), "{err}");
    let saved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(saved["operation"]["status"], "succeeded", "{saved}");
    let state = saved["state"]["uuid"].as_str().unwrap().to_owned();
    let listed = app
        .get(&format!("/v1/instances/{}/states", demo::WEB), &app.member)
        .await;
    let names: Vec<&str> = listed.body["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["answer lost"], "one state");

    let proxy = AnswerLosingProxy::start(&app.url).await;
    let (code, out, err) =
        tokio::task::block_in_place(|| through(&proxy, &["state-load", demo::WEB, &state]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(proxy.lost(), 1);
    assert!(
        err.contains(retried) && out.contains("applied"),
        "{out}{err}"
    );

    let proxy = AnswerLosingProxy::start(&app.url).await;
    let (code, out, err) =
        tokio::task::block_in_place(|| through(&proxy, &["state-delete", demo::WEB, &state]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(proxy.lost(), 1);
    assert!(
        err.contains(retried) && out.contains("deleted"),
        "{out}{err}"
    );
    let listed = app
        .get(&format!("/v1/instances/{}/states", demo::WEB), &app.member)
        .await;
    assert_eq!(listed.body["values"], serde_json::json!([]));
}

/// `--output json` and `yaml` print the API's own records (they decode as `StateList`,
/// `State`, `ScheduleList`), `--json` is `--output json`, and `table` has headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_output_format_of_list_and_show() {
    let app = TestApp::builder().start().await;
    let saved = app.saved(demo::WEB, "formats", &app.member).await;
    let id = saved["uuid"].as_str().unwrap().to_owned();

    let list: StateList = decoded(&app, &["state-list", demo::WEB, "--output", "json"], json);
    assert_eq!(list.values.len(), 1);
    assert_eq!(
        (
            list.values[0].uuid.to_string(),
            list.values[0].name.as_str()
        ),
        (id.clone(), "formats")
    );
    assert_eq!(list.values[0].status, StateStatus::Available);
    let alias: StateList = decoded(&app, &["state-list", demo::WEB, "--json"], json);
    assert_eq!(alias.values, list.values, "--json is --output json");
    let list: StateList = decoded(&app, &["state-list", demo::WEB, "-o", "yaml"], yaml);
    assert_eq!(list.values[0].uuid.to_string(), id);
    let table = decoded(&app, &["state-list", demo::WEB, "-o", "table"], |o| {
        Ok(o.to_owned())
    });
    let mut lines = table.lines();
    assert_eq!(
        lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["UUID", "NAME", "DATE", "STATUS", "SIZE", "KIND"],
        "{table}"
    );
    let row = lines.next().unwrap_or_default();
    assert!(
        row.starts_with(&id) && row.contains("formats") && row.contains("available"),
        "{table}"
    );

    let show: State = decoded(&app, &["state-show", demo::WEB, &id, "-o", "json"], json);
    assert_eq!(
        (show.uuid.to_string(), show.name.as_str()),
        (id.clone(), "formats")
    );
    let show: State = decoded(&app, &["state-show", demo::WEB, &id, "-o", "yaml"], yaml);
    assert_eq!(show.instance_uuid.to_string(), demo::WEB);
    let table = decoded(&app, &["state-show", demo::WEB, &id], |o| Ok(o.to_owned()));
    assert!(table.starts_with("FIELD"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["name", "formats"]),
        "{table}"
    );

    // The schedules' records too.
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(
            &app,
            &[
                "schedule",
                "create",
                demo::WEB,
                "--cron",
                "@daily",
                "--name-pattern",
                "d-%Y%m%d",
            ],
        )
    });
    assert_eq!(code, 0, "{out}{err}");
    let schedules: ScheduleList =
        decoded(&app, &["schedule", "list", demo::WEB, "-o", "yaml"], yaml);
    assert_eq!(schedules.values.len(), 1);
    assert_eq!(schedules.values[0].cron, "@daily");
    let table = decoded(
        &app,
        &[
            "schedule",
            "show",
            demo::WEB,
            &schedules.values[0].uuid.to_string(),
        ],
        |o| Ok(o.to_owned()),
    );
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["cron", "@daily"]),
        "{table}"
    );

    // A save waited for, as YAML: the state as it ended and its operation.
    let outcome: Value = decoded(
        &app,
        &["state-save", demo::WEB, "as-yaml", "-o", "yaml"],
        yaml,
    );
    let state: State = serde_json::from_value(outcome["state"].clone()).unwrap();
    let operation: Operation = serde_json::from_value(outcome["operation"].clone()).unwrap();
    assert_eq!(
        (state.status, operation.state_uuid),
        (StateStatus::Available, state.uuid)
    );
}

/// An API error prints `error: <message> (<code>, HTTP <status>)` and a hint, exits 1, and with
/// `--output json` puts the API's error record on standard output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_error_shows_its_code_and_a_hint() {
    let app = TestApp::builder().start().await;
    let r = app
        .call(
            "PUT",
            &format!("/v1/quotas/{}", demo::TENANT),
            Some(&app.admin),
            Some(serde_json::json!({"states": 1, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.saved(demo::WEB, "the one allowed", &app.member).await;

    let (code, out, err) =
        tokio::task::block_in_place(|| cli(&app, &["state-save", demo::WEB, "one too many"]));
    assert_eq!(code, 1, "{out}{err}");
    let mut lines = err.lines();
    assert_eq!(
        lines.next(),
        Some("error: quota exceeded: 1 of 1 states, 1 more asked (quota_exceeded, HTTP 403)"),
        "{err}"
    );
    let hint = lines.next().unwrap_or_default();
    assert!(
        hint.starts_with("hint: delete states you no longer need")
            && hint.contains(&format!("snapgate state-list {}", demo::WEB))
            && hint.contains("ask your operator to raise the limit"),
        "{err}"
    );

    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(
            &app,
            &["state-save", demo::WEB, "one too many", "-o", "json"],
        )
    });
    assert_eq!(code, 1, "{out}{err}");
    let body: ErrorBody = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (body.error.code.as_str(), &body.error.details["limit"]),
        ("quota_exceeded", &serde_json::json!(1))
    );

    // A state that is not there: its code, and where to look.
    let ghost = uuid::Uuid::new_v4().to_string();
    let (code, _, err) =
        tokio::task::block_in_place(|| cli(&app, &["state-show", demo::WEB, &ghost]));
    assert_eq!(code, 1);
    assert!(
        err.contains("state not found (state_not_found, HTTP 404)")
            && err.contains(&format!(
                "hint: list the instance's states: snapgate state-list {}",
                demo::WEB
            )),
        "{err}"
    );
    // A wrong token.
    let (code, _, err) =
        tokio::task::block_in_place(|| cli_at(&app.url, "not-a-token", &["state-list", demo::WEB]));
    assert_eq!(code, 1);
    assert!(
        err.contains("(unauthenticated, HTTP 401)") && err.contains("hint: give a valid token"),
        "{err}"
    );
}

/// Through a gateway that adds members this client does not know to every record (a newer
/// gateway), every command still decodes its answers and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_records_survive_members_a_newer_gateway_adds() {
    let app = TestApp::builder().start().await;
    let newer = NewerGateway::start(&app.url).await;
    let through = |args: &[&str]| {
        let (code, out, err) =
            tokio::task::block_in_place(|| cli_at(&newer.url, &app.member, args));
        assert_eq!(code, 0, "snapgate {args:?}: {out}{err}");
        out
    };
    let saved: Value = json(&through(&[
        "state-save",
        demo::WEB,
        "from the future",
        "--json",
    ]))
    .unwrap();
    let state = saved["state"]["uuid"].as_str().unwrap().to_owned();
    assert_eq!(saved["operation"]["status"], "succeeded", "{saved}");
    let listed: StateList = json(&through(&["state-list", demo::WEB, "--json"])).unwrap();
    assert_eq!(listed.values.len(), 1);
    let shown: State = yaml(&through(&["state-show", demo::WEB, &state, "-o", "yaml"])).unwrap();
    assert_eq!(shown.name, "from the future");
    assert!(through(&["state-list", demo::WEB]).contains("from the future"));
    through(&["state-load", demo::WEB, &state]);
    through(&[
        "schedule",
        "create",
        demo::WEB,
        "--cron",
        "@daily",
        "--name-pattern",
        "d-%Y",
    ]);
    through(&["schedule", "list", demo::WEB]);
    through(&["state-delete", demo::WEB, &state]);
    // The added members reached the client: the proxy rewrote the answers it decoded, and the
    // records it prints are the ones it knows.
    assert!(
        newer.rewritten() >= 10,
        "{} answers rewritten",
        newer.rewritten()
    );
    assert!(!saved.to_string().contains(ADDED_MEMBER), "{saved}");
    // An error record with an added member still gives its code.
    let ghost = uuid::Uuid::new_v4().to_string();
    let (code, _, err) = tokio::task::block_in_place(|| {
        cli_at(&newer.url, &app.member, &["state-show", demo::WEB, &ghost])
    });
    assert_eq!(code, 1);
    assert!(err.contains("(state_not_found, HTTP 404)"), "{err}");
}

/// What `script(1)` has shown so far of a command it runs on a pseudo-terminal.
struct Screen(Arc<Mutex<Vec<u8>>>);

impl Screen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// On a terminal, waiting shows a spinner with the operation's status and the seconds waited,
/// and clears its line before the outcome. The save's snapshot call is held in a proxy in
/// front of the host, so the operation runs until the test has seen the spinner drawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_a_terminal_shows_a_spinner_then_clears_it() {
    system_libvirtd();
    let dir = tempfile::tempdir().unwrap();
    let node = instances_node_file(dir.path(), 0, 1, demo::TENANT);
    let proxy = HostProxy::start(&dir.path().join("h0.sock"), Path::new(LIBVIRTD_SOCKET));
    let app = TestApp::builder()
        .host("h0", &proxy.uri(&node))
        .start()
        .await;
    let vm = many_uuid(0);
    proxy.hold_calls(SNAPSHOT_CREATE_CALL);

    let command = format!("{} state-save {vm} on-a-terminal", snapgate_bin().display());
    let mut child = std::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("SNAPGATE_URL", &app.url)
        .env("SNAPGATE_TOKEN", &app.member)
        .env_remove("SNAPGATE_TOKEN_FILE")
        .env_remove("SNAPGATE_OUTPUT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running snapgate under script(1)");
    let screen = Screen(Arc::new(Mutex::new(Vec::new())));
    let reader = {
        let (shown, mut stdout) = (screen.0.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    // The spinner is drawn while the snapshot call is held: a few frames with the status.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let text = screen.text();
        if proxy.held_calls() == 1 && text.matches("(running)").count() >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited two minutes for the spinner (held calls {}): {text:?}",
            proxy.held_calls()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.release_calls();
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    reader.join().unwrap();
    let shown = screen.text();
    assert!(status.success(), "{status}: {shown:?}");

    let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let drawn: Vec<&str> = shown
        .split('\r')
        .filter(|f| f.contains("(running)"))
        .collect();
    assert!(drawn.len() >= 3, "{shown:?}");
    for frame in &drawn {
        let frame = frame.trim_start_matches("\x1b[2K");
        assert!(frame.starts_with(frames), "not a spinner frame: {frame:?}");
        assert!(frame.contains("saving (operation "), "{frame:?}");
        // Each frame ends with the seconds waited, e.g. `… (running) 1.3s`.
        let seconds = frame
            .trim_end()
            .strip_suffix('s')
            .and_then(|f| f.rsplit(' ').next());
        assert!(
            seconds.is_some_and(|s| s.parse::<f64>().is_ok()),
            "no seconds at the end of {frame:?}"
        );
    }
    // The line is cleared, then the outcome is printed on it.
    let outcome = shown
        .rfind("\r\x1b[2K")
        .expect("the spinner line is cleared");
    assert!(
        shown[outcome..].contains("on-a-terminal) saved"),
        "{shown:?}"
    );
    // Without a terminal nothing is drawn, however long the wait: the same held save with
    // standard error a pipe, released once the CLI has waited on the operation a few times.
    let waits = |page: &str| {
        metric_sum(
            page,
            "snapgate_http_requests_total",
            &[("route", "/v1/operations/{operation_uuid}/wait")],
        )
    };
    let before = waits(&app.metrics().await);
    proxy.hold_calls(SNAPSHOT_CREATE_CALL);
    let (url, token) = (app.url.clone(), app.member.clone());
    let piped = std::thread::spawn(move || cli_at(&url, &token, &["state-save", &vm, "in-a-pipe"]));
    app.wait_for_metrics("the CLI waiting on the held save", |page| {
        waits(page) >= before + 3.0
    })
    .await;
    proxy.release_calls();
    let (code, out, err) = tokio::task::block_in_place(|| piped.join().unwrap());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(in-a-pipe) saved"), "{out}");
    assert!(
        !err.contains('\r') && !out.contains('\r') && !err.contains("(running)"),
        "{out:?}{err:?}"
    );
}
