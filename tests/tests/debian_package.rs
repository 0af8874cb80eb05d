//! The Debian package as an operator meets it: built by `scripts/package-deb.sh` (here around
//! the debug binary), installed with `dpkg -i`, the gateway started the way its systemd unit
//! starts it (this machine's PID 1 is not systemd: the unit's `ExecStart` runs as the unit's
//! `User`, and the unit file itself is checked by `systemd-analyze verify` and scored by
//! `systemd-analyze security --offline`), a state saved through it, an upgrade over itself that
//! keeps the configuration and the data, then removal and purge.
//!
//! It installs into the machine's own `/usr/bin` and `/etc`: one test, so nothing else races it.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use snapgate_tests::app::{demo, free_port, repo_root, sha256_hex, snapgate_bin};

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn package(version: &str, out: &Path) -> String {
    sh(Command::new(repo_root().join("scripts/package-deb.sh"))
        .args(["--binary", snapgate_bin().to_str().unwrap()])
        .args(["--version", version, "--uncompressed", "--out"])
        .arg(out))
    .trim()
    .to_owned()
}

/// The unit's `ExecStart` command line.
fn exec_start() -> Vec<String> {
    let unit = std::fs::read_to_string("/lib/systemd/system/snapgate.service").unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    line.split_whitespace().map(str::to_owned).collect()
}

struct Running(tokio::process::Child);

impl Running {
    /// Starts `ExecStart` as the unit's user in its working directory, and waits for health.
    async fn start(port: u16) -> Running {
        let cmd = exec_start();
        let child = tokio::process::Command::new("setpriv")
            .args([
                "--reuid=snapgate",
                "--regid=snapgate",
                "--init-groups",
                "--",
            ])
            .args(&cmd)
            .current_dir("/var/lib/snapgate")
            .env_clear()
            .env("RUST_LOG", "info")
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the packaged gateway");
        let mut running = Running(child);
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Some(status) = running.0.try_wait().unwrap() {
                panic!("the packaged gateway exited: {status}");
            }
            if let Ok(r) = http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
            {
                if r.status() == 200 {
                    return running;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the packaged gateway did not become ready");
    }

    async fn stop(mut self) {
        let pid = self.0.id().unwrap();
        sh(Command::new("kill").args(["-TERM", &pid.to_string()]));
        let status = self.0.wait().await.unwrap();
        assert!(
            status.success(),
            "SIGTERM ends the gateway cleanly: {status}"
        );
    }
}

fn purge() {
    let _ = Command::new("dpkg").args(["--purge", "snapgate"]).output();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_serve_upgrade_and_remove_the_package() {
    let work = tempfile::tempdir().unwrap();
    purge();
    let first = tokio::task::block_in_place(|| package("0.1.0~test1", work.path()));
    let second = tokio::task::block_in_place(|| package("0.1.0~test2", work.path()));

    // Install: the files, a conffile, the system user, the state directory.
    sh(Command::new("dpkg").args(["-i", &first]));
    for file in [
        "/usr/bin/snapgate",
        "/lib/systemd/system/snapgate.service",
        "/etc/snapgate/snapgate.toml",
        "/usr/share/man/man1/snapgate.1.gz",
        "/usr/share/man/man1/snapgate-serve.1.gz",
        "/usr/share/bash-completion/completions/snapgate",
    ] {
        assert!(Path::new(file).exists(), "{file} installed");
    }
    let conffiles = sh(Command::new("dpkg-query").args(["-W", "-f", "${Conffiles}", "snapgate"]));
    assert!(
        conffiles.contains("/etc/snapgate/snapgate.toml"),
        "{conffiles}"
    );
    let user = sh(Command::new("getent").args(["passwd", "snapgate"]));
    assert!(user.trim_end().ends_with("/usr/sbin/nologin"), "{user}");
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    assert!(uid < 1000, "a system user: {user}");
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let data = std::fs::metadata("/var/lib/snapgate").unwrap();
        assert_eq!(data.uid(), uid);
        assert_eq!(data.permissions().mode() & 0o777, 0o750);
        let config = std::fs::metadata("/etc/snapgate/snapgate.toml").unwrap();
        assert_eq!(
            config.permissions().mode() & 0o777,
            0o640,
            "it may hold secrets"
        );
    }
    let example = std::fs::read_to_string("/etc/snapgate/snapgate.toml").unwrap();
    assert!(
        example.contains("data_dir = \"/var/lib/snapgate\""),
        "{example}"
    );

    // The unit: valid, and hardened (systemd's own exposure score, "OK" is below 3).
    sh(Command::new("systemd-analyze")
        .args(["verify", "/lib/systemd/system/snapgate.service"])
        .env("SYSTEMD_LOG_LEVEL", "err"));
    let score = sh(Command::new("systemd-analyze").args([
        "security",
        "--offline=yes",
        "--threshold=30",
        "/lib/systemd/system/snapgate.service",
    ]));
    assert!(score.contains("OK"), "{score}");

    // Point it at a test-driver host and a token file, as an operator edits the conffile.
    let (port, admin_port) = (free_port(), free_port());
    let token = format!("pkg-{}", uuid::Uuid::new_v4());
    std::fs::copy(
        repo_root().join("deploy/demo-node.xml"),
        "/var/lib/snapgate/node.xml",
    )
    .unwrap();
    sh(Command::new("chown").args(["snapgate:snapgate", "/var/lib/snapgate/node.xml"]));
    std::fs::write(
        "/etc/snapgate/tokens.toml",
        format!(
            "[tokens.\"sha256:{}\"]\ntenant = \"{}\"\nrole = \"member\"\n",
            sha256_hex(&token),
            demo::TENANT
        ),
    )
    .unwrap();
    std::fs::write(
        "/etc/snapgate/snapgate.toml",
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"/var/lib/snapgate\"\n\
             [[hosts]]\nname = \"pkg\"\nuri = \"test:///var/lib/snapgate/node.xml\"\n\
             state_dir = \"/var/lib/snapgate/states\"\n\
             [auth]\ntoken_file = \"/etc/snapgate/tokens.toml\"\n\
             [api]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n"
        ),
    )
    .unwrap();
    sh(Command::new("chgrp").args(["snapgate", "/etc/snapgate/tokens.toml"]));
    sh(Command::new("chmod").args(["0640", "/etc/snapgate/tokens.toml"]));

    // Serve as the unit does; save a state through it.
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/v1/instances/{}/states", demo::WEB);
    let gateway = Running::start(port).await;
    let r = http
        .post(&base)
        .bearer_auth(&token)
        .json(&json!({"name": "packaged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    let op = body["operation"].as_str().unwrap().to_owned();
    let ended: Value = http
        .get(format!(
            "http://127.0.0.1:{port}/v1/operations/{op}/wait?timeout=30"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ended["status"], "succeeded", "{ended}");
    gateway.stop().await;
    assert!(
        Path::new("/var/lib/snapgate/snapgate.db").exists(),
        "the database lives in the state directory"
    );

    // Upgrade over itself: the edited conffile and the data stay.
    sh(Command::new("dpkg").args(["-i", "--force-confold", &second]));
    let version = sh(Command::new("dpkg-query").args(["-W", "-f", "${Version}", "snapgate"]));
    assert_eq!(version, "0.1.0~test2");
    let kept = std::fs::read_to_string("/etc/snapgate/snapgate.toml").unwrap();
    assert!(
        kept.contains(&format!("127.0.0.1:{port}")),
        "conffile kept: {kept}"
    );
    let gateway = Running::start(port).await;
    let listed: Value = http
        .get(&base)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"packaged"),
        "the state survived the upgrade: {listed}"
    );
    gateway.stop().await;

    // Remove keeps configuration and data; purge removes both.
    sh(Command::new("dpkg").args(["-r", "snapgate"]));
    assert!(!Path::new("/usr/bin/snapgate").exists());
    assert!(Path::new("/etc/snapgate/snapgate.toml").exists());
    assert!(Path::new("/var/lib/snapgate/snapgate.db").exists());
    sh(Command::new("dpkg").args(["--purge", "snapgate"]));
    assert!(!Path::new("/etc/snapgate").exists());
    assert!(!Path::new("/var/lib/snapgate").exists());
}
