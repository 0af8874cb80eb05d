//! The README's first command: `snapgate serve` with no configuration at all serves the demo
//! cloud on SQLite with generated tokens (0600 files in a 0700 directory; the demo tenant's
//! admin, member and reader, and the cloud operator), from any working directory.

use std::time::Duration;

use snapgate_tests::app::{demo, free_port, snapgate_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = tokio::process::Command::new(snapgate_bin())
        .arg("serve")
        .current_dir(dir.path())
        // Only the listen address is moved off the default port so parallel runs do not clash.
        .env("SNAPGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("SNAPGATE_CONFIG")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false)
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        up,
        "the gateway did not become ready on its embedded defaults"
    );
    let data = dir.path().join("data");
    assert!(
        data.join("snapgate.db").exists(),
        "SQLite database in ./data"
    );
    let member = std::fs::read_to_string(data.join("member.token")).expect("member token written");
    let admin = std::fs::read_to_string(data.join("admin.token")).expect("admin token written");
    let operator =
        std::fs::read_to_string(data.join("operator.token")).expect("operator token written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |name: &str| {
            std::fs::metadata(data.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(""), 0o700, "the data directory");
        for name in [
            "tokens.toml",
            "admin.token",
            "member.token",
            "reader.token",
            "operator.token",
        ] {
            assert_eq!(mode(name), 0o600, "{name}");
        }
    }
    // The web console is served with no extra step, and its sign-in form names the demo
    // tokens' directory (the default `data_dir`, relative: `./data` on the page).
    let page = http.get(format!("{url}/ui")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("name=\"snapgate-demo-tokens\" content=\"data\""),
        "{page}"
    );
    // The token file lists digests, never the tokens.
    let listed = std::fs::read_to_string(data.join("tokens.toml")).unwrap();
    for token in [&member, &admin, &operator] {
        assert!(!listed.contains(token.trim()), "{listed}");
    }

    // The walk-through works with the generated member token.
    let r = http
        .post(format!("{url}/v1/instances/{}/states", demo::WEB))
        .bearer_auth(member.trim())
        .json(&serde_json::json!({ "name": "demo" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .get(format!("{url}/v1/quotas/demo"))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The demo tenant's admin stays in its tenant; the operator token crosses tenants.
    let nova_quota = format!("{url}/v1/quotas/{}", demo::NOVA_TENANT);
    let r = http
        .get(&nova_quota)
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(&nova_quota)
        .bearer_auth(operator.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("member.token"),
        "the log says where the tokens are: {log}"
    );
}

#[test]
fn migrate_command_creates_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let out = std::process::Command::new(snapgate_bin())
        .arg("migrate")
        .env(
            "SNAPGATE_DATABASE__URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .env("SNAPGATE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The tables exist: the repository's queries over each of them succeed.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use snapgate_core::ports::Repository;
        let repo = snapgate_store::SeaRepository::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        repo.tenant_totals().await.expect("instance_states");
        repo.unfinished_operations().await.expect("operations");
        repo.quota_limits("t").await.expect("quota_limits");
        repo.instance_owner(uuid::Uuid::nil())
            .await
            .expect("instance_owners");
        repo.list_decisions(&Default::default())
            .await
            .expect("policy_decisions");
    });
    // A bad configuration is refused with the key it concerns.
    let out = std::process::Command::new(snapgate_bin())
        .arg("migrate")
        .env("SNAPGATE_DATABASE__URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("database.url"));
}
