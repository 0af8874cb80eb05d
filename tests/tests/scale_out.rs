//! Scale-out over the real pieces: gateways on PostgreSQL and a loopback Redis Cluster (three
//! masters, three replicas), behind a real HAProxy. A cluster master dies mid-run; a gateway
//! dies under load. Every test holds the cluster lock (one of them kills a master).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};
use snapgate_core::ports::Repository;
use snapgate_store::SeaRepository;
use snapgate_tests::app::{
    demo, jwt, many_instances_node, many_uuid, operator_jwt, Db, Shared, TestApp, JWT_SECRET,
};
use snapgate_tests::cluster::{self, ClusterLock};
use snapgate_tests::haproxy::HaProxy;

/// HTTP through one address (a gateway or HAProxy), with the transport error kept visible.
#[derive(Clone)]
struct Front {
    url: String,
    http: reqwest::Client,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Front {
    fn new(url: &str) -> Front {
        Front {
            url: url.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Answer, reqwest::Error> {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok(Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    async fn save(&self, i: usize, name: &str, token: &str) -> Answer {
        self.call(
            "POST",
            &format!("/v1/instances/{}/states", many_uuid(i)),
            token,
            Some(json!({ "name": name })),
        )
        .await
        .expect("the save reaches a gateway")
    }

    /// Waits for an operation to end (retrying a wait that lost its gateway).
    async fn wait(&self, op: &str, token: &str) -> Value {
        for _ in 0..40 {
            match self
                .call(
                    "GET",
                    &format!("/v1/operations/{op}/wait?timeout=30"),
                    token,
                    None,
                )
                .await
            {
                Ok(a) if a.status == 200 => {
                    let s = a.body["status"].as_str().unwrap_or_default();
                    if s == "succeeded" || s == "failed" {
                        return a.body;
                    }
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("operation {op} did not end");
    }
}

fn member() -> String {
    jwt(demo::TENANT, &["member"], 3600, JWT_SECRET)
}

/// Limits are the cloud operator's to set (operator scope and the admin role).
fn operator() -> String {
    operator_jwt(demo::TENANT, &["admin", "member"], 3600)
}

async fn set_states_limit(front: &Front, states: i64) {
    let r = front
        .call(
            "PUT",
            &format!("/v1/quotas/{}", demo::TENANT),
            &operator(),
            Some(json!({"states": states, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// The quota usage a gateway shows equals what the database keeps; nothing stays reserved.
async fn assert_usage_is_truth(front: &Front, db_url: &str) {
    let repo = SeaRepository::connect(db_url).await.unwrap();
    let truth = repo
        .tenant_totals()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.tenant == demo::TENANT)
        .map(|t| (t.states, t.bytes))
        .unwrap_or((0, 0));
    let q = front
        .call(
            "GET",
            &format!("/v1/quotas/{}", demo::TENANT),
            &member(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(q.status, 200, "{:?}", q.body);
    let u = &q.body["usage"];
    let seen = (
        u["states"]["in_use"].as_i64().unwrap(),
        u["state_bytes"]["in_use"].as_i64().unwrap(),
    );
    assert_eq!(seen, truth, "{}", q.body);
    for r in ["states", "state_bytes", "concurrent_operations"] {
        assert_eq!(u[r]["reserved"], 0, "{r}: {}", q.body);
    }
    assert_eq!(u["concurrent_operations"]["in_use"], 0, "{}", q.body);
}

/// Saves `count` instances at once starting at `first`; (accepted bodies, refused, other).
async fn burst(
    front: &Front,
    first: usize,
    count: usize,
    prefix: &str,
) -> (Vec<Value>, usize, Vec<Answer>) {
    let token = member();
    let answers = join_all((first..first + count).map(|i| {
        let (front, token) = (front.clone(), token.clone());
        let name = format!("{prefix}-{i}");
        async move { front.save(i, &name, &token).await }
    }))
    .await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut other = Vec::new();
    for a in answers {
        match (a.status, a.code()) {
            (202, _) => accepted.push(a.body),
            (403, "quota_exceeded") => refused += 1,
            _ => other.push(a),
        }
    }
    (accepted, refused, other)
}

async fn wait_all_succeeded(front: &Front, accepted: &[Value]) {
    for a in accepted {
        let op = front
            .wait(a["operation"].as_str().unwrap(), &member())
            .await;
        assert_eq!(op["status"], "succeeded", "{op}");
    }
}

/// The master serving the demo tenant's slot (its keys are `<prefix>:{demo}:…`) and its replica.
fn tenant_master_and_replica() -> (u16, cluster::Node, cluster::Node) {
    let slot = cluster::slot_of(&format!("{{{}}}", demo::TENANT));
    let master = cluster::master_of(slot).expect("a master serves the tenant's slot");
    let replica = cluster::replica_of(&master);
    (slot, master, replica)
}

/// Freezes the replica and cuts its replication link, so the writes that follow never reach
/// it (a frozen replica alone would still find them in its socket buffer when it wakes).
struct FrozenReplica {
    pid: u32,
}

impl FrozenReplica {
    fn freeze(replica: &cluster::Node, master: &cluster::Node) -> FrozenReplica {
        let pid = cluster::pid(replica.port);
        cluster::signal(pid, "-STOP");
        cluster::disconnect_replicas(master.port);
        FrozenReplica { pid }
    }

    /// Kills the master (`kill -9`), then lets the replica run: it finds its master gone and is
    /// promoted, with a copy that lacks every write made while it was frozen.
    fn kill_master_and_thaw(self, master: &cluster::Node) {
        cluster::signal(cluster::pid(master.port), "-9");
        cluster::signal(self.pid, "-CONT");
        std::mem::forget(self);
    }
}

impl Drop for FrozenReplica {
    fn drop(&mut self) {
        cluster::signal(self.pid, "-CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_failover_fails_closed_then_rebuilds_a_promoted_replica_from_the_database() {
    let _cluster = ClusterLock::acquire();
    let dir = tempfile::tempdir().unwrap();
    let hosts = [(
        "many".to_owned(),
        many_instances_node(dir.path(), 200, demo::TENANT),
    )];
    let shared = Arc::new(Shared::on_redis_cluster(Db::Postgres).await);
    let gateway = TestApp::start_with(shared.clone(), "", &hosts).await;
    let front = Front::new(&gateway.url);
    set_states_limit(&front, 10).await;
    let (slot, master, replica) = tenant_master_and_replica();

    let (before, _, other) = burst(&front, 0, 4, "before").await;
    assert_eq!((before.len(), other.len()), (4, 0), "{other:?}");
    wait_all_succeeded(&front, &before).await;

    // Three more saves reach the master only; then it dies and the stale replica takes over.
    let frozen = FrozenReplica::freeze(&replica, &master);
    let (unreplicated, _, other) = burst(&front, 4, 3, "unreplicated").await;
    assert_eq!((unreplicated.len(), other.len()), (3, 0), "{other:?}");
    wait_all_succeeded(&front, &unreplicated).await;
    frozen.kill_master_and_thaw(&master);

    // While no live master serves the slot (the dead one is still listed until the cluster
    // marks it failed), saves fail closed.
    let promoted = || cluster::master_of(slot).is_some_and(|m| m.id != master.id);
    let mut next = 7;
    let mut unavailable = 0;
    let mut racing = Vec::new();
    while !promoted() {
        let a = front.save(next, "during", &member()).await;
        next += 1;
        if !promoted() {
            assert_eq!(
                (a.status, a.code()),
                (503, "quota_backend_unavailable"),
                "{:?}",
                a.body
            );
            unavailable += 1;
        } else {
            // The promotion happened during this call: it may have been served either way.
            assert!(
                a.status == 503 || a.status == 202 || a.status == 403,
                "{a:?}"
            );
            if a.status == 202 {
                racing.push(a.body);
            }
        }
    }
    assert!(unavailable > 0, "the slot was never seen without a master");
    cluster::wait_until_master(&replica.id, slot).await;

    // The promoted replica believes 4 states are in use; the database holds 7 (+ any save
    // accepted just at the promotion). Exactly the rest of the limit is accepted.
    let (after, refused, other) = burst(&front, next, 10, "after").await;
    assert!(
        other.is_empty(),
        "after the failover every save is answered: {other:?}"
    );
    wait_all_succeeded(&front, &racing).await;
    wait_all_succeeded(&front, &after).await;
    let repo = SeaRepository::connect(&shared.db_url).await.unwrap();
    let kept = repo
        .tenant_totals()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.tenant == demo::TENANT)
        .map_or(0, |t| t.states);
    assert_eq!(
        kept,
        10,
        "accepted after the failover: {}, refused {refused}",
        after.len()
    );
    assert_usage_is_truth(&front, &shared.db_url).await;
    cluster::ensure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_saves_through_haproxy_to_three_gateways_exactly_ten_even_across_a_failover() {
    let _cluster = ClusterLock::acquire();
    let dir = tempfile::tempdir().unwrap();
    let hosts = [(
        "many".to_owned(),
        many_instances_node(dir.path(), 400, demo::TENANT),
    )];
    let shared = Arc::new(Shared::on_redis_cluster(Db::Postgres).await);
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(TestApp::start_with(shared.clone(), "", &hosts).await);
    }
    let proxy = HaProxy::start(&gateways.iter().collect::<Vec<_>>()).await;
    let front = Front::new(&proxy.url);
    set_states_limit(&front, 10).await;

    let (accepted, refused, other) = burst(&front, 0, 200, "race").await;
    assert_eq!(
        (accepted.len(), refused, other.len()),
        (10, 190, 0),
        "{other:?}"
    );
    wait_all_succeeded(&front, &accepted).await;
    assert_usage_is_truth(&front, &shared.db_url).await;

    // Ten more units. A burst of 100 takes them while the replica is frozen; the master is
    // killed; saves meet the slot without a master; the next 100 come after the promotion.
    set_states_limit(&front, 20).await;
    let (slot, master, replica) = tenant_master_and_replica();
    let frozen = FrozenReplica::freeze(&replica, &master);
    let (first, refused, other) = burst(&front, 0, 100, "first").await;
    assert_eq!(
        (first.len(), refused, other.len()),
        (10, 90, 0),
        "{other:?}"
    );
    wait_all_succeeded(&front, &first).await;
    frozen.kill_master_and_thaw(&master);

    // Until the replica is promoted no master serves the slot: saves fail closed (503); a
    // save racing the promotion may be answered either way.
    let promoted = || cluster::master_of(slot).is_some_and(|m| m.id == replica.id);
    let mut next = 100;
    let mut unavailable = 0;
    let mut late = Vec::new();
    while !promoted() {
        let (acc, _, other) = burst(&front, next, 5, "outage").await;
        next += 5;
        late.extend(acc);
        for a in &other {
            assert_eq!(
                (a.status, a.code()),
                (503, "quota_backend_unavailable"),
                "{:?}",
                a.body
            );
        }
        unavailable += other.len();
    }
    assert!(unavailable > 0, "no save met the slot without a master");
    // The second hundred, on the promoted replica that lacks the first hundred's ten.
    let (acc, refused, other) = burst(&front, next, 100, "second").await;
    assert!(
        other.is_empty(),
        "after the failover every save is answered: {other:?}"
    );
    assert_eq!(refused + acc.len(), 100);
    late.extend(acc);
    wait_all_succeeded(&front, &late).await;
    assert!(
        late.is_empty(),
        "{} saves over the limit after the failover",
        late.len()
    );
    let repo = SeaRepository::connect(&shared.db_url).await.unwrap();
    let kept = repo
        .tenant_totals()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.tenant == demo::TENANT)
        .map_or(0, |t| t.states);
    assert_eq!(kept, 20);
    for g in &gateways {
        assert_usage_is_truth(&Front::new(&g.url), &shared.db_url).await;
    }
    cluster::ensure();
}

/// What the load saw: requests answered well, and failures by whether they started after
/// HAProxy marked the killed gateway DOWN.
#[derive(Default)]
struct LoadTally {
    down: AtomicBool,
    stop: AtomicBool,
    ok_after_down: AtomicUsize,
    failed_before_down: AtomicUsize,
    /// Each failure after DOWN, with the operation named when it was a 409 `instance_busy`.
    failed_after_down: Mutex<Vec<(String, Option<String>)>>,
}

impl LoadTally {
    /// One request through HAProxy; `Some` when answered 2xx.
    async fn request(
        &self,
        front: &Front,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Option<Value> {
        let after = self.down.load(Ordering::SeqCst);
        let result = front.call(method, path, &member(), body).await;
        match result {
            Ok(a) if (200..300).contains(&a.status) => {
                if after {
                    self.ok_after_down.fetch_add(1, Ordering::SeqCst);
                }
                Some(a.body)
            }
            other => {
                if after {
                    let busy_with = match &other {
                        Ok(a) if a.status == 409 && a.body["error"]["code"] == "instance_busy" => {
                            a.body["error"]["operation"].as_str().map(str::to_owned)
                        }
                        _ => None,
                    };
                    let what = format!("{method} {path}: {other:?}");
                    self.failed_after_down
                        .lock()
                        .unwrap()
                        .push((what, busy_with));
                } else {
                    self.failed_before_down.fetch_add(1, Ordering::SeqCst);
                }
                None
            }
        }
    }

    async fn wait(&self, front: &Front, op: &str) -> Option<Value> {
        for _ in 0..20 {
            let path = format!("/v1/operations/{op}/wait?timeout=30");
            if let Some(b) = self.request(front, "GET", &path, None).await {
                if b["status"] == "succeeded" || b["status"] == "failed" {
                    return Some(b);
                }
            }
        }
        None
    }

    /// Save, apply, list and delete on `instances` in turn until told to stop.
    async fn work(&self, front: &Front, instances: std::ops::Range<usize>) {
        let mut n = 0;
        while !self.stop.load(Ordering::SeqCst) {
            let i = instances.start + n % instances.len();
            n += 1;
            let base = format!("/v1/instances/{}/states", many_uuid(i));
            let Some(saved) = self
                .request(
                    front,
                    "POST",
                    &base,
                    Some(json!({ "name": format!("load-{n}") })),
                )
                .await
            else {
                continue;
            };
            let state = saved["uuid"].as_str().unwrap().to_owned();
            let Some(op) = self.wait(front, saved["operation"].as_str().unwrap()).await else {
                continue;
            };
            if op["status"] == "succeeded" {
                let apply = format!("{base}/apply");
                if let Some(a) = self
                    .request(front, "POST", &apply, Some(json!({ "uuid": state })))
                    .await
                {
                    self.wait(front, a["uuid"].as_str().expect("an operation"))
                        .await;
                }
            }
            self.request(front, "GET", &base, None).await;
            if let Some(d) = self
                .request(front, "DELETE", &format!("{base}/{state}"), None)
                .await
            {
                self.wait(front, d["uuid"].as_str().unwrap()).await;
            }
        }
    }
}

/// Saves sent straight to one gateway, frozen (`kill -STOP`) as soon as the first is accepted:
/// its operations stay unfinished in the database. Returns their ids (at least one).
async fn freeze_with_work_in_flight(gateway: &TestApp, first: usize, db_url: &str) -> Vec<String> {
    let repo = SeaRepository::connect(db_url).await.unwrap();
    let direct = Front::new(&gateway.url);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in first..first + 20 {
        let (direct, tx) = (direct.clone(), tx.clone());
        tokio::spawn(async move {
            if let Ok(a) = direct
                .call(
                    "POST",
                    &format!("/v1/instances/{}/states", many_uuid(i)),
                    &member(),
                    Some(json!({ "name": "in-flight" })),
                )
                .await
            {
                let _ = tx.send(a);
            }
        });
    }
    loop {
        let a = rx.recv().await.expect("a save answered by the gateway");
        if a.status == 202 {
            break;
        }
    }
    cluster::signal(gateway.pid().expect("gateway running"), "-STOP");
    let mine: Vec<String> = (first..first + 20).map(many_uuid).collect();
    repo.unfinished_operations()
        .await
        .unwrap()
        .into_iter()
        .filter(|op| mine.contains(&op.instance_uuid.to_string()))
        .map(|op| op.uuid.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn haproxy_survives_kill_minus_nine_of_a_gateway_under_mixed_load() {
    let _cluster = ClusterLock::acquire();
    let dir = tempfile::tempdir().unwrap();
    let hosts = [(
        "many".to_owned(),
        many_instances_node(dir.path(), 200, demo::TENANT),
    )];
    let shared = Arc::new(Shared::on_redis_cluster(Db::Postgres).await);
    // The periodic quota rebuild every second: it drops the reservations gw2 took for saves it
    // never recorded (frozen between the reservation and the database write) once they are
    // older than the grace (a second here, a minute by default).
    let config = "[snapshots]\nstale_after_secs = 1\nmaintenance_interval_secs = 0.2\n[quota]\nrebuild_interval_secs = 1\nreservation_grace_secs = 1";
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(TestApp::start_with(shared.clone(), config, &hosts).await);
    }
    let proxy = HaProxy::start(&gateways.iter().collect::<Vec<_>>()).await;
    let front = Front::new(&proxy.url);
    set_states_limit(&front, -1).await;

    let tally = Arc::new(LoadTally::default());
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (tally, front) = (tally.clone(), front.clone());
            tokio::spawn(async move { tally.work(&front, w * 5..w * 5 + 5).await })
        })
        .collect();

    // Gateway 2 dies holding unfinished operations (frozen first so they cannot end).
    let mut in_flight = Vec::new();
    let mut first = 100;
    while in_flight.is_empty() {
        in_flight = freeze_with_work_in_flight(&gateways[1], first, &shared.db_url).await;
        if in_flight.is_empty() {
            cluster::signal(gateways[1].pid().unwrap(), "-CONT");
            first += 20;
        }
    }
    let gw2_pid = gateways[1].pid().unwrap();
    gateways[1].kill9().await;
    // Every operation gw2 still held when it died: a save of the load whose 202 was lost with
    // gw2 keeps its instance busy until a survivor takes it over, and a 409 naming one of these
    // is the API telling the truth, not a failed request.
    let gw2_held: Vec<String> = SeaRepository::connect(&shared.db_url)
        .await
        .unwrap()
        .unfinished_operations()
        .await
        .unwrap()
        .into_iter()
        .filter(|op| {
            op.lease_owner
                .as_deref()
                .is_some_and(|o| o.ends_with(&format!("/{gw2_pid}")))
        })
        .map(|op| op.uuid.to_string())
        .collect();
    assert!(
        in_flight.iter().all(|op| gw2_held.contains(op)),
        "gw2's frozen operations are held by gw2"
    );
    proxy.wait_status("gw2", "DOWN").await;
    tally.down.store(true, Ordering::SeqCst);

    // The load goes on through the two others.
    while tally.ok_after_down.load(Ordering::SeqCst) < 100 {
        assert!(
            !workers.iter().any(|w| w.is_finished()),
            "a load worker stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tally.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let failed: Vec<String> = tally
        .failed_after_down
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, busy_with)| !busy_with.as_ref().is_some_and(|op| gw2_held.contains(op)))
        .map(|(what, _)| what.clone())
        .collect();
    assert!(
        failed.is_empty(),
        "requests failed after gw2 was DOWN: {failed:#?}"
    );
    eprintln!(
        "load: {} failed before DOWN, {} answered after; {} operations of gw2 in flight",
        tally.failed_before_down.load(Ordering::SeqCst),
        tally.ok_after_down.load(Ordering::SeqCst),
        in_flight.len()
    );

    // A survivor takes over gw2's operations once their heartbeat is stale.
    for op in &in_flight {
        let ended = front.wait(op, &member()).await;
        assert!(
            ended["status"] == "succeeded" || ended["error"]["code"] == "interrupted",
            "{ended}"
        );
    }
    let repo = SeaRepository::connect(&shared.db_url).await.unwrap();
    assert!(repo.unfinished_operations().await.unwrap().is_empty());
    for i in (0..30).chain(100..first + 20) {
        let l = front
            .call(
                "GET",
                &format!("/v1/instances/{}/states?limit=500", many_uuid(i)),
                &member(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(l.status, 200, "{:?}", l.body);
        for s in l.body["values"].as_array().unwrap() {
            assert!(s["status"] == "available" || s["status"] == "error", "{s}");
        }
    }
    // No unit leaks: once nothing runs, the survivors' periodic rebuild makes usage the truth.
    for _ in 0..300 {
        if usage_is_truth(&front, &shared.db_url).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_usage_is_truth(&front, &shared.db_url).await;
}

async fn usage_is_truth(front: &Front, db_url: &str) -> bool {
    let repo = SeaRepository::connect(db_url).await.unwrap();
    let truth = repo
        .tenant_totals()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.tenant == demo::TENANT)
        .map_or((0, 0), |t| (t.states, t.bytes));
    let Ok(q) = front
        .call(
            "GET",
            &format!("/v1/quotas/{}", demo::TENANT),
            &member(),
            None,
        )
        .await
    else {
        return false;
    };
    let u = &q.body["usage"];
    (
        u["states"]["in_use"].as_i64(),
        u["state_bytes"]["in_use"].as_i64(),
    ) == (Some(truth.0), Some(truth.1))
        && u["states"]["reserved"] == 0
        && u["concurrent_operations"]["reserved"] == 0
}
