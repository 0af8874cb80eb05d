//! Issue 9 on two real, independent libvirt hosts of this machine: `qemu:///system` and the
//! session daemon of an unprivileged user reached through a remote URI
//! (`qemu+unix:///session?socket=…`), each running tiny TCG guests. One gateway serves both:
//! - states with memory, internal and external, are saved, applied and deleted on both hosts,
//!   by a gateway that cannot see the second host's files at all (its own mount namespace with
//!   a tmpfs over that user's home): every state file is made, measured and removed by libvirt;
//! - the second daemon stopped mid-run: its instances answer 503, the other host's go on, and
//!   everything works again once it is back;
//! - an instance moved between the hosts (undefined on one, defined on the other with the same
//!   disks) is found again; its internal state applies there (the RAM comes back), and an
//!   external one, whose files stayed behind, answers 409 naming the host that holds them.
//!
//! Fails (never skips) when the machine cannot run the hosts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use snapgate_tests::app::{demo, TestApp};
use snapgate_tests::realvm::{
    start_second_host, stop_second_host, DiskKind, Guest, Hypervisor, LibvirtdOutageLock,
    DEFAULT_MEMORY_MIB,
};

const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const RUN_ON_COUNTS: u64 = 8;
const REWIND_SLACK: u64 = 3;

fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

fn boot(host: Hypervisor, label: &str) -> Guest {
    blocking(|| {
        Guest::boot_owned_on(
            host,
            label,
            DiskKind::Qcow2,
            DEFAULT_MEMORY_MIB,
            demo::TENANT,
        )
    })
    .unwrap_or_else(|error| panic!("booting {label} on {host:?}: {error}"))
}

fn name_of(host: Hypervisor) -> &'static str {
    host.label()
}

fn state_dir(host: Hypervisor) -> PathBuf {
    host.state_dir().expect("state directory")
}

/// A gateway with both hosts, each with its state directory.
fn builder() -> snapgate_tests::app::TestAppBuilder {
    let mut builder = TestApp::builder();
    for host in Hypervisor::ALL {
        builder = builder.host_with_state_dir(
            name_of(host),
            &host.uri().expect("host URI"),
            &state_dir(host),
        );
    }
    builder
}

fn state_files(dir: &Path, state: &str) -> Vec<PathBuf> {
    let prefix = format!("{state}.");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

async fn succeeded(app: &TestApp, operation: &Value, what: &str) -> Value {
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
    op
}

/// Saves a state of `mode` and returns (state uuid, counter before, counter after the save).
async fn save(app: &TestApp, guest: &Guest, mode: &str) -> (String, u64, u64) {
    let path = format!("/v1/instances/{}/states", guest.uuid());
    let before = guest.booted_counter();
    let r = app
        .post(
            &path,
            &app.member,
            json!({
                "name": format!("{mode} on {} {}", guest.host().label(), uuid::Uuid::new_v4()),
                "mode": mode,
            }),
        )
        .await;
    assert_eq!(r.status, 202, "save: {}", r.body);
    let state = r.body["uuid"].as_str().expect("state uuid").to_owned();
    succeeded(app, &r.body["operation"], "save").await;
    (state, before, guest.booted_counter())
}

/// Applies `state` and checks the guest's counter went back to the saved range.
async fn apply_and_see_rewind(
    app: &TestApp,
    guest: &Guest,
    state: &str,
    saved: (u64, u64),
    before_apply: u64,
) {
    let path = format!("/v1/instances/{}/states", guest.uuid());
    let mark = guest.console_mark().expect("console mark");
    let r = app
        .post(
            &format!("{path}/apply"),
            &app.member,
            json!({ "uuid": state }),
        )
        .await;
    assert_eq!(r.status, 202, "apply: {}", r.body);
    assert_eq!(r.body["host"], guest.host().label(), "{}", r.body);
    succeeded(app, &r.body["uuid"], "apply").await;
    let resumed = blocking(|| guest.wait_for_rewind(mark, before_apply, STEP_TIMEOUT))
        .expect("the counter goes back after the apply");
    assert!(
        (saved.0..=saved.1 + REWIND_SLACK).contains(&resumed),
        "saved between {} and {}, was at {before_apply}, resumed at {resumed}",
        saved.0,
        saved.1
    );
}

async fn delete(app: &TestApp, guest: &Guest, state: &str) {
    let r = app
        .delete(
            &format!("/v1/instances/{}/states/{state}", guest.uuid()),
            &app.member,
        )
        .await;
    assert_eq!(r.status, 202, "delete: {}", r.body);
    succeeded(app, &r.body["uuid"], "delete").await;
}

/// Save, run on, apply (RAM restored), delete; the state's files are the host's: they
/// appear in its state directory (seen from here, never from the gateway) and are gone after.
async fn cycle(app: &TestApp, guest: &Guest, mode: &str) {
    let dir = state_dir(guest.host());
    let (state, before, after) = save(app, guest, mode).await;
    let got = app
        .get(
            &format!("/v1/instances/{}/states/{state}", guest.uuid()),
            &app.member,
        )
        .await
        .body;
    assert_eq!(got["host"], guest.host().label(), "{got}");
    assert_eq!(got["snapshot_kind"], mode, "{got}");
    if mode == "external" {
        let memory = std::fs::metadata(dir.join(format!("{state}.memory")))
            .expect("the memory file is in the host's state directory");
        assert_eq!(
            got["memory_bytes"].as_i64(),
            Some(memory.len() as i64),
            "measured through libvirt: {got}\ngateway log:\n{}",
            app.log()
        );
        assert!(dir.join(format!("{state}.vda.qcow2")).exists());
    } else {
        assert_eq!(state_files(&dir, &state), Vec::<PathBuf>::new());
    }
    let running_on = blocking(|| guest.wait_counter_at_least(after + RUN_ON_COUNTS, STEP_TIMEOUT))
        .expect("the guest runs on");
    apply_and_see_rewind(app, guest, &state, (before, after), running_on).await;
    delete(app, guest, &state).await;
    assert_eq!(
        guest.snapshot_names().expect("snapshots"),
        Vec::<String>::new()
    );
    assert_eq!(
        state_files(&dir, &state),
        Vec::<PathBuf>::new(),
        "libvirt removed the state's files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_hosts_save_apply_and_delete_through_a_gateway_blind_to_the_second_hosts_files() {
    let system = boot(Hypervisor::System, "both-sys");
    let second = boot(Hypervisor::Second, "both-2nd");
    // The gateway's mount namespace has an empty tmpfs over the second host's user home:
    // its state directory, guests and disks are invisible to the gateway process.
    let hidden = state_dir(Hypervisor::Second)
        .parent()
        .expect("home")
        .to_path_buf();
    let app = builder().hide_dir(&hidden).start().await;

    tokio::join!(
        async {
            cycle(&app, &system, "internal").await;
            cycle(&app, &system, "external").await;
        },
        async {
            cycle(&app, &second, "internal").await;
            cycle(&app, &second, "external").await;
        }
    );
    drop(app);
    blocking(|| system.remove()).expect("removing the system guest");
    blocking(|| second.remove()).expect("removing the second host's guest");
}

/// The second daemon stops mid-run: its instance's state-changing calls answer 503
/// `compute_unavailable` (reads of what the database knows go on), the system host's instance
/// is not affected, and once the daemon is back the gateway reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_host_down_costs_only_its_own_instances() {
    // No other harness guest on the second host is mid-test while its daemon is down.
    let _outage = blocking(|| LibvirtdOutageLock::acquire_for(Hypervisor::Second))
        .expect("second host outage lock");
    let system = boot(Hypervisor::System, "down-sys");
    let second = boot(Hypervisor::Second, "down-2nd");
    let app = builder().start().await;
    let (kept, _, _) = save(&app, &second, "internal").await;
    let second_path = format!("/v1/instances/{}/states", second.uuid());

    blocking(stop_second_host).expect("stopping the second host's libvirtd");
    let refused = app
        .post(&second_path, &app.member, json!({ "name": "while down" }))
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (503, "compute_unavailable"),
        "{}",
        refused.body
    );
    let refused = app
        .post(
            &format!("{second_path}/apply"),
            &app.member,
            json!({ "uuid": kept }),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (503, "compute_unavailable"),
        "{}",
        refused.body
    );
    let listed = app.get(&second_path, &app.member).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["values"][0]["uuid"], kept.as_str());
    // The system host's instance does not notice.
    let (on_system, _, _) = save(&app, &system, "internal").await;

    blocking(start_second_host).expect("starting the second host's libvirtd again");
    let (after, _, _) = save(&app, &second, "internal").await;
    for (guest, state) in [(&second, &after), (&second, &kept), (&system, &on_system)] {
        delete(&app, guest, state).await;
    }
    drop(app);
    blocking(|| system.remove()).expect("removing the system guest");
    blocking(|| second.remove()).expect("removing the second host's guest");
}

/// An instance saved on the system host moves to the second host (undefined with its snapshot
/// metadata, defined there on the same disk, shut off): the gateway finds it there, defines its
/// internal snapshot again from the XML it kept, and the apply brings the saved RAM back. An
/// external state of an instance moving the other way answers 409 naming the host with its
/// files, and stays listed, available.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_moved_between_hosts_is_found_again_and_its_states_follow() {
    let mut moving = boot(Hypervisor::System, "move-int");
    let mut stays_behind = boot(Hypervisor::Second, "move-ext");
    let app = builder().start().await;
    let (internal, before, after) = save(&app, &moving, "internal").await;
    let (external, _, _) = save(&app, &stays_behind, "external").await;
    let last_seen = blocking(|| moving.wait_counter_at_least(after + RUN_ON_COUNTS, STEP_TIMEOUT))
        .expect("the guest runs on");

    blocking(|| moving.move_to(Hypervisor::Second)).expect("moving the guest");
    apply_and_see_rewind(&app, &moving, &internal, (before, after), last_seen).await;
    delete(&app, &moving, &internal).await;
    assert_eq!(
        moving.snapshot_names().expect("snapshots"),
        Vec::<String>::new()
    );

    blocking(|| stays_behind.move_to(Hypervisor::System)).expect("moving the guest");
    let path = format!("/v1/instances/{}/states", stays_behind.uuid());
    let apply = app
        .post(
            &format!("{path}/apply"),
            &app.member,
            json!({ "uuid": external }),
        )
        .await;
    let delete_r = app.delete(&format!("{path}/{external}"), &app.member).await;
    for r in [&apply, &delete_r] {
        assert_eq!(
            (r.status, r.code()),
            (409, "state_on_other_host"),
            "{}",
            r.body
        );
        assert_eq!(r.body["error"]["host"], name_of(Hypervisor::Second));
    }
    let listed = app.get(&path, &app.member).await;
    assert_eq!(listed.body["values"][0]["uuid"], external.as_str());
    assert_eq!(listed.body["values"][0]["status"], "available");
    // The files are still on the second host; the test (not the gateway) clears them up.
    for file in state_files(&state_dir(Hypervisor::Second), &external) {
        std::fs::remove_file(&file).expect("removing a state file the test left");
    }
    drop(app);
    blocking(|| moving.remove()).expect("removing a guest");
    blocking(|| stays_behind.remove()).expect("removing a guest");
}
