//! What feeds the placement index and the breakers: inventories, lifecycle events, health,
//! and a host that accepts connections but never answers.

mod common;

use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use snapgate_compute::{HostConfig, HostResilience, LibvirtBackend};
use snapgate_core::ports::{BreakerState, ComputeBackend, ComputeError, HostEvent};
use tokio::sync::broadcast;
use uuid::Uuid;
use virt::domain::Domain;

/// A guard against a hang, not a latency bound: the events arrive in milliseconds.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn next_event(rx: &mut broadcast::Receiver<HostEvent>) -> HostEvent {
    tokio::time::timeout(HANG_GUARD, rx.recv())
        .await
        .expect("a host event arrives")
        .expect("the event channel is open")
}

#[tokio::test]
async fn a_host_inventory_lists_every_domain_with_whether_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let listed = backend.list_instances(DEMO_HOST).await.unwrap();
    for uuid in [DEMO_WEB, DEMO_DB, NOVA_APP, RAW_DISK, GPU_VM, STOPPED_VM] {
        let found = listed.iter().find(|l| l.uuid == uuid);
        let found = found.unwrap_or_else(|| panic!("{uuid} listed in {listed:?}"));
        assert_eq!(found.active, uuid != STOPPED_VM, "{found:?}");
    }
    assert_eq!(
        backend
            .instance_owner(DEMO_HOST, NOVA_APP)
            .await
            .unwrap()
            .as_deref(),
        Some("11111111-1111-1111-1111-111111111111")
    );
    assert!(matches!(
        backend.instance_owner(DEMO_HOST, Uuid::new_v4()).await,
        Err(ComputeError::InstanceNotFound(_))
    ));
}

#[tokio::test]
async fn lifecycle_events_of_a_host_reach_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let mut events = backend.subscribe();
    let uuid = Uuid::new_v4();
    let xml = format!(
        "<domain type='test'><name>evented</name><uuid>{uuid}</uuid><memory>65536</memory>\
         <os><type>hvm</type></os></domain>"
    );
    backend
        .with_connection(DEFAULT_HOST, |conn| {
            let dom = Domain::define_xml(conn, &xml).unwrap();
            dom.create().unwrap();
            dom.destroy().unwrap();
            dom.undefine().unwrap();
        })
        .unwrap();
    let host = DEFAULT_HOST.to_owned();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match next_event(&mut events).await {
            e @ (HostEvent::InstanceSeen { .. } | HostEvent::InstanceGone { .. }) => seen.push(e),
            HostEvent::Reconnected { .. } => {}
        }
    }
    assert_eq!(
        seen,
        [
            HostEvent::InstanceSeen {
                host: host.clone(),
                instance: uuid,
                active: false
            },
            HostEvent::InstanceSeen {
                host: host.clone(),
                instance: uuid,
                active: true
            },
            HostEvent::InstanceGone {
                host,
                instance: uuid
            },
        ]
    );
}

/// A unix socket that accepts connections and never answers: a host that hangs. Counts the
/// connections it accepted, and keeps them open.
fn silent_socket(path: &std::path::Path) -> Arc<AtomicUsize> {
    let listener = UnixListener::bind(path).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    accepted
}

#[tokio::test]
async fn a_host_that_never_answers_is_judged_down_once_and_then_refused_without_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hanging.sock");
    let accepted = silent_socket(&socket);
    let resilience = HostResilience {
        connect_timeout: Duration::from_millis(300),
        // No background retry during the test: only requests could reach the host.
        reconnect_min: Duration::from_secs(3600),
        reconnect_max: Duration::from_secs(3600),
        ..HostResilience::default()
    };
    let backend = LibvirtBackend::new(
        vec![
            HostConfig::new(
                "hanging",
                format!("test+unix:///default?socket={}", socket.display()),
            ),
            HostConfig::new(DEMO_HOST, demo_node_uri()),
        ],
        options().with_resilience(resilience),
    );
    assert!(matches!(
        backend.ping("hanging").await,
        Err(ComputeError::HostUnreachable { ref message, .. }) if message.contains("connect timeout")
    ));
    let health = backend.health();
    let hanging = health.iter().find(|h| h.host == "hanging").unwrap();
    assert_eq!(hanging.breaker, BreakerState::Open, "{health:?}");
    assert!(!hanging.connected);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // Known down: every call is refused without opening another connection to it.
    for _ in 0..5 {
        assert!(matches!(
            backend.describe("hanging", DEMO_WEB).await,
            Err(ComputeError::HostUnreachable { .. })
        ));
    }
    assert!(matches!(
        backend.search(Uuid::new_v4(), None).await,
        Err(ComputeError::HostUnreachable { host, .. }) if host == "hanging"
    ));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "no call reached the dead host"
    );
    // The other host is not affected.
    assert_eq!(backend.locate(DEMO_WEB).await.unwrap().host, DEMO_HOST);
    let demo = backend
        .health()
        .into_iter()
        .find(|h| h.host == DEMO_HOST)
        .unwrap();
    assert_eq!(demo.breaker, BreakerState::Closed);
}
