//! Issue 12 point 3 on a real hypervisor: a live external save of a QEMU guest whose RAM is
//! filled with random data takes seconds, long enough to watch it. The operation reports
//! libvirt's job progress mid-way (0 < percent < 100, bytes processed growing), and a second
//! save, cancelled once its progress proves it is mid-way, has its libvirt job aborted: no
//! state, no snapshot, no files, quota as before, and the guest runs on and saves again (from
//! the CLI, whose wait on a terminal draws the percent as a bar).
//! One guest boot. Fails (never skips) when libvirtd cannot run here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use snapgate_tests::app::{demo, snapgate_bin, TestApp};
use snapgate_tests::hosts::metric_sum;
use snapgate_tests::realvm::{Guest, Hypervisor, LIBVIRT_URI};
use snapgate_tests::sse;

const HOST: &str = "local";
/// RAM of the guest and how much of it is random data (a GiB left free: the guest's kernel
/// needs room while it fills its tmpfs): its memory image is ~2 GiB, which a
/// live save under TCG writes in several seconds (docs/BENCHMARKS.md: ~1 s per GiB or more).
const MEMORY_MIB: u32 = 3072;
const FILL_MIB: u32 = 2048;
/// A hang guard, never a bound the test judges by.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

fn state_dir() -> PathBuf {
    Hypervisor::System
        .state_dir()
        .expect("the system host's state directory")
}

/// Files of one state in the host's state directory (`<state>.`-prefixed).
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

/// (states in use, bytes in use, anything reserved) of the demo tenant.
async fn usage(app: &TestApp) -> (i64, i64, bool) {
    let q = app
        .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
        .await;
    assert_eq!(q.status, 200, "{}", q.body);
    let u = &q.body["usage"];
    let reserved = ["states", "state_bytes", "concurrent_operations"]
        .iter()
        .any(|r| u[r]["reserved"].as_i64() != Some(0));
    (
        u["states"]["in_use"].as_i64().unwrap(),
        u["state_bytes"]["in_use"].as_i64().unwrap(),
        reserved,
    )
}

/// Saves that ended with `result`, as the gateway counted them (after settling their quota).
fn ended_saves(page: &str, result: &str) -> f64 {
    metric_sum(
        page,
        "snapgate_operations_total",
        &[("kind", "save"), ("result", result)],
    )
}

/// A progress sample as the operation carried it.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    phase: String,
    bytes: i64,
    percent: f64,
}

fn sample(op: &Value) -> Option<Sample> {
    let p = &op["progress"];
    Some(Sample {
        phase: p["phase"].as_str()?.to_owned(),
        bytes: p["bytes_processed"].as_i64()?,
        percent: p["percent"].as_f64()?,
    })
}

/// A sample that shows libvirt's job under way: some done, not all.
fn mid_way(s: &Sample) -> bool {
    s.phase == "memory" && s.percent > 0.0 && s.percent < 100.0 && s.bytes > 0
}

/// Starts a save (external, live) and returns (operation id, state id).
async fn start_save(app: &TestApp, guest: &Guest, name: &str) -> (String, String) {
    let r = app
        .post(
            &format!("/v1/instances/{}/states", guest.uuid()),
            &app.member,
            json!({ "name": name, "mode": "external" }),
        )
        .await;
    assert_eq!(r.status, 202, "save {name}: {}", r.body);
    (
        r.body["operation"].as_str().unwrap().to_owned(),
        r.body["uuid"].as_str().unwrap().to_owned(),
    )
}

/// Reads the operation until `stop` says so or it ends; returns the samples seen while it
/// ran (each distinct sample once) and the operation as last read.
async fn watch(app: &TestApp, op: &str, stop: impl Fn(&[Sample]) -> bool) -> (Vec<Sample>, Value) {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    let mut seen: Vec<Sample> = Vec::new();
    loop {
        let r = app.get(&format!("/v1/operations/{op}"), &app.member).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let running = r.body["status"] == "running";
        if running {
            if let Some(s) = sample(&r.body) {
                if seen.last() != Some(&s) {
                    seen.push(s);
                }
            }
        }
        if !running || stop(&seen) {
            return (seen, r.body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the save ran five minutes: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_save_reports_progress_and_a_cancelled_one_leaves_nothing() {
    let guest = blocking(|| Guest::boot_filled("progress", MEMORY_MIB, FILL_MIB, demo::TENANT))
        .unwrap_or_else(|e| panic!("booting the filled guest: {e}"));
    let app = TestApp::builder()
        .host_with_state_dir(HOST, LIBVIRT_URI, &state_dir())
        .start()
        .await;
    let dir = state_dir();

    // 1. A save watched to its end: progress seen mid-way, bytes growing, 100 at the end.
    let (op, first) = start_save(&app, &guest, "watched").await;
    let (seen, _) = watch(&app, &op, |_| false).await;
    let ended = app.wait(&op, &app.member).await;
    assert_eq!(ended["status"], "succeeded", "{ended}\n{}", app.log());
    eprintln!("samples of the watched save: {seen:?}");
    let mid: Vec<&Sample> = seen.iter().filter(|s| mid_way(s)).collect();
    assert!(
        mid.len() >= 2,
        "at least two samples mid-way: {seen:?}\n{}",
        app.log()
    );
    for pair in mid.windows(2) {
        assert!(
            pair[1].bytes > pair[0].bytes && pair[1].percent >= pair[0].percent,
            "progress only grows: {seen:?}"
        );
    }
    assert!(
        ended["progress"]["bytes_total"].as_i64().unwrap_or(0) > i64::from(FILL_MIB) << 20,
        "the job's total covers the guest's memory: {ended}"
    );
    assert_eq!(ended["progress"]["percent"], 100.0, "{ended}");
    assert_eq!(ended["may_cancel"], false, "{ended}");
    // Subscribers heard the same: `operation.progress` events mid-way, then `state.saved`.
    let mut events = sse::open(&app, "?after=0", &app.member, None)
        .await
        .stream();
    let heard = events
        .until(|e| e["operation_uuid"] == op.as_str() && e["kind"] == "state.saved")
        .await;
    let heard_mid = heard
        .iter()
        .filter(|e| e["operation_uuid"] == op.as_str() && e["kind"] == "operation.progress")
        .filter(|e| {
            let p = e["data"]["percent"].as_f64().unwrap_or(0.0);
            p > 0.0 && p < 100.0
        })
        .count();
    assert!(heard_mid >= 1, "progress events mid-way: {heard:?}");
    drop(events);
    // Ends are counted once their quota is settled.
    app.wait_for_metrics("the end of the first save", |page| {
        ended_saves(page, "succeeded") == 1.0
    })
    .await;
    let after_first = usage(&app).await;
    assert_eq!(
        (after_first.0, after_first.2),
        (1, false),
        "{after_first:?}"
    );

    // 2. A save cancelled once its progress proves it mid-way.
    let (op, cancelled) = start_save(&app, &guest, "cancelled").await;
    let (seen, running) = watch(&app, &op, |seen| seen.iter().any(mid_way)).await;
    assert_eq!(
        running["status"], "running",
        "the save was seen mid-way before it ended: {seen:?} {running}"
    );
    assert_eq!(running["may_cancel"], true, "{running}");
    eprintln!("samples of the cancelled save before its cancel: {seen:?}");
    let r = app
        .delete(&format!("/v1/operations/{op}"), &app.member)
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let ended = app.wait(&op, &app.member).await;
    assert_eq!(ended["status"], "failed", "{ended}\n{}", app.log());
    assert_eq!(ended["error"]["code"], "cancelled", "{ended}");
    assert_eq!(ended["may_cancel"], false, "{ended}");
    assert!(
        app.log().contains("aborted the save's libvirt job"),
        "libvirt's job was aborted while it ran:\n{}",
        app.log()
    );
    app.wait_for_metrics("the end of the cancelled save", |page| {
        ended_saves(page, "cancelled") == 1.0
    })
    .await;
    let last =
        sample(&ended).unwrap_or_else(|| panic!("the last sample stays on the record: {ended}"));
    assert!(last.percent < 100.0, "it stopped mid-way: {ended}");

    // Nothing of it is left: no state, no snapshot, no files; quota as before it.
    let gone = app
        .get(
            &format!("/v1/instances/{}/states/{cancelled}", guest.uuid()),
            &app.member,
        )
        .await;
    assert_eq!(gone.status, 404, "{}", gone.text);
    assert_eq!(
        blocking(|| guest.snapshot_names()).expect("listing snapshots"),
        vec![first.clone()],
        "only the first save's snapshot"
    );
    assert_eq!(state_files(&dir, &cancelled), Vec::<PathBuf>::new());
    assert_eq!(
        usage(&app).await,
        after_first,
        "quota usage as before the save"
    );

    // The guest runs on, and a later save succeeds.
    let state = blocking(|| guest.virsh(&["domstate", guest.name()])).expect("domstate");
    assert_eq!(state.trim(), "running");
    blocking(|| guest.wait_until_advancing(STEP_TIMEOUT)).expect("the guest counts on");
    // A later save succeeds; the CLI waiting on it on a terminal draws a bar with the
    // percent the operation reports.
    let command = format!(
        "{} state-save {} after-the-cancel",
        snapgate_bin().display(),
        guest.uuid()
    );
    let out = blocking(|| {
        std::process::Command::new("script")
            .args(["--quiet", "--return", "--command", &command, "/dev/null"])
            .env("SNAPGATE_URL", &app.url)
            .env("SNAPGATE_TOKEN", &app.member)
            .env_remove("SNAPGATE_TOKEN_FILE")
            .env_remove("SNAPGATE_OUTPUT")
            .stdin(std::process::Stdio::null())
            .output()
    })
    .expect("running snapgate under script(1)");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}\n{}", app.log());
    assert!(shown.contains("(after-the-cancel) saved"), "{shown:?}");
    let bars = shown
        .split('\r')
        .filter(|frame| frame.contains("saving (running, memory") && frame.contains('%'))
        .count();
    assert!(bars > 0, "a bar with the percent was drawn: {shown:?}");
    let names = blocking(|| guest.snapshot_names()).expect("listing snapshots");
    assert_eq!(names.len(), 2, "{first} and the later save: {names:?}");
    assert!(names.contains(&first), "{names:?}");
}
