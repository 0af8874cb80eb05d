//! Save and apply of a snapshot with memory of one running guest on a real hypervisor
//! (`qemu:///system`, TCG), measured directly with virsh: the floor that any gateway path
//! adds its own cost to.
//!
//! The guest is the real-VM harness's counter guest (`snapgate_tests::realvm`), 128 MiB RAM,
//! one vCPU, a 64 MiB qcow2 disk. Each run saves, lets the guest count on, applies (reverts,
//! guest left running), checks that the counter went back (RAM really restored) and deletes
//! the snapshot. Internal and external snapshots get a fresh guest each: libvirt does not mix
//! them on one domain.
//!
//! Run (root; starts libvirtd and builds the guest if needed):
//!   cargo bench -p snapgate-benches --bench realvm
//!   SNAPGATE_BENCH_RUNS=9 cargo bench -p snapgate-benches --bench realvm
//!
//! Hook for the gateway: [`measure`] takes one closure per operation. A gateway backend
//! passes closures that call the HTTP API (POST …/states, POST …/states/{id}/apply, DELETE)
//! and wait for the operation; [`virsh_backend`] is the reference.

use std::error::Error;
use std::time::{Duration, Instant};

use snapgate_tests::realvm::{DiskKind, Guest, DEFAULT_MEMORY_MIB};

type BoxError = Box<dyn Error + Send + Sync>;

const DEFAULT_RUNS: usize = 5;
/// Counts (half seconds) the guest runs on between save and apply, so the revert is visible.
const RUN_ON_COUNTS: u64 = 4;
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Internal,
    External,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Internal => "internal",
            Kind::External => "external",
        }
    }
}

/// Save, apply and delete as one backend does them. `save` returns the bytes the snapshot
/// takes (memory file, or 0 when the backend cannot tell).
struct Backend<'a> {
    name: &'static str,
    save: Box<dyn FnMut(&Guest, Kind, &str) -> Result<u64, BoxError> + 'a>,
    apply: Box<dyn FnMut(&Guest, &str) -> Result<(), BoxError> + 'a>,
    delete: Box<dyn FnMut(&Guest, &str) -> Result<(), BoxError> + 'a>,
}

/// virsh straight on the domain: what libvirt and QEMU cost without any gateway.
fn virsh_backend<'a>() -> Backend<'a> {
    Backend {
        name: "virsh",
        save: Box::new(|guest, kind, snapshot| match kind {
            Kind::Internal => {
                guest.snapshot_internal(snapshot)?;
                Ok(0)
            }
            Kind::External => {
                let files = guest.snapshot_external(snapshot)?;
                Ok(std::fs::metadata(&files.memory)?.len())
            }
        }),
        apply: Box::new(|guest, snapshot| Ok(guest.revert(snapshot)?)),
        delete: Box::new(|guest, snapshot| Ok(guest.delete_snapshot(snapshot)?)),
    }
}

#[derive(Debug, Default)]
struct Samples {
    save: Vec<Duration>,
    apply: Vec<Duration>,
    /// From the start of apply until the guest printed its first counter from restored RAM.
    apply_to_counting: Vec<Duration>,
    delete: Vec<Duration>,
    snapshot_bytes: Vec<u64>,
}

/// Boots a fresh guest and runs save → run on → apply → check → delete `runs` times.
fn measure(backend: &mut Backend<'_>, kind: Kind, runs: usize) -> Result<Samples, BoxError> {
    let guest = Guest::boot(
        &format!("bench-{}", kind.label()),
        DiskKind::Qcow2,
        DEFAULT_MEMORY_MIB,
    )?;
    let mut samples = Samples::default();
    for run in 0..runs {
        let snapshot = format!("bench-{run}");
        let before_save = guest.counter()?.unwrap_or(0);

        let started = Instant::now();
        let bytes = (backend.save)(&guest, kind, &snapshot)?;
        samples.save.push(started.elapsed());
        samples.snapshot_bytes.push(bytes);

        let after_save = guest.counter()?.unwrap_or(0);
        let before_apply = guest.wait_counter_at_least(after_save + RUN_ON_COUNTS, STEP_TIMEOUT)?;
        let mark = guest.console_mark()?;
        let started = Instant::now();
        (backend.apply)(&guest, &snapshot)?;
        samples.apply.push(started.elapsed());
        let resumed = guest.wait_for_rewind(mark, before_apply, STEP_TIMEOUT)?;
        samples.apply_to_counting.push(started.elapsed());
        if resumed < before_save || resumed > after_save + 3 {
            return Err(format!(
                "{}: {} run {run}: saved at {before_save}..={after_save}, resumed at {resumed}",
                backend.name,
                kind.label()
            )
            .into());
        }

        let started = Instant::now();
        (backend.delete)(&guest, &snapshot)?;
        samples.delete.push(started.elapsed());
    }
    guest.remove()?;
    Ok(samples)
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn min_max(samples: &[Duration]) -> (Duration, Duration) {
    let min = samples.iter().min().copied().unwrap_or_default();
    let max = samples.iter().max().copied().unwrap_or_default();
    (min, max)
}

fn print_row(backend: &str, kind: Kind, op: &str, samples: &[Duration]) {
    let (min, max) = min_max(samples);
    println!(
        "| {backend} | {} | {op} | {:.2} s | {:.2} s | {:.2} s |",
        kind.label(),
        median(samples).as_secs_f64(),
        min.as_secs_f64(),
        max.as_secs_f64()
    );
}

fn main() -> Result<(), BoxError> {
    let runs = std::env::var("SNAPGATE_BENCH_RUNS")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|&runs: &usize| runs > 0)
        .unwrap_or(DEFAULT_RUNS);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "real hypervisor: qemu:///system, TCG, guest {DEFAULT_MEMORY_MIB} MiB RAM / 1 vCPU / qcow2; \
         median of {runs} runs; load average at start: {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!();
    println!("| backend | kind | operation | median | min | max |");
    println!("|---|---|---|---|---|---|");

    // A gateway backend joins this list once it exists (see the module docs).
    let mut backends = vec![virsh_backend()];
    for backend in &mut backends {
        for kind in [Kind::Internal, Kind::External] {
            let samples = measure(backend, kind, runs)?;
            print_row(backend.name, kind, "save", &samples.save);
            print_row(backend.name, kind, "apply (call)", &samples.apply);
            print_row(
                backend.name,
                kind,
                "apply → counting",
                &samples.apply_to_counting,
            );
            print_row(backend.name, kind, "delete", &samples.delete);
            if let Some(&bytes) = samples
                .snapshot_bytes
                .iter()
                .max()
                .filter(|&&bytes| bytes > 0)
            {
                println!(
                    "| {} | {} | memory file | {:.1} MiB | | |",
                    backend.name,
                    kind.label(),
                    bytes as f64 / 1048576.0
                );
            }
        }
    }
    Ok(())
}
