//! Fencing: a gateway that was only paused (`kill -STOP` longer than the stale interval, then
//! `kill -CONT`) must not finish or undo an operation another gateway took over. Two gateways
//! on one PostgreSQL database and Redis, and one compute host they both see (libvirtd's shared
//! default test driver): gateway A reaches it through a proxy that holds A's snapshot call.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use snapgate_core::ports::Repository;
use snapgate_core::{Operation, OperationStatus, State, StateStatus};
use snapgate_store::SeaRepository;
use snapgate_tests::app::{demo, Db, Shared, TestApp};
use snapgate_tests::cluster;
use snapgate_tests::hosts::{metric_sum, HostProxy, LIBVIRTD_SOCKET, SNAPSHOT_CREATE_CALL};
use snapgate_tests::shared_driver::{shared_driver_uri, SharedDriver};
use uuid::Uuid;

/// Short stale interval (heartbeats every 0.5 s); no keepalive, so a connection held up by
/// the proxy or by the pause is never judged dead (what is proven is the lease, not a breaker).
const CONFIG: &str = "[snapshots]\nstale_after_secs = 2\nmaintenance_interval_secs = 0.2\n\
    [compute]\nkeepalive_interval_secs = 0\nplacement_refresh_secs = 3600\n";

/// Polls `check` (every 50 ms, a minute at most as a hang guard) until it gives a value.
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited a minute for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn operation(repo: &SeaRepository, id: Uuid) -> Operation {
    repo.get_operation(id)
        .await
        .unwrap()
        .expect("the operation")
}

async fn state(repo: &SeaRepository, id: Uuid) -> State {
    repo.get_state(id).await.unwrap().expect("the state")
}

/// The quota usage `gateway` shows is what the database keeps, with nothing reserved.
async fn assert_usage_is_truth(gateway: &TestApp, repo: &SeaRepository) {
    let truth = repo
        .tenant_totals()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.tenant == demo::TENANT)
        .map_or((0, 0), |t| (t.states, t.bytes));
    let q = gateway
        .get(&format!("/v1/quotas/{}", demo::TENANT), &gateway.member)
        .await;
    assert_eq!(q.status, 200, "{}", q.body);
    let u = &q.body["usage"];
    assert_eq!(
        (
            u["states"]["in_use"].as_i64(),
            u["state_bytes"]["in_use"].as_i64()
        ),
        (Some(truth.0), Some(truth.1)),
        "{}",
        q.body
    );
    for r in [
        "states",
        "state_bytes",
        "concurrent_operations",
        "saves_per_hour",
    ] {
        assert_eq!(u[r]["reserved"], 0, "{r}: {}", q.body);
    }
}

/// Writes of a save that a lease refused on a gateway, by write.
fn fenced(page: &str, write: &str) -> f64 {
    metric_sum(
        page,
        "snapgate_operations_fenced_total",
        &[("kind", "save"), ("write", write)],
    )
}

fn id(body: &Value, key: &str) -> Uuid {
    body[key].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_gateway_cannot_finish_a_save_another_took_over() {
    let dir = tempfile::tempdir().unwrap();
    let driver = SharedDriver::open().await;
    // A domain of this test's own on the shared host (other runs' domains do not matter).
    let instance = Uuid::new_v4();
    let domain = format!("fence-{}", instance.simple());
    driver
        .running_domain(dir.path(), &domain, &instance.to_string(), demo::TENANT)
        .await;

    let shared = std::sync::Arc::new(Shared::new(Db::Postgres, true).await);
    let proxy = HostProxy::start(&dir.path().join("a.sock"), Path::new(LIBVIRTD_SOCKET));
    // One host, "h0", the same libvirt state for both: A through the proxy, B directly.
    let a = TestApp::start_with(
        shared.clone(),
        CONFIG,
        &[("h0".into(), shared_driver_uri(&proxy.socket))],
    )
    .await;
    let b = TestApp::start_with(
        shared.clone(),
        CONFIG,
        &[("h0".into(), shared_driver_uri(Path::new(LIBVIRTD_SOCKET)))],
    )
    .await;
    let (a_pid, b_pid) = (a.pid().unwrap(), b.pid().unwrap());
    let repo = SeaRepository::connect(&shared.db_url).await.unwrap();

    // A starts a save; its snapshot call waits in the proxy, unseen by libvirtd.
    proxy.hold_calls(SNAPSHOT_CREATE_CALL);
    let r = a.save(&instance.to_string(), "late", &a.member).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let (op_id, state_id) = (id(&r.body, "operation"), id(&r.body, "uuid"));
    until("A's snapshot call held in the proxy", || async {
        (proxy.held_calls() == 1).then_some(())
    })
    .await;
    let running = operation(&repo, op_id).await;
    assert_eq!(
        (running.status, running.lease_epoch),
        (OperationStatus::Running, 0)
    );
    assert!(
        running
            .lease_owner
            .as_deref()
            .is_some_and(|o| o.ends_with(&format!("/{a_pid}"))),
        "{running:?}"
    );

    // A is paused past the stale interval: B takes the save over and rolls it back.
    cluster::signal(a_pid, "-STOP");
    let taken = until("B to take the save over and end it", || async {
        let op = operation(&repo, op_id).await;
        (op.status != OperationStatus::Running && op.status != OperationStatus::Pending)
            .then_some(op)
    })
    .await;
    assert_eq!(
        (taken.status, taken.lease_epoch),
        (OperationStatus::Failed, 1),
        "{taken:?}"
    );
    assert_eq!(taken.error.as_ref().unwrap().code, "interrupted");
    assert!(
        taken
            .lease_owner
            .as_deref()
            .is_some_and(|o| o.ends_with(&format!("/{b_pid}"))),
        "{taken:?}"
    );
    let rolled_back = state(&repo, state_id).await;
    assert_eq!(rolled_back.status, StateStatus::Error);
    assert_usage_is_truth(&b, &repo).await;
    assert_eq!(proxy.held_calls(), 1, "A's call is still held");

    // A wakes up, its call still held: its first heartbeat is refused and the heartbeat stops
    // (the ticks A missed while stopped come at once: a heartbeat that went on would be
    // refused again and again).
    cluster::signal(a_pid, "-CONT");
    a.wait_for_metrics("A's heartbeat refused by the lease", |page| {
        fenced(page, "heartbeat") >= 1.0
    })
    .await;
    // Its save goes through libvirt after all: too late, its lease is gone.
    proxy.release_calls();
    let page = a
        .wait_for_metrics("A's end of the save refused by the lease", |page| {
            fenced(page, "finish") >= 1.0
        })
        .await;
    assert_eq!(
        fenced(&page, "heartbeat"),
        1.0,
        "the heartbeat stopped itself"
    );
    assert!(
        a.log()
            .contains("deleted the snapshot of a save taken over by another gateway"),
        "A's late save made a snapshot, and A deleted it:\n{}",
        a.log()
    );

    // Nothing A did late shows: the records are B's end, the state stays failed, no snapshot
    // lacks a record, and usage is the database's on both gateways.
    assert_eq!(operation(&repo, op_id).await, taken);
    assert_eq!(state(&repo, state_id).await, rolled_back);
    assert_eq!(driver.snapshots(&domain).await, Vec::<String>::new());
    assert_usage_is_truth(&a, &repo).await;
    assert_usage_is_truth(&b, &repo).await;

    // A goes on working: its next save is its own to finish.
    let kept = a.saved(&instance.to_string(), "after", &a.member).await;
    assert_eq!(
        driver.snapshots(&domain).await,
        vec![kept["uuid"].as_str().unwrap().to_owned()]
    );
    assert_usage_is_truth(&a, &repo).await;
}
