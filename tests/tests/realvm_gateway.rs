//! Issue 5 on a real hypervisor: the gateway saves, applies and deletes states with memory of
//! a running QEMU guest on `qemu:///system`, and the guest's counter proves its RAM came back.
//! A raw disk is refused before any work. Fails (never skips) when libvirtd cannot run here.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use snapgate_tests::app::{demo, TestApp};
use snapgate_tests::realvm::{DiskKind, Guest, RealVmEnv, DEFAULT_MEMORY_MIB, LIBVIRT_URI};

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

fn counter(guest: &Guest) -> u64 {
    guest
        .counter()
        .expect("reading the console")
        .expect("a booted guest has printed a counter")
}

/// A gateway whose only host is this machine's QEMU, writing external snapshot files into
/// the guest's directory (QEMU runs as libvirt-qemu and must reach them; the harness removes
/// them with the guest).
async fn gateway_for(guest: &Guest) -> TestApp {
    let state_dir = guest.dir().join("states");
    TestApp::builder()
        .host(HOST, LIBVIRT_URI)
        .config(&format!(
            "[snapshots]\nstate_dir = \"{}\"\n",
            state_dir.display()
        ))
        .start()
        .await
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
    let app = gateway_for(&guest).await;
    let token = &app.member;
    let path = states_path(&guest);

    // Save.
    let before_save = counter(&guest);
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
    let after_save = counter(&guest);

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
    let state_files = guest.dir().join("states").join(&state_id);
    match mode {
        "internal" => {
            assert_eq!(memory_bytes, i64::from(DEFAULT_MEMORY_MIB) << 20, "{state}");
            assert!(size_bytes >= memory_bytes, "{state}");
            assert!(
                !state_files.exists(),
                "an internal snapshot writes no state files"
            );
        }
        _ => {
            let memory_file =
                std::fs::metadata(state_files.join("memory.save")).expect("memory file");
            let overlay = std::fs::metadata(state_files.join("vda.qcow2")).expect("disk overlay");
            assert_eq!(
                memory_bytes,
                memory_file.len() as i64,
                "memory_bytes is the memory file: {state}"
            );
            assert!(
                size_bytes >= memory_bytes && size_bytes <= memory_bytes + overlay.len() as i64,
                "size_bytes is memory plus overlay at save time: {state}, overlay now {}",
                overlay.len()
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
    assert_no_files_under(&state_files);

    drop(app);
    assert_guest_removed(guest);
}

fn assert_no_files_under(dir: &Path) {
    if dir.exists() {
        let left: Vec<_> = std::fs::read_dir(dir)
            .expect("list")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "delete left files: {left:?}");
    }
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
    let app = gateway_for(&guest).await;
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
    let now = counter(&guest);
    blocking(|| guest.wait_counter_at_least(now + 2, STEP_TIMEOUT))
        .expect("the guest keeps counting");

    drop(app);
    assert_guest_removed(guest);
}
