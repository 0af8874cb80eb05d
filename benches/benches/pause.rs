//! The guest's pause during a save with memory, per save kind, on a real hypervisor
//! (`qemu:///system`, TCG), beside the save's total time and the rate its memory image was
//! written at, against this disk's sequential write speed (`dd oflag=direct`, same run).
//!
//! The guest (`Guest::boot_filled`) has its RAM filled with random data, so the memory image
//! is as large as the RAM it holds, and prints its clock every ~10 ms to a second serial port.
//! The pause is measured two ways:
//! - libvirt's lifecycle events (`virsh event --loop --timestamp`): `Suspended` → `Resumed`;
//! - the guest's ticks, timestamped by the host as they arrive: the longest gap during the
//!   save. A stopped vCPU's clock stands still under TCG, so across a pause the guest's clock
//!   moves ~10 ms while the host's moves by the pause; a host-side hiccup (this machine is
//!   shared) moves both. The same gap measured with no save running is the noise floor.
//!
//! Kinds, each through virsh (libvirt's own cost) and the gateway's default mode:
//! `internal` (QEMU `savevm`: the guest stops for the whole save), `external` (memory to a
//! file, guest stopped first), `external --live` (the guest runs while its memory is copied,
//! stops for the last pass and the disk overlays), the same with QEMU's migration downtime
//! limit at 20 ms instead of its default 300 ms, and `gateway auto` (what a save without a
//! mode does).
//!
//! Run (root; starts libvirtd and builds the guest if needed; build the gateway first):
//!   cargo build --release -p snapgate
//!   cargo bench -p snapgate-benches --bench pause
//!   SNAPGATE_BENCH_RUNS=5 SNAPGATE_BENCH_SIZES=256,1024 cargo bench -p snapgate-benches --bench pause

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use snapgate_tests::app::demo;
use snapgate_tests::realvm::{Guest, Hypervisor, LIBVIRT_URI};

mod common;
use common::gateway::{BoxError, Gateway};

const DEFAULT_RUNS: usize = 3;
const DEFAULT_SIZES: &[u32] = &[256, 1024];
/// RAM the guest keeps for its kernel and `init`; the rest is filled with random data.
const UNFILLED_MIB: u32 = 160;
/// QEMU's default migration downtime limit, and the one the tuned rows use.
const QEMU_DEFAULT_DOWNTIME_MS: u64 = 300;
const TUNED_DOWNTIME_MS: u64 = 20;
/// How long after a save returns its resume may still show up in events and ticks.
const SETTLE: Duration = Duration::from_millis(500);
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Method {
    VirshInternal,
    VirshExternal,
    VirshExternalLive,
    VirshExternalLiveTuned,
    GatewayAuto,
}

impl Method {
    const ALL: [Method; 5] = [
        Method::VirshInternal,
        Method::VirshExternal,
        Method::VirshExternalLive,
        Method::VirshExternalLiveTuned,
        Method::GatewayAuto,
    ];

    fn label(self) -> &'static str {
        match self {
            Method::VirshInternal => "virsh internal",
            Method::VirshExternal => "virsh external (paused)",
            Method::VirshExternalLive => "virsh external --live",
            Method::VirshExternalLiveTuned => "virsh external --live, downtime 20 ms",
            Method::GatewayAuto => "gateway, default mode (auto)",
        }
    }
}

/// One save, measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    total: Duration,
    /// `Suspended` → `Resumed` from libvirt's events.
    event_pause: Duration,
    /// The longest gap between guest ticks as the host received them, and how far the
    /// guest's own clock moved across it.
    tick_gap: Duration,
    tick_gap_guest: Duration,
    image_bytes: u64,
}

/// Lines `virsh event --loop --timestamp` prints for one domain, as (unix ms, text).
struct EventWatch {
    child: Child,
    events: Arc<Mutex<Vec<(i64, String)>>>,
}

impl EventWatch {
    fn start(domain: &str) -> Result<EventWatch, BoxError> {
        let mut child = Command::new("virsh")
            .args(["-c", LIBVIRT_URI, "event", domain, "--event", "lifecycle"])
            .args(["--loop", "--timestamp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("virsh event: no stdout")?;
        let events: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // 2026-11-30 21:46:08.194+0000: event 'lifecycle' for domain 'x': Suspended Paused
                let Some(stamp) = line.get(..28) else {
                    continue;
                };
                let Ok(at) = chrono::DateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.3f%z")
                else {
                    continue;
                };
                let what = line.rsplit(": ").next().unwrap_or_default().to_owned();
                sink.lock().unwrap().push((at.timestamp_millis(), what));
            }
        });
        Ok(EventWatch { child, events })
    }

    /// The first `Suspended` at or after `since_ms` and the `Resumed` after it; waits (bounded)
    /// for the resume to arrive.
    fn pause_since(&self, since_ms: i64) -> Result<Duration, BoxError> {
        let started = Instant::now();
        loop {
            {
                let events = self.events.lock().unwrap();
                let mut later = events.iter().filter(|(at, _)| *at >= since_ms);
                let suspended = later.find(|(_, what)| what.starts_with("Suspended"));
                if let Some((stopped, _)) = suspended {
                    if let Some((resumed, _)) = later.find(|(_, what)| what.starts_with("Resumed"))
                    {
                        return Ok(Duration::from_millis((resumed - stopped).max(0) as u64));
                    }
                }
            }
            if started.elapsed() > EVENT_TIMEOUT {
                return Err(format!(
                    "no Suspended/Resumed pair since {since_ms}: {:?}",
                    self.events.lock().unwrap()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The guest's ticks as the host receives them: (arrival, guest clock in seconds). A thread
/// polls the serial file every millisecond.
struct TickWatch {
    ticks: Arc<Mutex<Vec<(Instant, f64)>>>,
    stop: Arc<Mutex<bool>>,
}

impl TickWatch {
    fn start(path: &Path) -> Result<TickWatch, BoxError> {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::End(0))?;
        let ticks: Arc<Mutex<Vec<(Instant, f64)>>> = Arc::default();
        let stop = Arc::new(Mutex::new(false));
        let (sink, stopped) = (ticks.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut chunk = [0u8; 4096];
            while !*stopped.lock().unwrap() {
                let read = file.read(&mut chunk).unwrap_or(0);
                let now = Instant::now();
                if read == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                pending.extend_from_slice(&chunk[..read]);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&line);
                    if let Some(value) = text
                        .trim()
                        .strip_prefix("snapgate-tick ")
                        .and_then(|v| v.parse::<f64>().ok())
                    {
                        sink.lock().unwrap().push((now, value));
                    }
                }
            }
        });
        Ok(TickWatch { ticks, stop })
    }

    /// The longest gap between ticks received in `[from, to]` (the first tick after `from`
    /// counts from the last one before it), with the guest clock's advance across it.
    fn longest_gap(&self, from: Instant, to: Instant) -> (Duration, Duration) {
        let ticks = self.ticks.lock().unwrap();
        let mut longest = (Duration::ZERO, Duration::ZERO);
        for pair in ticks.windows(2) {
            let ((a, guest_a), (b, guest_b)) = (pair[0], pair[1]);
            if b < from || a > to {
                continue;
            }
            let gap = b - a;
            if gap > longest.0 {
                longest = (gap, Duration::from_secs_f64((guest_b - guest_a).max(0.0)));
            }
        }
        longest
    }
}

impl Drop for TickWatch {
    fn drop(&mut self) {
        *self.stop.lock().unwrap() = true;
    }
}

fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The memory image's bytes: the external memory file, or the internal snapshot's VM state
/// inside the qcow2 (`qemu-img info -U`, the disk is in use).
fn image_bytes(guest: &Guest, snapshot: &str) -> Result<u64, BoxError> {
    let xml = guest.virsh(&["snapshot-dumpxml", guest.name(), snapshot])?;
    if let Some(file) = memory_file(&xml) {
        return Ok(std::fs::metadata(file)?.len());
    }
    let output = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(guest.disk_path())
        .output()?;
    let info: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    info["snapshots"]
        .as_array()
        .and_then(|snaps| snaps.iter().find(|s| s["name"] == snapshot))
        .and_then(|s| s["vm-state-size"].as_u64())
        .ok_or_else(|| format!("no internal snapshot {snapshot} in {}", info).into())
}

/// `<memory snapshot='external' file='…'/>` of a snapshot's XML.
fn memory_file(xml: &str) -> Option<PathBuf> {
    let memory = &xml[xml.find("<memory ")?..];
    let memory = &memory[..memory.find('>')?];
    if !memory.contains("snapshot='external'") {
        return None;
    }
    let file = &memory[memory.find("file='")? + "file='".len()..];
    Some(PathBuf::from(&file[..file.find('\'')?]))
}

/// Saves with `method` under `name`; returns the libvirt snapshot's name.
fn save(method: Method, guest: &Guest, gateway: &Gateway, name: &str) -> Result<String, BoxError> {
    let memspec = |name: &str| {
        format!(
            "file={},snapshot=external",
            guest.dir().join(format!("{name}.mem")).display()
        )
    };
    let diskspec = |name: &str| {
        format!(
            "vda,snapshot=external,file={}",
            guest.dir().join(format!("{name}.overlay.qcow2")).display()
        )
    };
    let domain = guest.name();
    match method {
        Method::VirshInternal => {
            guest.virsh(&[
                "snapshot-create-as",
                domain,
                name,
                "--memspec",
                "snapshot=internal",
            ])?;
        }
        Method::VirshExternal | Method::VirshExternalLive | Method::VirshExternalLiveTuned => {
            let (memory, disk) = (memspec(name), diskspec(name));
            let mut args = vec![
                "snapshot-create-as",
                domain,
                name,
                "--memspec",
                &memory,
                "--diskspec",
                &disk,
                "--atomic",
            ];
            if method != Method::VirshExternal {
                args.push("--live");
            }
            guest.virsh(&args)?;
        }
        Method::GatewayAuto => {
            let path = format!("/v1/instances/{}/states", guest.uuid());
            let accepted =
                gateway.run("POST", &path, Some(json!({ "name": name })), "operation")?;
            let state = accepted["uuid"].as_str().ok_or("no state uuid")?;
            return Ok(state.to_owned());
        }
    }
    Ok(name.to_owned())
}

/// Deletes what `save` made (libvirt removes an external snapshot's files).
fn delete(
    method: Method,
    guest: &Guest,
    gateway: &Gateway,
    snapshot: &str,
) -> Result<(), BoxError> {
    match method {
        Method::GatewayAuto => {
            let path = format!("/v1/instances/{}/states/{snapshot}", guest.uuid());
            gateway.run("DELETE", &path, None, "uuid")?;
        }
        _ => guest.delete_snapshot(snapshot)?,
    }
    Ok(())
}

/// QEMU keeps the migration downtime limit per process: each virsh row sets the one it
/// measures (the gateway sets its own).
fn set_downtime(guest: &Guest, method: Method) -> Result<(), BoxError> {
    let ms = match method {
        Method::VirshExternalLiveTuned => TUNED_DOWNTIME_MS,
        Method::GatewayAuto => return Ok(()),
        _ => QEMU_DEFAULT_DOWNTIME_MS,
    };
    guest.virsh(&["migrate-setmaxdowntime", guest.name(), &ms.to_string()])?;
    Ok(())
}

fn measure_one(
    method: Method,
    guest: &Guest,
    gateway: &Gateway,
    events: &EventWatch,
    ticks: &TickWatch,
    name: &str,
) -> Result<Sample, BoxError> {
    set_downtime(guest, method)?;
    let since_ms = unix_ms_now();
    let started = Instant::now();
    let snapshot = save(method, guest, gateway, name)?;
    let total = started.elapsed();
    let event_pause = events.pause_since(since_ms)?;
    std::thread::sleep(SETTLE);
    let (tick_gap, tick_gap_guest) = ticks.longest_gap(started, started + total + SETTLE);
    let image_bytes = image_bytes(guest, &snapshot)?;
    delete(method, guest, gateway, &snapshot)?;
    Ok(Sample {
        total,
        event_pause,
        tick_gap,
        tick_gap_guest,
        image_bytes,
    })
}

/// `dd if=/dev/zero of=DIR/… bs=1M count=1024 oflag=direct`: MB/s (10^6 bytes).
fn disk_write_mbs(dir: &Path) -> Result<f64, BoxError> {
    let target = dir.join("snapgate-dd-probe");
    let output = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", target.display()))
        .args(["bs=1M", "count=1024", "oflag=direct"])
        .output()?;
    let _ = std::fs::remove_file(&target);
    // "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 2.39 s, 449 MB/s"
    let text = String::from_utf8_lossy(&output.stderr);
    let line = text
        .lines()
        .find(|l| l.contains(" copied, "))
        .ok_or("dd said nothing")?;
    let bytes: f64 = line.split_whitespace().next().ok_or("dd bytes")?.parse()?;
    let secs: f64 = line
        .split(" copied, ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("dd seconds")?
        .parse()?;
    Ok(bytes / secs / 1e6)
}

fn median<T: Copy + PartialOrd>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<(), BoxError> {
    let runs = std::env::var("SNAPGATE_BENCH_RUNS")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|&runs: &usize| runs > 0)
        .unwrap_or(DEFAULT_RUNS);
    let sizes: Vec<u32> = std::env::var("SNAPGATE_BENCH_SIZES")
        .ok()
        .map(|value| {
            value
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect()
        })
        .filter(|sizes: &Vec<u32>| !sizes.is_empty())
        .unwrap_or_else(|| DEFAULT_SIZES.to_vec());
    // The gateway reads every `SNAPGATE_*` variable as configuration and refuses unknown ones.
    std::env::remove_var("SNAPGATE_BENCH_RUNS");
    std::env::remove_var("SNAPGATE_BENCH_SIZES");

    let gateway = Gateway::start()?;
    let state_dir = Hypervisor::System.state_dir()?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let dd_before = disk_write_mbs(&state_dir)?;
    println!(
        "guest pause during a save: qemu:///system, TCG, 1 vCPU, RAM filled with random data \
         (all but {UNFILLED_MIB} MiB); median of {runs} runs per row, kinds interleaved; \
         load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "disk sequential write (dd bs=1M count=1024 oflag=direct) at start: {dd_before:.0} MB/s"
    );
    println!();
    println!("| RAM | save | pause (events) | longest tick gap (guest clock) | total | image | written at | of dd |");
    println!("|---|---|---|---|---|---|---|---|");

    let mut dd_speeds = vec![dd_before];
    for &memory_mib in &sizes {
        let fill_mib = memory_mib.saturating_sub(UNFILLED_MIB).max(16);
        let guest = Guest::boot_filled(
            &format!("pause-{memory_mib}"),
            memory_mib,
            fill_mib,
            demo::TENANT,
        )?;
        let ticks_path = guest.ticks_path().ok_or("a filled guest has ticks")?;
        let ticks = TickWatch::start(ticks_path)?;
        let events = EventWatch::start(guest.name())?;
        let idle_from = Instant::now();
        std::thread::sleep(IDLE_WINDOW);
        let (idle_gap, idle_guest) = ticks.longest_gap(idle_from, Instant::now());

        let mut samples: HashMap<Method, Vec<Sample>> = HashMap::new();
        for run in 0..runs {
            let mut order = Method::ALL.to_vec();
            order.rotate_left(run % Method::ALL.len());
            for method in order {
                // Unique per instance: the gateway refuses a name a state of it still has.
                let name = format!("pause-{run}-{}", method as usize);
                let sample = measure_one(method, &guest, &gateway, &events, &ticks, &name)
                    .map_err(|e| {
                        format!("{} at {memory_mib} MiB, run {run}: {e}", method.label())
                    })?;
                samples.entry(method).or_default().push(sample);
            }
        }
        let dd_now = disk_write_mbs(&state_dir)?;
        dd_speeds.push(dd_now);
        for method in Method::ALL {
            let s = &samples[&method];
            let pick = |f: fn(&Sample) -> f64| median(&s.iter().map(f).collect::<Vec<_>>());
            let (pause_min, pause_max) = s.iter().fold((f64::MAX, 0f64), |(lo, hi), x| {
                (lo.min(ms(x.event_pause)), hi.max(ms(x.event_pause)))
            });
            let image_mib = pick(|x| x.image_bytes as f64) / 1048576.0;
            let rate = pick(|x| x.image_bytes as f64 / 1e6 / x.total.as_secs_f64());
            println!(
                "| {memory_mib} MiB | {} | {:.0} ms ({pause_min:.0}–{pause_max:.0}) | {:.0} ms ({:.0} ms) | {:.2} s | {image_mib:.0} MiB | {rate:.0} MB/s | {:.0}% |",
                method.label(),
                pick(|x| ms(x.event_pause)),
                pick(|x| ms(x.tick_gap)),
                pick(|x| ms(x.tick_gap_guest)),
                pick(|x| x.total.as_secs_f64()),
                100.0 * rate / dd_now,
            );
        }
        println!(
            "| {memory_mib} MiB | no save (noise floor, {} s) | | {:.0} ms ({:.0} ms) | | | | |",
            IDLE_WINDOW.as_secs(),
            ms(idle_gap),
            ms(idle_guest)
        );
        drop(events);
        drop(ticks);
        guest.remove()?;
    }
    println!();
    println!(
        "disk sequential write during the run: {}",
        dd_speeds
            .iter()
            .map(|s| format!("{s:.0} MB/s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(gateway);
    Ok(())
}
