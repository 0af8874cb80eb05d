//! Safer plugin loading: files relative to the config file, sha256 pins (at start, on reload,
//! and in `snapgate config`), `snapgate config` loading every plugin, and plugins scoped to
//! tenants.

use serde_json::json;
use snapgate_tests::app::{demo, repo_root, snapgate_bin, TestApp};

fn dist(name: &str) -> Vec<u8> {
    let path = repo_root()
        .join("plugins/dist")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/build-plugins.sh; the test command does)",
            path.display()
        )
    })
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

const WRONG_PIN: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A relative `file` next to the config file, pinned: loads wherever the gateway starts (its
/// working directory is the test's, not the config's). demo-web has 512 MiB.
fn memory_cap_entry(pin: &str) -> String {
    format!(
        "[policy]\ndeadline_ms = 1000\n\
         [[policy.plugins]]\nname = \"memory-cap\"\nfile = \"plugins/memory-cap.wasm\"\n\
         sha256 = \"{pin}\"\nconfig = '{{\"max_memory_mib\": 256}}'\noperations = [\"save\"]\n"
    )
}

fn snapgate(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(snapgate_bin())
        .args(args)
        .output()
        .expect("run snapgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_plugins_load_beside_the_config_and_a_changed_file_is_refused() {
    let wasm = dist("memory-cap");
    let mut app = TestApp::builder()
        .file("plugins/memory-cap.wasm", &wasm)
        .config(&memory_cap_entry(&sha256(&wasm)))
        .start()
        .await;
    let r = app.save(demo::WEB, "nightly", &app.member).await;
    assert_eq!(
        r.body["error"]["policy_code"], "memory_over_cap",
        "{}",
        r.body
    );
    let chain = app.get("/v1/policy/plugins", &app.admin).await;
    let file = chain.body["plugins"][0]["file"]
        .as_str()
        .unwrap()
        .to_owned();
    let config_dir = app.data_dir.parent().unwrap().to_path_buf();
    assert_eq!(
        std::path::Path::new(&file),
        config_dir.join("plugins/memory-cap.wasm")
    );

    // `snapgate config` loads it too, and says so.
    let config_path = config_dir.join("snapgate.toml");
    let config_arg = config_path.to_str().unwrap();
    let (code, _, err) =
        tokio::task::block_in_place(|| snapgate(&["config", "--config", config_arg]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("plugin memory-cap:") && err.contains("loads (contract 0.2.0"),
        "{err}"
    );

    // The file changes under the pin: a reload is refused, naming both digests, and the old
    // chain keeps serving.
    std::fs::write(
        config_dir.join("plugins/memory-cap.wasm"),
        dist("test-always-deny"),
    )
    .unwrap();
    let r = app.post("/v1/policy/reload", &app.admin, json!({})).await;
    assert_ne!(r.status, 200, "{}", r.text);
    assert!(
        r.text.contains("memory-cap") && r.text.contains("the config pins"),
        "{}",
        r.text
    );
    let r = app.save(demo::WEB, "nightly", &app.member).await;
    assert_eq!(
        r.body["error"]["policy_code"], "memory_over_cap",
        "{}",
        r.body
    );

    // `snapgate config` and a start refuse it too.
    let (code, _, err) =
        tokio::task::block_in_place(|| snapgate(&["config", "--config", config_arg]));
    assert_ne!(code, 0);
    assert!(err.contains("the config pins"), "{err}");
    app.stop().await;
    let (code, _, err) =
        tokio::task::block_in_place(|| snapgate(&["serve", "--config", config_arg]));
    assert_ne!(
        code, 0,
        "a gateway started with a plugin that is not the pinned one"
    );
    assert!(
        err.contains("plugin memory-cap") && err.contains("the config pins"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapgate_config_fails_on_a_plugin_that_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("snapgate.toml");
    let arg = config.to_str().unwrap();
    // A missing file.
    std::fs::write(&config, memory_cap_entry(WRONG_PIN)).unwrap();
    let (code, _, err) = tokio::task::block_in_place(|| snapgate(&["config", "--config", arg]));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("plugin memory-cap") && err.contains("plugins/memory-cap.wasm"),
        "{err}"
    );
    // Present but not the pinned build.
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::write(
        dir.path().join("plugins/memory-cap.wasm"),
        dist("memory-cap"),
    )
    .unwrap();
    let (code, _, err) = tokio::task::block_in_place(|| snapgate(&["config", "--config", arg]));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains(WRONG_PIN) && err.contains("the config pins"),
        "{err}"
    );
    // Not a plugin.
    std::fs::write(
        &config,
        "[[policy.plugins]]\nname = \"wrong\"\nfile = \"plugins/wrong.wasm\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("plugins/wrong.wasm"),
        dist("test-wrong-exports"),
    )
    .unwrap();
    let (code, _, err) = tokio::task::block_in_place(|| snapgate(&["config", "--config", arg]));
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("does not implement snapgate:policy"), "{err}");
    // A malformed pin is a config error naming its key.
    std::fs::write(
        &config,
        "[[policy.plugins]]\nname = \"x\"\nfile = \"plugins/wrong.wasm\"\nsha256 = \"abc\"\n",
    )
    .unwrap();
    let (code, _, err) = tokio::task::block_in_place(|| snapgate(&["config", "--config", arg]));
    assert_ne!(code, 0);
    assert!(
        err.contains("policy.plugins") && err.contains("64 hex digits"),
        "{err}"
    );
}

/// A stricter policy for one tenant (`tenants`), another for everyone else
/// (`exclude_tenants`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_scoped_to_tenants_see_only_their_requests() {
    let chain = format!(
        "[policy]\ndeadline_ms = 1000\n\
         [[policy.plugins]]\nname = \"demo-only\"\nfile = \"plugins/memory-cap.wasm\"\n\
         config = '{{\"max_memory_mib\": 1}}'\ntenants = [\"{demo}\"]\n\
         [[policy.plugins]]\nname = \"all-but-demo\"\nfile = \"plugins/always-deny.wasm\"\n\
         exclude_tenants = [\"{demo}\"]\n",
        demo = demo::TENANT
    );
    let app = TestApp::builder()
        .file("plugins/memory-cap.wasm", &dist("memory-cap"))
        .file("plugins/always-deny.wasm", &dist("test-always-deny"))
        .config(&chain)
        .start()
        .await;
    let r = app.save(demo::WEB, "mine", &app.member).await;
    assert_eq!(r.body["error"]["plugin"], "demo-only", "{}", r.body);
    let r = app.save(demo::NOVA_APP, "theirs", &app.other_member).await;
    assert_eq!(r.body["error"]["plugin"], "all-but-demo", "{}", r.body);
    // The scoped-out plugin is not even run (nor recorded).
    let d = app.get("/v1/policy/decisions", &app.admin).await;
    let seen: Vec<(String, String)> = d.body["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["tenant"].as_str().unwrap_or_default().to_owned(),
                v["plugin"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.contains(&(demo::TENANT.to_owned(), "demo-only".to_owned())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(demo::NOVA_TENANT.to_owned(), "all-but-demo".to_owned())),
        "{seen:?}"
    );
}
