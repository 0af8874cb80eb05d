//! Issue 5 on a real hypervisor: the gateway saves, applies and deletes states with memory of
//! a running QEMU guest on `qemu:///system`, and the guest's counter proves its RAM came back.
//! A raw disk is refused before any work. Fails (never skips) when libvirtd cannot run here.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use snapgate_tests::app::{demo, snapgate_bin, TestApp};
use snapgate_tests::realvm::{
    kill9_libvirtd, process_alive, restart_libvirtd, DiskKind, Guest, Hypervisor,
    LibvirtdOutageLock, RealVmEnv, DEFAULT_MEMORY_MIB, LIBVIRT_URI,
};

const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Half-second counts the guest runs on between save and apply, so the apply visibly rewinds.
const RUN_ON_COUNTS: u64 = 8;
/// The first counter after an apply is the saved one plus one; the console file may lag the
/// guest by a line or two when read around the save.
const REWIND_SLACK: u64 = 3;
const HOST: &str = "local";

/// The harness blocks (virsh, polling the console); keep it off the async workers' backs.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

fn boot(label: &str, disk: DiskKind) -> Guest {
    blocking(|| Guest::boot_owned(label, disk, DEFAULT_MEMORY_MIB, demo::TENANT))
        .unwrap_or_else(|error| panic!("booting {label}: {error}"))
}

/// A gateway whose only host is this machine's QEMU, with the host's test state directory.
async fn gateway() -> TestApp {
    gateway_with(false).await
}

/// [`gateway`], with Redis quotas when `redis`.
async fn gateway_with(redis: bool) -> TestApp {
    let builder = TestApp::builder();
    let builder = if redis { builder.redis() } else { builder };
    builder
        .host_with_state_dir(HOST, LIBVIRT_URI, &state_dir())
        .start()
        .await
}

fn state_dir() -> PathBuf {
    Hypervisor::System
        .state_dir()
        .expect("the system host's state directory")
}

/// Files of one state in a host's state directory (`<state>.memory`, `<state>.<disk>.qcow2`
/// and whatever else libvirt named after them).
fn state_files(dir: &Path, state: &str) -> Vec<PathBuf> {
    let prefix = format!("{state}.");
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn states_path(guest: &Guest) -> String {
    format!("/v1/instances/{}/states", guest.uuid())
}

async fn wait_succeeded(app: &TestApp, operation: &Value, what: &str) {
    let id = operation
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no operation id"));
    let op = app.wait(id, &app.member).await;
    assert_eq!(
        op["status"],
        "succeeded",
        "{what}: {op}\ngateway log:\n{}",
        app.log()
    );
}

/// Save while the guest runs, let it run on, apply, check the counter rewound, delete.
async fn save_apply_delete(mode: &str) {
    let guest = boot(&format!("gw-{mode}"), DiskKind::Qcow2);
    let app = gateway().await;
    let token = &app.member;
    let path = states_path(&guest);

    // An operator's migration downtime limit: a live save lowers it for its last pass only.
    let downtime = |guest: &Guest| {
        guest
            .virsh(&["migrate-getmaxdowntime", guest.name()])
            .expect("reading the downtime limit")
            .trim()
            .to_owned()
    };
    guest
        .virsh(&["migrate-setmaxdowntime", guest.name(), "250"])
        .expect("setting the downtime limit");

    // Save.
    let before_save = guest.booted_counter();
    let r = app
        .post(
            &path,
            token,
            json!({ "name": format!("{mode} while running"), "mode": mode }),
        )
        .await;
    assert_eq!(r.status, 202, "save: {}", r.body);
    let state_id = r.body["uuid"].as_str().expect("state uuid").to_owned();
    wait_succeeded(&app, &r.body["operation"], "save").await;
    let after_save = guest.booted_counter();
    assert_eq!(
        downtime(&guest),
        "250",
        "the domain's own limit is back after the save"
    );

    let state = app.get(&format!("{path}/{state_id}"), token).await;
    assert_eq!(state.status, 200, "{}", state.body);
    let state = state.body;
    assert_eq!(state["status"], "available", "{state}");
    assert_eq!(state["snapshot_kind"], mode, "{state}");
    assert_eq!(state["host"], HOST, "{state}");
    assert_eq!(state["includes_memory"], true, "{state}");
    assert_eq!(state["disk_formats"], json!(["qcow2"]), "{state}");
    assert_eq!(
        guest.snapshot_names().expect("listing snapshots"),
        vec![state_id.clone()],
        "libvirt names the snapshot after the state"
    );
    let memory_bytes = state["memory_bytes"].as_i64().expect("memory_bytes");
    let size_bytes = state["size_bytes"].as_i64().expect("size_bytes");
    let dir = state_dir();
    match mode {
        "internal" => {
            assert_eq!(memory_bytes, i64::from(DEFAULT_MEMORY_MIB) << 20, "{state}");
            assert!(size_bytes >= memory_bytes, "{state}");
            assert_eq!(
                state_files(&dir, &state_id),
                Vec::<PathBuf>::new(),
                "an internal snapshot writes no state files"
            );
        }
        _ => {
            let memory_file =
                std::fs::metadata(dir.join(format!("{state_id}.memory"))).expect("memory file");
            let overlay =
                std::fs::metadata(dir.join(format!("{state_id}.vda.qcow2"))).expect("disk overlay");
            assert_eq!(
                memory_bytes,
                memory_file.len() as i64,
                "memory_bytes is the memory file: {state}"
            );
            // The overlay is measured by what it takes on disk; it only grows after the save.
            let overlay_allocated = overlay.blocks() as i64 * 512;
            assert!(
                size_bytes >= memory_bytes && size_bytes <= memory_bytes + overlay_allocated,
                "size_bytes is memory plus overlay at save time: {state}, overlay now {overlay_allocated}"
            );
        }
    }

    // Run on, then apply: the counter goes back to the saved value.
    let before_apply =
        blocking(|| guest.wait_counter_at_least(after_save + RUN_ON_COUNTS, STEP_TIMEOUT))
            .expect("the guest runs on after the save");
    let mark = guest.console_mark().expect("console mark");
    let r = app
        .post(&format!("{path}/apply"), token, json!({ "uuid": state_id }))
        .await;
    assert_eq!(r.status, 202, "apply: {}", r.body);
    wait_succeeded(&app, &r.body["uuid"], "apply").await;
    let resumed = blocking(|| guest.wait_for_rewind(mark, before_apply, STEP_TIMEOUT))
        .expect("the counter goes back after the apply");
    assert!(
        (before_save..=after_save + REWIND_SLACK).contains(&resumed),
        "saved between {before_save} and {after_save}, ran on to {before_apply}, resumed at {resumed}"
    );
    blocking(|| guest.wait_counter_at_least(resumed + 2, STEP_TIMEOUT))
        .expect("the guest keeps counting");

    // Delete: the state, the libvirt snapshot and its files are gone.
    let r = app.delete(&format!("{path}/{state_id}"), token).await;
    assert_eq!(r.status, 202, "delete: {}", r.body);
    wait_succeeded(&app, &r.body["uuid"], "delete").await;
    let gone = app.get(&format!("{path}/{state_id}"), token).await;
    assert_eq!(
        (gone.status, gone.code()),
        (404, "state_not_found"),
        "{}",
        gone.body
    );
    assert!(guest
        .snapshot_names()
        .expect("listing snapshots")
        .is_empty());
    assert_no_state_files(&dir, &state_id);

    drop(app);
    assert_guest_removed(guest);
}

fn assert_no_state_files(dir: &Path, state: &str) {
    let left = state_files(dir, state);
    assert!(left.is_empty(), "files of state {state} left: {left:?}");
}

fn assert_guest_removed(guest: Guest) {
    let (name, dir) = (guest.name().to_owned(), guest.dir().to_path_buf());
    blocking(|| guest.remove()).expect("removing the guest");
    let env = RealVmEnv::ensure().expect("real-VM environment");
    assert!(
        !env.domain_exists(&name).expect("listing domains"),
        "domain {name} still defined"
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_state_with_memory_saved_applied_deleted() {
    save_apply_delete("internal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_state_with_memory_saved_applied_deleted() {
    save_apply_delete("external").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_disk_is_refused_before_any_work() {
    let guest = boot("gw-raw", DiskKind::Raw);
    let app = gateway().await;
    let path = states_path(&guest);

    let r = app
        .post(
            &path,
            &app.member,
            json!({ "name": "x", "mode": "internal" }),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "unsupported_disk_format"),
        "{}",
        r.body
    );
    assert!(
        r.body.get("operation").is_none(),
        "no operation was started: {}",
        r.body
    );
    let listed = app.get(&path, &app.member).await;
    assert_eq!(listed.body["values"], json!([]), "no state recorded");
    assert!(
        guest
            .snapshot_names()
            .expect("listing snapshots")
            .is_empty(),
        "libvirt did nothing"
    );
    // The guest was never paused for a doomed snapshot: it simply keeps counting.
    let now = guest.booted_counter();
    blocking(|| guest.wait_counter_at_least(now + 2, STEP_TIMEOUT))
        .expect("the guest keeps counting");

    drop(app);
    assert_guest_removed(guest);
}

/// Guest RAM sizes tried in turn until a save is still running when libvirtd dies: more RAM
/// makes the external memory file (and so the save) take longer.
const OUTAGE_MEMORY_MIB: [u32; 3] = [DEFAULT_MEMORY_MIB, 512, 1024];

fn quota_usage(body: &Value) -> Value {
    body["usage"].clone()
}

/// What a killed libvirtd mid-save leaves: a failed operation with a compute error code, the
/// state in `error`, quota units back, no snapshot and no files, the guest still running,
/// and the error state deletable once libvirtd is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libvirtd_killed_during_a_save_leaves_nothing_half_made() {
    // No other harness guest may be mid-test while libvirtd is down.
    let _outage = blocking(LibvirtdOutageLock::acquire).expect("libvirtd outage lock");
    for memory_mib in OUTAGE_MEMORY_MIB {
        if kill_libvirtd_during_save(memory_mib).await {
            return;
        }
        eprintln!("the save of a {memory_mib} MiB guest ended before libvirtd died; retrying with more RAM");
    }
    panic!(
        "every save finished before libvirtd was killed ({OUTAGE_MEMORY_MIB:?} MiB guests): \
         the test could not interrupt one"
    );
}

/// One attempt; false when the save finished before the kill (nothing was proven).
async fn kill_libvirtd_during_save(memory_mib: u32) -> bool {
    let guest =
        blocking(|| Guest::boot_owned("gw-outage", DiskKind::Qcow2, memory_mib, demo::TENANT))
            .unwrap_or_else(|error| panic!("booting a {memory_mib} MiB guest: {error}"));
    let app = gateway_with(true).await;
    let token = &app.member;
    let path = states_path(&guest);
    let quota_path = format!("/v1/quotas/{}", demo::TENANT);
    let quota_before = app.get(&quota_path, token).await;
    assert_eq!(quota_before.status, 200, "{}", quota_before.body);
    let usage_before = quota_usage(&quota_before.body);
    let qemu_pid = guest.qemu_pid().expect("the guest's QEMU pid");

    // External mode: libvirt opens the memory file as the save starts, which tells exactly
    // when the save is under way.
    let r = app
        .post(
            &path,
            token,
            json!({ "name": "interrupted", "mode": "external" }),
        )
        .await;
    assert_eq!(r.status, 202, "save: {}", r.body);
    let state_id = r.body["uuid"].as_str().expect("state uuid").to_owned();
    let op_id = r.body["operation"]
        .as_str()
        .expect("operation id")
        .to_owned();
    let dir = state_dir();
    let memory_file = dir.join(format!("{state_id}.memory"));
    let killed = blocking(|| {
        let deadline = std::time::Instant::now() + STEP_TIMEOUT;
        while !memory_file.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the save never started writing {}",
                memory_file.display()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        kill9_libvirtd().expect("kill -9 libvirtd")
    });
    let op = app.wait(&op_id, token).await;
    // QEMU runs on its own: libvirtd's death must not take the guest with it.
    let qemu_survived = process_alive(qemu_pid);
    blocking(restart_libvirtd).expect("libvirtd comes back");
    assert!(
        qemu_survived,
        "the guest's QEMU (pid {qemu_pid}) died with libvirtd (pid {killed})"
    );

    if op["status"] == "succeeded" {
        // Too late: clean up and let the caller try a slower save.
        let r = app.delete(&format!("{path}/{state_id}"), token).await;
        assert_eq!(r.status, 202, "delete: {}", r.body);
        wait_succeeded(
            &app,
            &r.body["uuid"],
            "delete after a save that won the race",
        )
        .await;
        drop(app);
        assert_guest_removed(guest);
        return false;
    }

    eprintln!("the interrupted save ended: {op}");
    // The operation failed with a compute error that says what happened.
    assert_eq!(op["status"], "failed", "{op}\ngateway log:\n{}", app.log());
    let code = op["error"]["code"].as_str().unwrap_or_default();
    let message = op["error"]["message"].as_str().unwrap_or_default();
    assert!(
        ["compute_unavailable", "compute_error"].contains(&code),
        "a compute error code, got {code:?}: {op}"
    );
    // A fixed sentence per code: no host name, path or libvirt text reaches the client (the
    // detail is in the gateway's log under the operation id).
    assert!(
        !message.is_empty() && !message.contains('/') && !message.contains("libvirt"),
        "a fixed message without server detail: {message:?}"
    );

    // The state records the failure.
    let state = app.get(&format!("{path}/{state_id}"), token).await;
    assert_eq!(state.status, 200, "{}", state.body);
    assert_eq!(state.body["status"], "error", "{}", state.body);
    assert_eq!(state.body["error"]["code"], code, "{}", state.body);

    // The quota units came back: usage is what it was, nothing reserved.
    let quota_after = app.get(&quota_path, token).await;
    assert_eq!(quota_after.status, 200, "{}", quota_after.body);
    let usage_after = quota_usage(&quota_after.body);
    for unit in ["states", "state_bytes", "concurrent_operations"] {
        assert_eq!(
            usage_after[unit]["in_use"], usage_before[unit]["in_use"],
            "{unit} in use changed: before {usage_before}, after {usage_after}"
        );
        assert_eq!(
            usage_after[unit]["reserved"], 0,
            "{unit} still reserved: {usage_after}"
        );
    }

    // Nothing half made: no snapshot, no files, and the guest counts on.
    assert_eq!(
        guest.snapshot_names().expect("listing snapshots"),
        Vec::<String>::new(),
        "libvirt kept a snapshot of the interrupted save"
    );
    // The half-written memory file is removed through libvirt once libvirtd answers again.
    blocking(|| {
        let deadline = std::time::Instant::now() + STEP_TIMEOUT;
        while !state_files(&dir, &state_id).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "files of the interrupted save stay: {:?}\ngateway log:\n{}",
                state_files(&dir, &state_id),
                app.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let now = guest.booted_counter();
    blocking(|| guest.wait_counter_at_least(now + 2, STEP_TIMEOUT))
        .expect("the guest keeps counting after libvirtd came back");

    // The error state can be deleted (the compute backend reconnected).
    let r = app.delete(&format!("{path}/{state_id}"), token).await;
    assert_eq!(r.status, 202, "delete: {}", r.body);
    wait_succeeded(&app, &r.body["uuid"], "delete of the error state").await;
    let gone = app.get(&format!("{path}/{state_id}"), token).await;
    assert_eq!(gone.status, 404, "{}", gone.body);

    drop(app);
    assert_guest_removed(guest);
    true
}

/// Runs the `snapgate` CLI against `app` and returns its stdout; fails on a non-zero exit.
fn cli(app: &TestApp, args: &[&str]) -> String {
    let output = std::process::Command::new(snapgate_bin())
        .args(args)
        .env("SNAPGATE_URL", &app.url)
        .env("SNAPGATE_TOKEN", &app.member)
        .env_remove("SNAPGATE_TOKEN_FILE")
        .output()
        .expect("running snapgate");
    if !output.status.success() {
        let log = app.log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "snapgate {args:?} exited with {}:\nstdout: {}\nstderr: {}\ngateway pid {:?}, {}; its log's end:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            app.pid(),
            app.pid()
                .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
                .and_then(|s| s.lines().find(|l| l.starts_with("State:")).map(str::to_owned))
                .unwrap_or_else(|| "gone".to_owned()),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs the CLI on a pseudo-terminal (util-linux `script`), where it draws its spinner, and
/// returns everything the terminal showed (stdout and stderr together).
fn cli_on_terminal(app: &TestApp, args: &[&str]) -> String {
    let command = std::iter::once(snapgate_bin().display().to_string())
        .chain(args.iter().map(|a| {
            assert!(
                a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "quote-free arguments only: {a}"
            );
            a.to_string()
        }))
        .collect::<Vec<_>>()
        .join(" ");
    let output = std::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("SNAPGATE_URL", &app.url)
        .env("SNAPGATE_TOKEN", &app.member)
        .env_remove("SNAPGATE_TOKEN_FILE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running snapgate under script(1)");
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "snapgate {args:?} on a terminal exited with {}: {shown}",
        output.status
    );
    shown
}

fn cli_json(app: &TestApp, args: &[&str]) -> Value {
    let out = blocking(|| cli(app, args));
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("snapgate {args:?}: not JSON ({e}): {out}"))
}

/// The seed's CLI on a real guest: save (waits), list, load (the counter rewinds), delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_saves_lists_loads_and_deletes_a_real_guest() {
    let guest = boot("gw-cli", DiskKind::Qcow2);
    let app = gateway().await;
    let vm = guest.uuid().to_string();

    let before_save = guest.booted_counter();
    let saved = cli_json(&app, &["state-save", &vm, "from the cli", "--json"]);
    let after_save = guest.booted_counter();
    assert_eq!(saved["operation"]["status"], "succeeded", "{saved}");
    assert_eq!(saved["state"]["status"], "available", "{saved}");
    let state_id = saved["state"]["uuid"]
        .as_str()
        .expect("state uuid")
        .to_owned();

    let listed = cli_json(&app, &["state-list", &vm, "--json"]);
    let ids: Vec<&str> = listed["values"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(|s| s["uuid"].as_str())
        .collect();
    assert_eq!(ids, vec![state_id.as_str()], "{listed}");
    // The human table names the state too.
    let table = blocking(|| cli(&app, &["state-list", &vm]));
    assert!(table.contains("from the cli"), "{table}");

    let before_load =
        blocking(|| guest.wait_counter_at_least(after_save + RUN_ON_COUNTS, STEP_TIMEOUT))
            .expect("the guest runs on after the save");
    let mark = guest.console_mark().expect("console mark");
    // On a terminal, the ~2 s revert shows a spinner with the operation's status and elapsed
    // time, cleared at the end, then the outcome.
    let shown = blocking(|| cli_on_terminal(&app, &["state-load", &vm, &state_id]));
    let spinner_frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    assert!(
        shown.contains(spinner_frames) && shown.contains("(running)"),
        "no spinner with the operation's status: {shown:?}"
    );
    // Each frame ends with the elapsed seconds, e.g. `… (running) 1.3s`.
    assert!(
        shown
            .split('\r')
            .filter_map(|frame| frame.trim_end().strip_suffix('s'))
            .filter_map(|frame| frame.rsplit(' ').next())
            .any(|seconds| seconds.parse::<f64>().is_ok()),
        "no elapsed time: {shown:?}"
    );
    assert!(
        shown.contains("\r\x1b[2K"),
        "the spinner line is not cleared: {shown:?}"
    );
    assert!(shown.contains("applied"), "{shown:?}");
    let resumed = blocking(|| guest.wait_for_rewind(mark, before_load, STEP_TIMEOUT))
        .expect("the counter goes back after state-load");
    assert!(
        (before_save..=after_save + REWIND_SLACK).contains(&resumed),
        "saved between {before_save} and {after_save}, ran on to {before_load}, resumed at {resumed}"
    );

    blocking(|| cli(&app, &["state-delete", &vm, &state_id]));
    let listed = cli_json(&app, &["state-list", &vm, "--json"]);
    assert_eq!(listed["values"], json!([]), "{listed}");
    assert!(guest
        .snapshot_names()
        .expect("listing snapshots")
        .is_empty());

    drop(app);
    assert_guest_removed(guest);
}
