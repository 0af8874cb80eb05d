//! The out-of-tree walk-through of docs/PLUGINS.md, step by step, in a temporary directory
//! outside the repository: `snapgate plugin new` → `cargo test` → `cargo build --release
//! --target wasm32-wasip2` → `plugin check` → `plugin eval` → `plugin test` → loaded into a
//! gateway (pinned by sha256, its path relative to the config file) → a save denied with the
//! plugin's reason.
//!
//! The crate's build shares `target/plugin-authoring` (CARGO_TARGET_DIR) across runs so its
//! dependencies compile once; cargo runs offline when they are already in its cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use snapgate_tests::app::{demo, repo_root, snapgate_bin, TestApp};

struct Ran {
    code: i32,
    out: String,
    err: String,
}

fn run(dir: &Path, program: &Path, args: &[&str], target_dir: &Path, offline: bool) -> Ran {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir);
    if offline {
        cmd.env("CARGO_NET_OFFLINE", "true");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    Ran {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_walk_through_works_outside_the_repository() {
    let work = tempfile::tempdir().expect("temp dir");
    assert!(
        !work.path().starts_with(repo_root()),
        "the walk-through must run outside the repository"
    );
    let target_dir = repo_root().join("target/plugin-authoring");
    let snapgate = snapgate_bin();
    let cargo = PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));

    // 1. new: prints where the component will land.
    let new = tokio::task::block_in_place(|| {
        run(
            work.path(),
            &snapgate,
            &["plugin", "new", "no-big-saves"],
            &target_dir,
            false,
        )
    });
    assert_eq!(new.code, 0, "{}{}", new.out, new.err);
    let krate = work.path().join("no-big-saves");
    let cargo_toml = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(!cargo_toml.contains("workspace = true"), "{cargo_toml}");
    let wasm = PathBuf::from(
        new.out
            .lines()
            .find_map(|l| l.strip_prefix("the component: "))
            .unwrap_or_else(|| panic!("no component path in {}", new.out)),
    );
    assert_eq!(
        wasm,
        target_dir.join("wasm32-wasip2/release/no_big_saves.wasm")
    );
    let _ = std::fs::remove_file(&wasm);

    // Offline when the locked dependencies are in cargo's cache (the registries are reachable
    // anyway).
    let offline = tokio::task::block_in_place(|| {
        run(&krate, &cargo, &["fetch", "--offline"], &target_dir, false).code == 0
    });

    // 2. The unit tests, natively; then the component.
    let test = tokio::task::block_in_place(|| run(&krate, &cargo, &["test"], &target_dir, offline));
    assert_eq!(test.code, 0, "{}{}", test.out, test.err);
    assert!(
        test.out.contains("big_saves_need_a_big_name ... ok"),
        "{}",
        test.out
    );
    let build = tokio::task::block_in_place(|| {
        run(
            &krate,
            &cargo,
            &["build", "--release", "--target", "wasm32-wasip2"],
            &target_dir,
            offline,
        )
    });
    assert_eq!(build.code, 0, "{}", build.err);
    assert!(wasm.is_file(), "{} was not built", wasm.display());
    let wasm_arg = wasm.to_str().unwrap();

    // 3. check.
    let check = tokio::task::block_in_place(|| {
        run(
            &krate,
            &snapgate,
            &["plugin", "check", wasm_arg],
            &target_dir,
            false,
        )
    });
    assert_eq!(check.code, 0, "{}{}", check.out, check.err);
    let info: Value = serde_json::from_str(&check.out).unwrap();
    assert_eq!(info["world"], "snapgate:policy/policy@0.2.0");
    let sha256 = info["sha256"].as_str().unwrap().to_owned();

    // 4. eval: exit 1 on deny (inline config), 0 on allow (config from a file).
    let eval = |config: &str| {
        tokio::task::block_in_place(|| {
            run(
                &krate,
                &snapgate,
                &[
                    "plugin",
                    "eval",
                    wasm_arg,
                    "--input",
                    "examples/save-request.json",
                    "--config",
                    config,
                    "--deadline-ms",
                    "1000",
                ],
                &target_dir,
                false,
            )
        })
    };
    let denied = eval(r#"{"max_memory_mib": 64}"#);
    assert_eq!(denied.code, 1, "{}{}", denied.out, denied.err);
    let report: Value = serde_json::from_str(&denied.out).unwrap();
    assert_eq!(report["code"], "too_much_memory");
    std::fs::write(krate.join("roomy.json"), r#"{"max_memory_mib": 1024}"#).unwrap();
    let allowed = eval("@roomy.json");
    assert_eq!(allowed.code, 0, "{}{}", allowed.out, allowed.err);

    // 5. test: the generated cases all pass.
    let cases = tokio::task::block_in_place(|| {
        run(
            &krate,
            &snapgate,
            &[
                "plugin",
                "test",
                "cases.json",
                "--plugin",
                wasm_arg,
                "--deadline-ms",
                "1000",
            ],
            &target_dir,
            false,
        )
    });
    assert_eq!(cases.code, 0, "{}{}", cases.out, cases.err);
    assert!(cases.out.contains("6 passed, 0 failed"), "{}", cases.out);

    // 6. Into a gateway: the file beside its config, pinned; demo-web has 512 MiB.
    let plugin_toml = format!(
        "[policy]\ndeadline_ms = 1000\n\
         [[policy.plugins]]\nname = \"no-big-saves\"\nfile = \"plugins/no_big_saves.wasm\"\n\
         sha256 = \"{sha256}\"\nconfig = '{{\"max_memory_mib\": 256}}'\noperations = [\"save\"]\n"
    );
    let app = TestApp::builder()
        .file("plugins/no_big_saves.wasm", &std::fs::read(&wasm).unwrap())
        .config(&plugin_toml)
        .start()
        .await;
    let r = app.save(demo::WEB, "nightly", &app.member).await;
    assert_eq!((r.status, r.code()), (403, "policy_denied"), "{}", r.body);
    assert_eq!(r.body["error"]["plugin"], "no-big-saves");
    assert_eq!(r.body["error"]["policy_code"], "too_much_memory");
    let reason = r.body["error"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("demo-web has 512 MiB of memory, over the 256 MiB"),
        "{reason}"
    );
    let r = app
        .post(
            &format!("/v1/instances/{}/states", demo::WEB),
            &app.member,
            json!({"name": "big-nightly"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
}
