//! Authentication fails closed, over the real binary: required claims, the Bearer scheme, the
//! tenant-id rule on JWT claims; start-up refusals (hosts without `[auth]`, a weak HS256
//! secret); `snapgate config` never prints a secret; auth without hosts is no demo.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use snapgate_tests::app::{
    demo, demo_host_uri, free_port, jwt_claims, sign_jwt, snapgate_bin, TestApp, JWT_SECRET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_claims_are_required_and_tenant_claims_follow_the_tenant_rule() {
    let app = TestApp::builder().start().await;
    let list = format!("/v1/instances/{}/states", demo::WEB);
    let member = || jwt_claims(demo::TENANT, &["member"], 3600);
    let ok = sign_jwt(&member(), JWT_SECRET);
    assert_eq!(app.get(&list, &ok).await.status, 200, "a complete token");

    let now = chrono::Utc::now().timestamp();
    let mut cases = Vec::new();
    for claim in ["aud", "iss", "exp"] {
        let mut c = member();
        c.as_object_mut().unwrap().remove(claim);
        cases.push((format!("without {claim}"), c));
    }
    let mut c = member();
    c["nbf"] = json!(now + 3600);
    cases.push(("nbf an hour ahead".into(), c));
    for tenant in [
        json!("x".repeat(300)),
        json!("demo\u{200b}"),
        json!("\u{202e}omed"),
        json!(" demo"),
        json!(""),
    ] {
        let mut c = member();
        c["project_id"] = tenant.clone();
        cases.push((format!("tenant claim {tenant}"), c));
    }
    for (what, claims) in cases {
        let r = app.get(&list, &sign_jwt(&claims, JWT_SECRET)).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "unauthenticated"),
            "{what}: {}",
            r.text
        );
    }
    // A 300-character tenant cannot reach the database either way: its quota path is a 400.
    let r = app
        .get(&format!("/v1/quotas/{}", "x".repeat(300)), &app.admin)
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_tenant"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = TestApp::builder().start().await;
    let url = format!("{}/v1/instances/{}/states", app.url, demo::WEB);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = app
            .http
            .get(&url)
            .header("Authorization", format!("{scheme} {}", app.member))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = app
        .http
        .get(&url)
        .header("Authorization", format!("Basic {}", app.member))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_token_listed_by_its_sha256_works() {
    let app = TestApp::builder().start().await;
    // `tenant_admin` is in the token file only as `sha256:<hex>`.
    let r = app
        .get(
            &format!("/v1/instances/{}/states", demo::WEB),
            &app.tenant_admin,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let digest = snapgate_tests::app::sha256_hex(&app.tenant_admin);
    let r = app
        .get(&format!("/v1/instances/{}/states", demo::WEB), &digest)
        .await;
    assert_eq!(r.status, 401, "the digest itself is no token");
}

/// How a `snapgate serve` ended: it exited (code, stderr), or it answered `/healthz`.
enum Start {
    Exited(Option<i32>, String),
    Served,
}

/// Starts `snapgate serve --config <file>` listening on `port` and waits for whichever comes
/// first: the process exits, or it serves.
async fn serve(config: &Path, port: u16) -> Start {
    let dir = config.parent().unwrap();
    let log = dir.join("serve.log");
    let mut child = tokio::process::Command::new(snapgate_bin())
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("SNAPGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("SNAPGATE_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Start::Exited(status.code(), std::fs::read_to_string(&log).unwrap());
        }
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if r.status() == 200 {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
                return Start::Served;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapgate neither exited nor served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `snapgate config --config <file>`: (exit code, stdout, stderr).
fn config_command(config: &Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(snapgate_bin())
        .arg("config")
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .env_remove("SNAPGATE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let data = dir.join("data");
    let path = dir.join("snapgate.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[database]\nurl = \"sqlite://{}/snapgate.db?mode=rwc\"\n{body}",
            data.display(),
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn token_files(data: &Path) -> Vec<String> {
    std::fs::read_dir(data)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".token") || n == "tokens.toml")
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_without_auth_refuse_to_start_naming_the_section() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[hosts]]\nname = \"compute-1\"\nuri = \"{}\"\n",
            demo_host_uri()
        ),
    );
    match serve(&config, free_port()).await {
        Start::Exited(code, stderr) => {
            assert_ne!(code, Some(0), "{stderr}");
            assert!(stderr.contains("[auth] is missing"), "{stderr}");
        }
        Start::Served => panic!("served real hosts with no authentication"),
    }
    assert!(
        token_files(&dir.path().join("data")).is_empty(),
        "no demo token outside demo mode"
    );
    let (code, _, stderr) = config_command(&config, &[]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("[auth] is missing"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_or_empty_hs256_secret_refuses_to_start() {
    for secret in ["", "s3cret", "thirty-one-bytes-is-not-enough"] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(
            dir.path(),
            &format!("[auth.jwt]\nhs256_secret = \"{secret}\"\n"),
        );
        match serve(&config, free_port()).await {
            Start::Exited(code, stderr) => {
                assert_ne!(code, Some(0), "{stderr}");
                assert!(
                    stderr.contains("auth.jwt.hs256_secret"),
                    "{secret:?}: {stderr}"
                );
            }
            Start::Served => panic!("served with the HS256 secret {secret:?}"),
        }
        let (code, _, stderr) = config_command(&config, &[]);
        assert_ne!(code, Some(0), "{secret:?}");
        assert!(stderr.contains("auth.jwt.hs256_secret"), "{stderr}");
    }
}

#[test]
fn config_prints_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "the-hs256-secret-nobody-may-read-0123";
    let config = dir.path().join("snapgate.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"postgres://snapgate:db-password@db.example/snapgate\"\n\
             [auth.jwt]\nhs256_secret = \"{secret}\"\n"
        ),
    )
    .unwrap();
    // The environment's secrets too: Redis's password comes from a variable.
    let (code, out, stderr) = config_command(
        &config,
        &[(
            "SNAPGATE_REDIS__URL",
            "redis://:redis-password@cache.example:6379",
        )],
    );
    assert_eq!(code, Some(0), "{stderr}");
    for leaked in [secret, "db-password", "redis-password"] {
        assert!(!out.contains(leaked), "{leaked} printed:\n{out}");
    }
    assert!(out.contains("hs256_secret = \"<redacted>\""), "{out}");
    assert!(
        out.contains("postgres://snapgate:<redacted>@db.example/snapgate"),
        "{out}"
    );
    assert!(
        out.contains("redis://:<redacted>@cache.example:6379"),
        "{out}"
    );
}

/// Auth configured, no hosts: the demo cloud behind the configured authentication, and no
/// generated tokens (the operator's token file is the only way in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_without_hosts_serves_the_demo_cloud_with_no_generated_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[tokens.\"configured-member-token\"]\ntenant = \"demo\"\nrole = \"member\"\n",
    )
    .unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!("[auth]\ntoken_file = \"{}\"\n", tokens.display()),
    );
    let mut child = tokio::process::Command::new(snapgate_bin())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("SNAPGATE_LISTEN", format!("127.0.0.1:{port}"))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let list = format!("http://127.0.0.1:{port}/v1/instances/{}/states", demo::WEB);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(r) = http
            .get(&list)
            .bearer_auth("configured-member-token")
            .send()
            .await
        {
            break r.status();
        }
        assert!(child.try_wait().unwrap().is_none(), "snapgate exited");
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapgate never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200);
    assert!(
        token_files(&dir.path().join("data")).is_empty(),
        "{:?}",
        token_files(&dir.path().join("data"))
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// One tenant-id rule for every way a tenant id comes in: the quota path, the owner body (and
/// the JWT claim above, and the token file, refused at start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_ids_follow_one_rule_in_paths_and_bodies() {
    let app = TestApp::builder().start().await;
    let limits =
        json!({"states": 1, "state_bytes": -1, "concurrent_operations": 1, "saves_per_hour": -1});
    for encoded in ["de%E2%80%8Bmo", "%E2%80%AEomed", "%20demo", "de%0Amo"] {
        let path = format!("/v1/quotas/{encoded}");
        for (method, body) in [
            ("GET", None),
            ("PUT", Some(limits.clone())),
            ("DELETE", None),
        ] {
            let r = app.call(method, &path, Some(&app.admin), body).await;
            assert_eq!(
                (r.status, r.code()),
                (400, "invalid_tenant"),
                "{method} {path}: {}",
                r.text
            );
        }
    }
    for tenant in ["de\u{200b}mo", "\u{202e}omed", "demo ", &"t".repeat(256)] {
        let r = app
            .call(
                "PUT",
                &format!("/v1/instances/{}/owner", demo::DB),
                Some(&app.admin),
                Some(json!({ "tenant_id": tenant })),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_tenant"),
            "{tenant:?}: {}",
            r.text
        );
    }
    // The longest id the columns hold is accepted everywhere.
    let longest = "t".repeat(255);
    let r = app
        .call(
            "PUT",
            &format!("/v1/quotas/{longest}"),
            Some(&app.admin),
            Some(limits),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_with_a_bad_tenant_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[tokens.\"some-token\"]\ntenant = \"de\u{200b}mo\"\nrole = \"member\"\n",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &format!("[auth]\ntoken_file = \"{}\"\n", tokens.display()),
    );
    match serve(&config, free_port()).await {
        Start::Exited(code, stderr) => {
            assert_ne!(code, Some(0), "{stderr}");
            assert!(stderr.contains("tenant"), "{stderr}");
        }
        Start::Served => panic!("served a token file with an invalid tenant"),
    }
}
