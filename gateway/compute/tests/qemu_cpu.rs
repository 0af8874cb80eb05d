//! CPU comparison on a real QEMU host (`qemu:///system`). The verdict must be the
//! hypervisor's view for the instance's own virtualization type: on these machines KVM does
//! not work, guests run under TCG (`<domain type='qemu'>`), and comparing with the host's
//! physical CPU (`virConnectCompareCPU`) wrongly says `qemu64` is incompatible.
//!
//! libvirtd is started with `scripts/realvm/libvirtd-up.sh` when it is down; a machine where
//! it cannot be reached fails these tests. Domains are only defined (comparison needs no
//! running guest) and are undefined again even when a test fails.

mod common;

use std::path::PathBuf;
use std::process::Command;

use snapgate_compute::{HostConfig, LibvirtBackend};
use snapgate_core::ports::ComputeBackend;
use snapgate_core::CpuCompatibility;
use uuid::Uuid;
use virt::connect::Connect;
use virt::domain::Domain;

const QEMU_HOST: &str = "qemu";
const QEMU_URI: &str = "qemu:///system";

/// A libvirt feature that QEMU's TCG does not emulate (QEMU 10 has no AVX-512 in TCG).
const TCG_MISSING_FEATURE: &str = "avx512-vp2intersect";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The real-VM suite kills libvirtd on purpose in one test, holding this lock exclusively
/// (tests/src/realvm/daemon.rs); tests that need libvirtd hold it shared, here for the life of
/// the test process (nextest runs each test in its own process).
fn hold_libvirtd_outage_lock() {
    static HELD: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    HELD.get_or_init(|| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/snapgate-libvirtd-outage.lock")
            .expect("open the libvirtd outage lock");
        file.lock_shared().expect("lock the libvirtd outage lock");
        file
    });
}

/// Starts libvirtd if needed and connects; panics (fails the test) if that is impossible.
fn connect_qemu() -> Connect {
    hold_libvirtd_outage_lock();
    let script = workspace_root().join("scripts/realvm/libvirtd-up.sh");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}): {}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Connect::open(Some(QEMU_URI)).unwrap_or_else(|e| panic!("{QEMU_URI} unreachable: {e}"))
}

/// A defined (never started) domain, undefined on drop.
struct DefinedDomain {
    uuid: Uuid,
    dom: Domain,
}

impl DefinedDomain {
    fn define(conn: &Connect, virt_type: &str, label: &str) -> Self {
        let uuid = Uuid::new_v4();
        let name = format!(
            "snapgate-cpucmp-{}-{label}-{}",
            std::process::id(),
            &uuid.simple().to_string()[..8]
        );
        let xml = format!(
            "<domain type='{virt_type}'>\
               <name>{name}</name><uuid>{uuid}</uuid>\
               <memory unit='MiB'>64</memory><vcpu>1</vcpu>\
               <os><type arch='x86_64'>hvm</type></os>\
               <cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>\
             </domain>"
        );
        let dom = Domain::define_xml(conn, &xml)
            .unwrap_or_else(|e| panic!("defining a {virt_type} domain failed: {e}"));
        Self { uuid, dom }
    }
}

impl Drop for DefinedDomain {
    fn drop(&mut self) {
        if let Err(e) = self.dom.undefine() {
            eprintln!("cannot undefine test domain {}: {e}", self.uuid);
        }
    }
}

fn qemu_backend(state_dir: &std::path::Path) -> LibvirtBackend {
    LibvirtBackend::new(
        vec![HostConfig::new(QEMU_HOST, QEMU_URI).with_state_dir(state_dir)],
        common::options(),
    )
}

/// libvirt's own answer for a virt type, through `virsh hypervisor-cpu-compare`.
fn virsh_verdict(virt_type: &str, cpu_xml: &str) -> CpuCompatibility {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cpu.xml");
    std::fs::write(&file, cpu_xml).unwrap();
    let out = Command::new("virsh")
        .args([
            "-c",
            QEMU_URI,
            "hypervisor-cpu-compare",
            "--virttype",
            virt_type,
        ])
        .arg(&file)
        .output()
        .expect("virsh runs");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("identical") {
        CpuCompatibility::Identical
    } else if text.contains("superset") {
        CpuCompatibility::Superset
    } else if text.contains("incompatible") {
        CpuCompatibility::Incompatible
    } else {
        panic!(
            "virsh gave no verdict: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

#[tokio::test]
async fn qemu64_fits_a_tcg_guest() {
    let conn = connect_qemu();
    let guest = DefinedDomain::define(&conn, "qemu", "tcg");
    let dir = tempfile::tempdir().unwrap();
    let backend = qemu_backend(dir.path());
    // The CPU XML a saved state holds: the domain's own `<cpu>` element.
    let cpu_xml = backend.locate(guest.uuid).await.unwrap().cpu_xml.unwrap();
    let verdict = backend
        .compare_cpu(QEMU_HOST, guest.uuid, &cpu_xml)
        .await
        .unwrap();
    assert!(
        matches!(
            verdict,
            CpuCompatibility::Identical | CpuCompatibility::Superset
        ),
        "qemu64 on a TCG guest gave {verdict:?}"
    );
    assert_eq!(verdict, virsh_verdict("qemu", &cpu_xml));
}

#[tokio::test]
async fn a_feature_tcg_lacks_is_incompatible() {
    let conn = connect_qemu();
    let caps = conn
        .get_domain_capabilities(None, None, None, Some("qemu"), 0)
        .unwrap();
    assert!(
        !caps.contains(TCG_MISSING_FEATURE),
        "this QEMU's TCG offers {TCG_MISSING_FEATURE}: pick another feature for this test"
    );
    let guest = DefinedDomain::define(&conn, "qemu", "nofeat");
    let dir = tempfile::tempdir().unwrap();
    let backend = qemu_backend(dir.path());
    let cpu_xml = format!(
        "<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model>\
         <feature policy='require' name='{TCG_MISSING_FEATURE}'/></cpu>"
    );
    assert_eq!(
        backend
            .compare_cpu(QEMU_HOST, guest.uuid, &cpu_xml)
            .await
            .unwrap(),
        CpuCompatibility::Incompatible
    );
}

#[tokio::test]
async fn what_libvirt_cannot_judge_is_unknown() {
    let conn = connect_qemu();
    let guest = DefinedDomain::define(&conn, "qemu", "unknown");
    let dir = tempfile::tempdir().unwrap();
    let backend = qemu_backend(dir.path());
    for cpu_xml in [
        // A model libvirt has never heard of: an error from libvirt, not a verdict.
        "<cpu mode='custom'><model>snapgate-imaginary-cpu</model></cpu>",
        "<cpu mode='custom'><model>qemu64</model><feature policy='require' name='no-such-feature'/></cpu>",
        "not xml <",
    ] {
        assert_eq!(
            backend
                .compare_cpu(QEMU_HOST, guest.uuid, cpu_xml)
                .await
                .unwrap(),
            CpuCompatibility::Unknown,
            "{cpu_xml}"
        );
    }
}

/// The same CPU is judged for each domain's own type: a `kvm` domain gets libvirt's KVM view
/// (on these machines, where KVM does not work, that differs from TCG's), a `qemu` one TCG's.
#[tokio::test]
async fn the_verdict_follows_the_domain_type() {
    let conn = connect_qemu();
    let tcg = DefinedDomain::define(&conn, "qemu", "typeq");
    let kvm = DefinedDomain::define(&conn, "kvm", "typek");
    let dir = tempfile::tempdir().unwrap();
    let backend = qemu_backend(dir.path());
    let cpu_xml = "<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>";
    for (guest, virt_type) in [(&tcg, "qemu"), (&kvm, "kvm")] {
        assert_eq!(
            backend
                .compare_cpu(QEMU_HOST, guest.uuid, cpu_xml)
                .await
                .unwrap(),
            virsh_verdict(virt_type, cpu_xml),
            "{virt_type} domain"
        );
    }
}
