//! Per-request cost of the policy chain: the four example WebAssembly plugins (fresh instance
//! per plugin per request, pre-instantiated off the request path when the pool has one)
//! against the same four rules in Rego (regorus), in Cedar
//! (cedar-policy) and in native Rust (the floor).
//!
//! Run (release, needs the plugins built):
//!   scripts/build-plugins.sh && cargo bench -p snapgate-benches --bench policy
//! Prints a markdown table for docs/BENCHMARKS.md (section "Policy chain").

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet};
use chrono::{TimeZone, Utc};
use serde_json::json;
use snapgate_core::ports::{PolicyEngine, PolicyInput, PolicySave, PolicyState, QuotaUsage};
use snapgate_core::{
    CpuCompatibility, CpuInfo, DiskInfo, Instance, OperationKind, SaveMode, SnapshotKind,
};
use snapgate_policy::{PluginSpec, PolicyLimits, WasmPolicyEngine};

const WARMUP: usize = 2_000;
const ITERATIONS: usize = 20_000;
/// Idle time between requests in the paced rows: requests that arrive (far) below the rate at
/// which the refiller instantiates, as a gateway sees them, instead of back-to-back.
const PACING_GAP: Duration = Duration::from_micros(200);

// ---- requests ------------------------------------------------------------------------------

fn cpu(features: &[&str]) -> CpuInfo {
    CpuInfo {
        model: Some("Skylake-Client".into()),
        vendor: Some("Intel".into()),
        features: features.iter().map(|f| f.to_string()).collect(),
    }
}

/// An allowed save: qcow2 disks, 2 states, no host devices.
fn save_request() -> PolicyInput {
    PolicyInput {
        operation: OperationKind::Save,
        tenant: "tenant-a".into(),
        roles: vec!["member".into()],
        request_time: Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap(),
        instance: Instance {
            uuid: uuid::Uuid::from_u128(0x6f1c1f0e_3a52_4d1e_9d55_0c1a2b3c4d5e),
            name: "web-1".into(),
            host: "host-a".into(),
            running: true,
            memory_bytes: 128 << 20,
            vcpus: 1,
            disks: vec![
                DiskInfo {
                    target: "vda".into(),
                    format: Some("qcow2".into()),
                    source: None,
                    size_bytes: Some(1 << 30),
                },
                DiskInfo {
                    target: "vdb".into(),
                    format: Some("qcow2".into()),
                    source: None,
                    size_bytes: Some(4 << 30),
                },
            ],
            has_host_devices: false,
            owner_tenant: Some("tenant-a".into()),
            cpu: cpu(&["sse4.2", "avx", "avx2"]),
            cpu_xml: None,
            current_snapshot: None,
        },
        instance_state_count: 2,
        state: None,
        save: Some(PolicySave {
            name: "nightly".into(),
            description: None,
            mode: SaveMode::Auto,
            kind: SnapshotKind::Internal,
            expires_at: None,
        }),
        target_host: "host-a".into(),
        target_host_cpu: cpu(&["sse4.2", "avx", "avx2"]),
        cpu_compatibility: CpuCompatibility::Unknown,
        quota: QuotaUsage::default(),
    }
}

/// An allowed apply on a host whose CPU is a superset of the saved one.
fn apply_request() -> PolicyInput {
    PolicyInput {
        operation: OperationKind::Apply,
        state: Some(PolicyState {
            uuid: uuid::Uuid::from_u128(0x0b7e6b52_9a3f_4f0e_8a63_3c2d1e0f9a8b),
            name: "before-upgrade".into(),
            saved_on_host: "host-a".into(),
            cpu: cpu(&["sse4.2", "avx"]),
            size_bytes: 300 << 20,
            age_seconds: 3600,
        }),
        save: None,
        target_host: "host-b".into(),
        target_host_cpu: cpu(&["sse4.2", "avx", "avx2", "avx512f"]),
        cpu_compatibility: CpuCompatibility::Superset,
        ..save_request()
    }
}

/// Requests each engine must deny, with the rule that denies them (checked, not timed).
fn deny_cases() -> Vec<(PolicyInput, &'static str)> {
    let mut raw = save_request();
    raw.instance.disks[1].format = Some("raw".into());
    let mut many = save_request();
    many.instance_state_count = 5;
    let mut devices = save_request();
    devices.instance.has_host_devices = true;
    let mut incompatible = apply_request();
    incompatible.cpu_compatibility = CpuCompatibility::Incompatible;
    let mut unknown = apply_request();
    unknown.cpu_compatibility = CpuCompatibility::Unknown;
    vec![
        (raw, "disk_format_not_allowed"),
        (many, "too_many_states"),
        (devices, "host_devices_attached"),
        (incompatible, "cpu_incompatible"),
        (unknown, "cpu_unknown"),
    ]
}

// ---- native Rust: the floor -----------------------------------------------------------------

fn native(input: &PolicyInput) -> Option<(&'static str, String)> {
    match input.operation {
        OperationKind::Save => {
            let offending: Vec<&str> = input
                .instance
                .disks
                .iter()
                .filter(|d| d.format.as_deref() != Some("qcow2"))
                .map(|d| d.target.as_str())
                .collect();
            if !offending.is_empty() {
                return Some(("disk_format_not_allowed", offending.join(", ")));
            }
            if input.instance_state_count >= 5 {
                return Some(("too_many_states", String::new()));
            }
            if input.instance.has_host_devices {
                return Some(("host_devices_attached", String::new()));
            }
            None
        }
        OperationKind::Apply => {
            let state = input.state.as_ref()?;
            let missing: Vec<&str> = state
                .cpu
                .features
                .iter()
                .filter(|f| !input.target_host_cpu.features.contains(f))
                .map(String::as_str)
                .collect();
            match input.cpu_compatibility {
                CpuCompatibility::Identical | CpuCompatibility::Superset => None,
                CpuCompatibility::Incompatible => Some(("cpu_incompatible", missing.join(", "))),
                CpuCompatibility::Unknown => Some(("cpu_unknown", missing.join(", "))),
            }
        }
        OperationKind::Delete => None,
    }
}

// ---- Rego (regorus) -------------------------------------------------------------------------

const REGO: &str = r#"
package snapgate

import rego.v1

allowed_formats := {"qcow2"}
max_states := 5
host_features := {f | some f in input.target_host_cpu.features}
missing_features := [f | some f in input.state.cpu.features; not host_features[f]]

deny contains {"code": "disk_format_not_allowed", "disks": offending} if {
    input.operation == "save"
    offending := [d.target | some d in input.instance.disks; not allowed_formats[d.format]]
    count(offending) > 0
}

deny contains {"code": "too_many_states"} if {
    input.operation == "save"
    input.instance_state_count >= max_states
}

deny contains {"code": "host_devices_attached"} if {
    input.operation == "save"
    input.instance.has_host_devices
}

deny contains {"code": "cpu_incompatible", "missing": missing_features} if {
    input.operation == "apply"
    input.cpu_compatibility == "incompatible"
}

deny contains {"code": "cpu_unknown", "missing": missing_features} if {
    input.operation == "apply"
    input.cpu_compatibility == "unknown"
}
"#;

fn rego_engine() -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("snapgate.rego".into(), REGO.into())
        .expect("rego parses");
    engine
}

/// Codes of the denials, sorted.
fn rego(engine: &mut regorus::Engine, input: &PolicyInput) -> Vec<String> {
    let value = serde_json::to_value(input).expect("input serializes");
    engine.set_input(regorus::Value::from(value));
    let deny = engine
        .eval_rule("data.snapgate.deny".into())
        .expect("rego evaluates");
    let mut codes: Vec<String> = deny
        .as_set()
        .map(|set| {
            set.iter()
                .filter_map(|d| d["code"].as_string().ok().map(|s| s.to_string()))
                .collect()
        })
        .unwrap_or_default();
    codes.sort();
    codes
}

// ---- Cedar (cedar-policy) -------------------------------------------------------------------

const CEDAR: &str = r#"
permit(principal, action, resource);

@id("disk_format_not_allowed")
forbid(principal, action == Action::"save", resource)
unless { ["qcow2"].containsAll(context.disk_formats) };

@id("too_many_states")
forbid(principal, action == Action::"save", resource)
when { context.instance_state_count >= 5 };

@id("host_devices_attached")
forbid(principal, action == Action::"save", resource)
when { context.has_host_devices };

@id("cpu_incompatible")
forbid(principal, action == Action::"apply", resource)
when { context.cpu_compatibility == "incompatible" };

@id("cpu_unknown")
forbid(principal, action == Action::"apply", resource)
when { context.cpu_compatibility == "unknown" };
"#;

struct Cedar {
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
}

impl Cedar {
    fn new() -> Self {
        Cedar {
            policies: PolicySet::from_str(CEDAR).expect("cedar parses"),
            entities: Entities::empty(),
            authorizer: Authorizer::new(),
        }
    }

    /// Ids of the forbid policies that decided, sorted; empty when allowed.
    fn evaluate(&self, input: &PolicyInput) -> Vec<String> {
        let context = Context::from_json_value(
            json!({
                "disk_formats": input.instance.disks.iter().map(|d| d.format.clone().unwrap_or_else(|| "unknown".into())).collect::<Vec<_>>(),
                "instance_state_count": input.instance_state_count,
                "has_host_devices": input.instance.has_host_devices,
                "cpu_compatibility": serde_json::to_value(input.cpu_compatibility).expect("serializes"),
            }),
            None,
        )
        .expect("context");
        let principal = EntityUid::from_type_name_and_id(
            "Tenant".parse().expect("type"),
            input.tenant.parse().expect("id"),
        );
        let action = EntityUid::from_type_name_and_id(
            "Action".parse().expect("type"),
            input.operation.as_str().parse().expect("id"),
        );
        let resource = EntityUid::from_type_name_and_id(
            "Instance".parse().expect("type"),
            input.instance.uuid.to_string().parse().expect("id"),
        );
        let request = cedar_policy::Request::new(principal, action, resource, context, None)
            .expect("request");
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &self.entities);
        if response.decision() == cedar_policy::Decision::Allow {
            return Vec::new();
        }
        let mut ids: Vec<String> = response
            .diagnostics()
            .reason()
            .filter_map(|id| {
                self.policies
                    .policy(id)
                    .and_then(|p| p.annotation("id").map(str::to_string))
            })
            .collect();
        ids.sort();
        ids
    }
}

// ---- WebAssembly chain ----------------------------------------------------------------------

fn plugin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins.sh",
        path.display()
    );
    path
}

/// The four example plugins with no operation filter, cpu-compat last: every request
/// instantiates and runs all four.
fn wasm_chain(limits: PolicyLimits) -> WasmPolicyEngine {
    let specs = [
        "disk-format",
        "max-states-per-instance",
        "no-passthrough",
        "cpu-compat",
    ]
    .into_iter()
    .map(|name| PluginSpec::new(name, plugin(name)))
    .collect();
    WasmPolicyEngine::load(specs, limits).expect("plugins load")
}

fn wasm_single() -> WasmPolicyEngine {
    WasmPolicyEngine::load(
        vec![PluginSpec::new("no-passthrough", plugin("no-passthrough"))],
        PolicyLimits::default(),
    )
    .expect("plugin loads")
}

/// No pools: every instance is created on the request path (the design before pools).
fn inline_limits() -> PolicyLimits {
    PolicyLimits {
        prewarm_instances: 0,
        ..PolicyLimits::default()
    }
}

// ---- measuring ------------------------------------------------------------------------------

struct Row {
    name: String,
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn row(name: &str, mut samples: Vec<Duration>) -> Row {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Row {
        name: name.to_string(),
        p50: at(0.50),
        p99: at(0.99),
        mean,
    }
}

/// Times `f` on alternating save and apply requests, back-to-back.
fn measure(name: &str, f: impl FnMut(&PolicyInput)) -> Row {
    measure_paced(name, Duration::ZERO, f)
}

/// Times `f` on alternating save and apply requests with `gap` of idle time (not timed)
/// before each.
fn measure_paced(name: &str, gap: Duration, mut f: impl FnMut(&PolicyInput)) -> Row {
    let requests = [save_request(), apply_request()];
    for i in 0..WARMUP {
        f(&requests[i % 2]);
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for i in 0..ITERATIONS {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        let start = Instant::now();
        f(std::hint::black_box(&requests[i % 2]));
        samples.push(start.elapsed());
    }
    row(name, samples)
}

fn us(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e6)
}

fn main() {
    let chain = wasm_chain(PolicyLimits::default());
    let chain_inline = wasm_chain(inline_limits());
    let single = wasm_single();
    let mut rego_engine = rego_engine();
    let cedar = Cedar::new();

    // Same verdicts everywhere before timing anything.
    for (input, code) in deny_cases() {
        let (_, wasm_code, _) = chain.evaluate_blocking(&input).denial.expect("wasm denies");
        assert_eq!(wasm_code, code);
        let (_, inline_code, _) = chain_inline
            .evaluate_blocking(&input)
            .denial
            .expect("wasm denies");
        assert_eq!(inline_code, code);
        assert_eq!(native(&input).map(|d| d.0), Some(code));
        assert_eq!(rego(&mut rego_engine, &input), [code]);
        assert_eq!(cedar.evaluate(&input), [code]);
    }
    for input in [save_request(), apply_request()] {
        assert_eq!(chain.evaluate_blocking(&input).denial, None);
        assert_eq!(chain_inline.evaluate_blocking(&input).denial, None);
        assert_eq!(native(&input), None);
        assert!(rego(&mut rego_engine, &input).is_empty());
        assert!(cedar.evaluate(&input).is_empty());
    }

    let mut rows = Vec::new();
    rows.push(measure("native Rust (floor)", |i| {
        std::hint::black_box(native(i));
    }));
    rows.push(measure("Cedar (cedar-policy 4.14)", |i| {
        std::hint::black_box(cedar.evaluate(i));
    }));
    rows.push(measure("Rego (regorus 0.14)", |i| {
        std::hint::black_box(rego(&mut rego_engine, i));
    }));
    rows.push(measure(
        "wasm: 1 plugin (no-passthrough), fresh instance",
        |i| {
            std::hint::black_box(single.evaluate_blocking(i));
        },
    ));
    rows.push(measure(
        "wasm: chain of 4 plugins, fresh instance each (sync)",
        |i| {
            std::hint::black_box(chain.evaluate_blocking(i));
        },
    ));

    // The gateway's path: PolicyEngine::evaluate, called from a task on a runtime worker (as a
    // request handler is). It runs the chain in `block_in_place`; the previous design, a hop
    // to `spawn_blocking` and back, is measured beside it in the same run.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let async_row = |name: &str, gap: Duration, via_spawn_blocking: bool| {
        let chain = chain.clone();
        let name = name.to_owned();
        runtime
            .block_on(runtime.spawn(async move {
                let requests = [save_request(), apply_request()];
                let run = |i: usize| {
                    let chain = chain.clone();
                    let request = requests[i % 2].clone();
                    async move {
                        if via_spawn_blocking {
                            tokio::task::spawn_blocking(move || chain.evaluate_blocking(&request))
                                .await
                                .expect("evaluation task")
                        } else {
                            chain.evaluate(&request).await
                        }
                    }
                };
                for i in 0..WARMUP {
                    run(i).await;
                }
                let mut samples = Vec::with_capacity(ITERATIONS);
                for i in 0..ITERATIONS {
                    if !gap.is_zero() {
                        // Stands for the worker's time spent elsewhere between policy calls.
                        std::thread::sleep(gap);
                    }
                    let future = run(i);
                    let start = Instant::now();
                    std::hint::black_box(future.await);
                    samples.push(start.elapsed());
                }
                row(&name, samples)
            }))
            .expect("benchmark task")
    };
    rows.push(async_row(
        "wasm: chain of 4 via PolicyEngine::evaluate (block_in_place)",
        Duration::ZERO,
        false,
    ));
    rows.push(async_row(
        "wasm: chain of 4 via spawn_blocking (previous design)",
        Duration::ZERO,
        true,
    ));
    rows.push(measure(
        "wasm: chain of 4 (sync), prewarm off: every instance inline",
        |i| {
            std::hint::black_box(chain_inline.evaluate_blocking(i));
        },
    ));

    // Paced: the pools have time to refill between requests.
    let paced = format!("paced {} µs:", PACING_GAP.as_micros());
    rows.push(measure_paced(&format!("{paced} Cedar"), PACING_GAP, |i| {
        std::hint::black_box(cedar.evaluate(i));
    }));
    rows.push(measure_paced(&format!("{paced} Rego"), PACING_GAP, |i| {
        std::hint::black_box(rego(&mut rego_engine, i));
    }));
    rows.push(measure_paced(
        &format!("{paced} wasm: 1 plugin, pre-instantiated"),
        PACING_GAP,
        |i| {
            std::hint::black_box(single.evaluate_blocking(i));
        },
    ));
    rows.push(measure_paced(
        &format!("{paced} wasm: chain of 4, pre-instantiated (sync)"),
        PACING_GAP,
        |i| {
            std::hint::black_box(chain.evaluate_blocking(i));
        },
    ));
    rows.push(async_row(
        &format!("{paced} wasm: chain of 4 via PolicyEngine::evaluate (block_in_place)"),
        PACING_GAP,
        false,
    ));
    rows.push(async_row(
        &format!("{paced} wasm: chain of 4 via spawn_blocking (previous design)"),
        PACING_GAP,
        true,
    ));
    rows.push(measure_paced(
        &format!("{paced} wasm: chain of 4 (sync), prewarm off"),
        PACING_GAP,
        |i| {
            std::hint::black_box(chain_inline.evaluate_blocking(i));
        },
    ));

    println!("\n{ITERATIONS} requests (alternating an allowed save and an allowed apply), after {WARMUP} warm-up\n");
    println!("| engine | p50 µs | p99 µs | mean µs |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.name,
            us(r.p50),
            us(r.p99),
            us(r.mean)
        );
    }
}
