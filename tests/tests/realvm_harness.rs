//! Proves the real-hypervisor harness itself on `qemu:///system`: a guest boots and counts,
//! snapshots with memory taken with plain virsh bring its RAM back on revert, and nothing is
//! left behind. If libvirtd cannot run here these tests fail; they never skip.
//!
//! Guests run under TCG on a small, often busy machine: timeouts are generous.

use std::path::Path;
use std::time::Duration;

use snapgate_tests::realvm::{DiskKind, Guest, RealVmEnv, DEFAULT_MEMORY_MIB};

const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// The guest prints two counters a second; this many more after a save make the revert
/// visibly go back in time.
const RUN_ON_COUNTS: u64 = 8;
/// The first counter after a revert is the saved one plus one; the console file may lag the
/// guest by a line or two when we read it around the save.
const REWIND_SLACK: u64 = 3;

fn boot(label: &str, disk: DiskKind) -> Guest {
    Guest::boot(label, disk, DEFAULT_MEMORY_MIB)
        .unwrap_or_else(|error| panic!("booting {label}: {error}"))
}

/// Asserts that libvirt knows no domain `name` and that `dir` is gone.
fn assert_left_nothing(name: &str, dir: &Path) {
    let env = RealVmEnv::ensure().expect("real-VM environment");
    assert!(
        !env.domain_exists(name).expect("listing domains"),
        "domain {name} still defined"
    );
    assert!(
        !dir.exists(),
        "guest directory {} still exists",
        dir.display()
    );
}

#[test]
fn guest_boots_counts_and_removal_leaves_nothing() {
    let guest = boot("boot", DiskKind::Qcow2);
    let first = guest.booted_counter();
    let later = guest
        .wait_counter_at_least(first + 3, STEP_TIMEOUT)
        .expect("the counter keeps advancing");
    assert!(later > first);

    let (name, dir) = (guest.name().to_owned(), guest.dir().to_path_buf());
    guest.remove().expect("removing the guest");
    assert_left_nothing(&name, &dir);
}

#[test]
fn a_failing_test_still_leaves_no_domain_and_no_file() {
    let mut seen = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let guest = boot("panics", DiskKind::Raw);
        seen = Some((guest.name().to_owned(), guest.dir().to_path_buf()));
        panic!("a test fails while its guest runs");
    }));
    assert!(outcome.is_err());
    let (name, dir) = seen.expect("the guest booted before the panic");
    assert_left_nothing(&name, &dir);
}

#[test]
fn internal_snapshot_with_memory_brings_ram_back() {
    let guest = boot("internal", DiskKind::Qcow2);
    let before_save = guest.booted_counter();
    guest
        .snapshot_internal("s1")
        .expect("internal snapshot with memory");
    let after_save = guest.booted_counter();
    assert_eq!(
        guest.snapshot_names().expect("listing snapshots"),
        vec!["s1".to_owned()]
    );

    let before_revert = guest
        .wait_counter_at_least(after_save + RUN_ON_COUNTS, STEP_TIMEOUT)
        .expect("the guest runs on after the save");
    let mark = guest.console_mark().expect("console mark");
    guest.revert("s1").expect("reverting the internal snapshot");
    let resumed = guest
        .wait_for_rewind(mark, before_revert, STEP_TIMEOUT)
        .expect("the counter goes back after the revert");
    assert!(
        (before_save..=after_save + REWIND_SLACK).contains(&resumed),
        "saved between {before_save} and {after_save}, ran on to {before_revert}, resumed at {resumed}"
    );
    guest
        .wait_counter_at_least(resumed + 2, STEP_TIMEOUT)
        .expect("the reverted guest keeps counting");

    guest.delete_snapshot("s1").expect("deleting the snapshot");
    assert!(guest
        .snapshot_names()
        .expect("listing snapshots")
        .is_empty());
    let (name, dir) = (guest.name().to_owned(), guest.dir().to_path_buf());
    guest.remove().expect("removing the guest");
    assert_left_nothing(&name, &dir);
}

#[test]
fn external_snapshot_with_memory_brings_ram_back() {
    let guest = boot("external", DiskKind::Qcow2);
    let before_save = guest.booted_counter();
    let files = guest
        .snapshot_external("e1")
        .expect("external snapshot with memory");
    let after_save = guest.booted_counter();
    assert!(
        files.memory.is_file(),
        "memory file {} missing",
        files.memory.display()
    );
    assert!(
        files.overlay.is_file(),
        "overlay {} missing",
        files.overlay.display()
    );
    let memory_bytes = std::fs::metadata(&files.memory).expect("memory file").len();
    assert!(
        memory_bytes > 1 << 20,
        "a RAM image of {memory_bytes} bytes is too small to be real"
    );

    let before_revert = guest
        .wait_counter_at_least(after_save + RUN_ON_COUNTS, STEP_TIMEOUT)
        .expect("the guest runs on after the save");
    let mark = guest.console_mark().expect("console mark");
    guest.revert("e1").expect("reverting the external snapshot");
    let resumed = guest
        .wait_for_rewind(mark, before_revert, STEP_TIMEOUT)
        .expect("the counter goes back after the revert");
    assert!(
        (before_save..=after_save + REWIND_SLACK).contains(&resumed),
        "saved between {before_save} and {after_save}, ran on to {before_revert}, resumed at {resumed}"
    );
    guest
        .wait_counter_at_least(resumed + 2, STEP_TIMEOUT)
        .expect("the reverted guest keeps counting");

    guest
        .delete_snapshot("e1")
        .expect("deleting the external snapshot");
    assert!(guest
        .snapshot_names()
        .expect("listing snapshots")
        .is_empty());
    assert!(
        !files.memory.exists(),
        "delete left the memory file {}",
        files.memory.display()
    );
    assert!(
        !files.overlay.exists(),
        "delete left the overlay {}",
        files.overlay.display()
    );
    let (name, dir) = (guest.name().to_owned(), guest.dir().to_path_buf());
    guest.remove().expect("removing the guest");
    assert_left_nothing(&name, &dir);
}
