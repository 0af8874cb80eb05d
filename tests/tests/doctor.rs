//! `snapgate doctor` against real services: what a working gateway's configuration shows, what
//! a broken one shows (a failure per unreachable thing, each with a hint), and the exit status
//! monitoring relies on. Also `serve --listen`.

use std::process::Output;

use serde_json::Value;
use snapgate_tests::app::{free_port, snapgate_bin, TestApp};

fn doctor(args: &[&str], dir: &std::path::Path) -> (Output, Vec<Value>) {
    let out = std::process::Command::new(snapgate_bin())
        .arg("doctor")
        .args(args)
        .arg("--json")
        .current_dir(dir)
        .env_remove("SNAPGATE_CONFIG")
        .output()
        .expect("run snapgate doctor");
    let checks: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, checks.as_array().unwrap().clone())
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
}

/// The configuration of a running gateway on PostgreSQL, Redis, a test-driver host and static
/// tokens passes every check, and the exit status says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_gateways_configuration_passes_every_check() {
    let app = TestApp::builder().postgres().redis().start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = app.config_path().display().to_string();
    let (out, checks) = tokio::task::block_in_place(|| doctor(&["--config", &config], dir.path()));
    for c in &checks {
        assert_eq!(c["status"], "ok", "{c}");
    }
    assert_eq!(out.status.code(), Some(0));
    for name in ["config", "database", "redis", "auth", "plugins"] {
        check(&checks, name);
    }
    let host = checks
        .iter()
        .find(|c| c["check"].as_str().unwrap().starts_with("host:"))
        .expect("a host check");
    let detail = host["detail"].as_str().unwrap();
    assert!(detail.contains("libvirt "), "{detail}");
    assert!(detail.contains("state directory"), "{detail}");
    assert!(
        check(&checks, "database")["detail"]
            .as_str()
            .unwrap()
            .contains("schema up to date"),
        "{checks:?}"
    );
}

/// Everything unreachable fails, each with what to do; the exit status is 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_configuration_fails_each_unreachable_thing_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    let config = dir.path().join("broken.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[database]
url = "postgres://snapgate@127.0.0.1:{closed}/nothing"
[redis]
url = "redis://127.0.0.1:{closed}"
[[hosts]]
name = "gone"
uri = "qemu+unix:///system?socket={}/no-libvirtd.sock"
[compute]
connect_timeout_secs = 2.0
[auth]
token_file = "{}/missing-tokens.toml"
"#,
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let path = config.display().to_string();
    let (out, checks) = tokio::task::block_in_place(|| doctor(&["--config", &path], dir.path()));
    assert_eq!(out.status.code(), Some(1), "{checks:?}");
    assert_eq!(check(&checks, "config")["status"], "ok");
    for name in ["database", "redis", "host:gone", "auth"] {
        let c = check(&checks, name);
        assert_eq!(c["status"], "fail", "{c}");
        assert!(
            c["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "a failure says what to do: {c}"
        );
    }
    // The text form: one line per check, failures marked.
    let text = std::process::Command::new(snapgate_bin())
        .args(["doctor", "--config", &path])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.lines().any(|l| l.starts_with("FAIL  redis")), "{text}");
}

/// An invalid configuration is one failed check naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("invalid.toml");
    std::fs::write(&config, "[api]\nmax_page_size = 0\n").unwrap();
    let path = config.display().to_string();
    let (out, checks) = tokio::task::block_in_place(|| doctor(&["--config", &path], dir.path()));
    assert_eq!(out.status.code(), Some(1));
    let c = check(&checks, "config");
    assert_eq!(c["status"], "fail");
    assert!(c["detail"].as_str().unwrap().contains("page_size"), "{c}");
}

/// A database the gateway has not migrated yet is a warning (the gateway migrates at start),
/// not a failure: the exit status stays 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_migrations_are_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (out, checks) = tokio::task::block_in_place(|| doctor(&[], dir.path()));
    let db = check(&checks, "database");
    assert_eq!(db["status"], "warn", "{db}");
    assert!(db["detail"].as_str().unwrap().contains("pending"), "{db}");
    assert_eq!(out.status.code(), Some(0), "{checks:?}");
}

/// `serve --listen` wins over the configuration's `listen`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_listen_flag_overrides_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (configured, flagged) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(snapgate_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{flagged}")])
        .current_dir(dir.path())
        .env("SNAPGATE_LISTEN", format!("127.0.0.1:{configured}"))
        .env_remove("SNAPGATE_CONFIG")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..400 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the gateway exited: {status}");
        }
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{flagged}/healthz"))
            .send()
            .await
        {
            up = r.status() == 200;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "the gateway does not answer on the --listen address");
    assert!(
        http.get(format!("http://127.0.0.1:{configured}/healthz"))
            .send()
            .await
            .is_err(),
        "the configured address should not be used"
    );
    child.kill().await.ok();
}
