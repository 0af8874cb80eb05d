//! Exact per-tenant quotas: races across one and two gateways sharing Redis and PostgreSQL,
//! usage equal to the database's truth, Redis failures and gateway crashes.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};
use snapgate_core::ports::Repository;
use snapgate_store::SeaRepository;
use snapgate_tests::app::{demo, free_port, many_instances_node, many_uuid, Db, Shared, TestApp};
use snapgate_tests::faults::{gateway_with_instances, saves_then_kill, SAVES_AT_ONCE};

const UNLIMITED_BUT_STATES_10: &str =
    r#"{"states": 10, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1}"#;

async fn set_limits(app: &TestApp, limits: &str) {
    let r = app
        .call(
            "PUT",
            &format!("/v1/quotas/{}", demo::TENANT),
            Some(&app.admin),
            Some(serde_json::from_str(limits).unwrap()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Fires `n` saves at once, instance i of the many-instances node, spread over `apps`.
async fn race(apps: &[&TestApp], n: usize, prefix: &str) -> (Vec<Value>, usize, usize) {
    let calls = (0..n).map(|i| {
        let app = apps[i % apps.len()];
        async move {
            app.save(&many_uuid(i), &format!("{prefix}-{i}"), &app.member)
                .await
        }
    });
    let results = join_all(calls).await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut other = 0;
    for r in results {
        match (r.status, r.code()) {
            (202, _) => accepted.push(r.body),
            (403, "quota_exceeded") => {
                assert_eq!(r.body["error"]["resource"], "states");
                assert_eq!(r.body["error"]["limit"], 10);
                assert_eq!(r.body["error"]["requested"], 1);
                refused += 1;
            }
            _ => {
                eprintln!("unexpected: {} {}", r.status, r.text);
                other += 1;
            }
        }
    }
    (accepted, refused, other)
}

async fn wait_all(app: &TestApp, accepted: &[Value]) {
    for a in accepted {
        let op = app
            .wait(a["operation"].as_str().unwrap(), &app.member)
            .await;
        assert_eq!(op["status"], "succeeded", "{op}");
    }
}

/// Redis usage (through the API) equals what the database keeps, byte for byte.
async fn assert_usage_is_truth(app: &TestApp) {
    assert_usage_is_truth_for(app, demo::TENANT, &app.member).await;
}

/// `tenant`'s usage (read with `token`) equals what the database keeps for it.
async fn assert_usage_is_truth_for(app: &TestApp, tenant: &str, token: &str) {
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let totals = repo.tenant_totals().await.unwrap();
    let truth = totals
        .iter()
        .find(|t| t.tenant == tenant)
        .map(|t| (t.states, t.bytes))
        .unwrap_or((0, 0));
    let q = app.get(&format!("/v1/quotas/{tenant}"), token).await;
    assert_eq!(q.status, 200, "{}", q.text);
    let u = &q.body["usage"];
    assert_eq!(
        (
            u["states"]["in_use"].as_i64().unwrap(),
            u["state_bytes"]["in_use"].as_i64().unwrap()
        ),
        truth,
        "{}",
        q.body
    );
    assert_eq!(u["states"]["reserved"], 0, "{}", q.body);
    assert_eq!(u["state_bytes"]["reserved"], 0, "{}", q.body);
    assert_eq!(
        u["concurrent_operations"]["in_use"].as_i64().unwrap()
            + u["concurrent_operations"]["reserved"].as_i64().unwrap(),
        0,
        "{}",
        q.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_saves_one_gateway_exactly_ten() {
    for db in [Db::Postgres, Db::Sqlite] {
        let dir = tempfile::tempdir().unwrap();
        let uri = many_instances_node(dir.path(), 200, demo::TENANT);
        let app = TestApp::builder()
            .db(db)
            .redis()
            .host("many", &uri)
            .start()
            .await;
        set_limits(&app, UNLIMITED_BUT_STATES_10).await;
        let (accepted, refused, other) = race(&[&app], 200, "race").await;
        assert_eq!((accepted.len(), refused, other), (10, 190, 0), "{db:?}");
        wait_all(&app, &accepted).await;
        assert_usage_is_truth(&app).await;
        // Deleting one frees exactly one unit.
        let a = &accepted[0];
        let d = app
            .delete(
                &format!(
                    "/v1/instances/{}/states/{}",
                    a["instance_uuid"].as_str().unwrap(),
                    a["uuid"].as_str().unwrap()
                ),
                &app.member,
            )
            .await;
        assert_eq!(d.status, 202);
        app.wait(d.body["uuid"].as_str().unwrap(), &app.member)
            .await;
        assert_usage_is_truth(&app).await;
        let (more, _, _) = race(&[&app], 3, "again").await;
        assert_eq!(more.len(), 1, "exactly the freed unit can be taken again");
        wait_all(&app, &more).await;
        assert_usage_is_truth(&app).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_saves_two_gateways_exactly_ten() {
    let dir = tempfile::tempdir().unwrap();
    let uri = many_instances_node(dir.path(), 200, demo::TENANT);
    let shared = Arc::new(Shared::new(Db::Postgres, true).await);
    let hosts = [("many".to_owned(), uri)];
    let a = TestApp::start_with(shared.clone(), "", &hosts).await;
    let b = TestApp::start_with(shared.clone(), "", &hosts).await;
    let r = a
        .call(
            "PUT",
            &format!("/v1/quotas/{}", demo::TENANT),
            Some(&a.admin),
            Some(serde_json::from_str(UNLIMITED_BUT_STATES_10).unwrap()),
        )
        .await;
    assert_eq!(r.status, 200);
    // Each gateway has its own tokens; race() uses each app's own member token.
    let (accepted, refused, other) = race(&[&a, &b], 200, "race").await;
    assert_eq!((accepted.len(), refused, other), (10, 190, 0));
    for acc in &accepted {
        let op = acc["operation"].as_str().unwrap();
        // Either gateway can answer for an operation the other runs (shared database).
        let done = a.wait(op, &a.member).await;
        assert_eq!(
            done["status"],
            "succeeded",
            "{done}\nthe gateways' lines about it or warning:\n{}",
            [a.log(), b.log()]
                .iter()
                .flat_map(|log| log.lines().map(str::to_owned).collect::<Vec<_>>())
                .filter(|l| l.contains(op) || l.contains("WARN") || l.contains("ERROR"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_usage_is_truth(&a).await;
    assert_usage_is_truth(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_answers_carry_the_numbers_and_rate_limit_retry_after() {
    let app = TestApp::builder().redis().start().await;
    set_limits(&app, r#"{"states": -1, "state_bytes": 1073741824, "concurrent_operations": -1, "saves_per_hour": 2}"#).await;
    // demo-web has 512 MiB: two saves fit 1 GiB of state_bytes, the third does not.
    app.saved(demo::WEB, "one", &app.member).await;
    app.saved(demo::WEB, "two", &app.member).await;
    let r = app.save(demo::WEB, "three", &app.member).await;
    assert_eq!((r.status, r.code()), (403, "quota_exceeded"), "{}", r.body);
    assert_eq!(r.body["error"]["resource"], "state_bytes");
    assert_eq!(r.body["error"]["limit"], 1073741824);
    assert!(
        r.body["error"]["in_use"].as_i64().unwrap() >= 1 << 30,
        "{}",
        r.body
    );
    // Lift the bytes: now the hourly rate (2) stops the third save with 429 and Retry-After.
    set_limits(
        &app,
        r#"{"states": -1, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": 2}"#,
    )
    .await;
    let r = app.save(demo::WEB, "three", &app.member).await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{}", r.body);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 3600);
    // Back to defaults.
    let d = app
        .call(
            "DELETE",
            &format!("/v1/quotas/{}", demo::TENANT),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(d.status, 200);
    assert_eq!(d.body["custom"], false);
}

struct OwnRedis {
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let redis = OwnRedis { port, child };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(redis);
        panic!("redis-server did not start on {port}");
    }
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_then_rebuilt_exactly() {
    let mut redis = OwnRedis::start(free_port());
    let config = format!(
        "[redis]\nurl = \"redis://127.0.0.1:{}\"\nkey_prefix = \"sg\"\n[snapshots]\nmaintenance_interval_secs = 0.3",
        redis.port
    );
    let app = TestApp::builder().postgres().config(&config).start().await;
    let kept = app.saved(demo::WEB, "kept", &app.member).await;
    let doomed = app
        .saved(demo::DB, "deleted while redis is down", &app.member)
        .await;
    assert_usage_is_truth(&app).await;

    redis.stop();
    let r = app.save(demo::DB, "no quota store", &app.member).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "quota_backend_unavailable"),
        "{}",
        r.body
    );
    assert!(r.header("retry-after").is_some());
    // Reads, applies and deletes go on.
    assert_eq!(
        app.get(&format!("/v1/instances/{}/states", demo::WEB), &app.member)
            .await
            .status,
        200
    );
    let kid = kept["uuid"].as_str().unwrap();
    let a = app
        .post(
            &format!("/v1/instances/{}/states/apply", demo::WEB),
            &app.member,
            json!({"uuid": kid}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(
        app.wait(a.body["uuid"].as_str().unwrap(), &app.member)
            .await["status"],
        "succeeded"
    );
    // The delete's end cannot free its units in Redis: the rebuild below must not count them.
    let d = app
        .delete(
            &format!(
                "/v1/instances/{}/states/{}",
                demo::DB,
                doomed["uuid"].as_str().unwrap()
            ),
            &app.member,
        )
        .await;
    assert_eq!(d.status, 202, "{}", d.body);
    assert_eq!(
        app.wait(d.body["uuid"].as_str().unwrap(), &app.member)
            .await["status"],
        "succeeded"
    );

    // Redis comes back empty: the gateway notices and rebuilds usage from the database.
    let _redis = OwnRedis::start(redis.port);
    let mut ok = false;
    for _ in 0..100 {
        let q = app
            .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
            .await;
        if q.status == 200 && q.body["usage"]["states"]["in_use"].as_i64() == Some(1) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "usage was not rebuilt: {}", app.log());
    assert_usage_is_truth(&app).await;
    assert_eq!(
        app.save(demo::DB, "after redis is back", &app.member)
            .await
            .status,
        202
    );
}

/// `kill -9` while saves hold reservations: Redis still holds some after the kill (so the kill
/// landed mid-work), and after a restart every held unit comes back: usage equals the database,
/// nothing stays reserved, and a limit of exactly what is kept plus one lets one more save in.
/// When every save had ended before the kill, nothing was proven: more saves at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_holding_a_reservation_gives_the_units_back() {
    for n in SAVES_AT_ONCE {
        if kill_holding_reservations(n).await {
            return;
        }
        eprintln!("all {n} saves ended before the kill; retrying with more");
    }
    panic!("every save ended before the gateway was killed ({SAVES_AT_ONCE:?} at once): no reservation was held");
}

/// The operations holding a reservation of the demo tenant in Redis.
fn held_reservations(app: &TestApp) -> Vec<String> {
    let prefix = app.shared.redis_prefix.clone().expect("a Redis prefix");
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "--raw", "HKEYS"])
        .arg(format!("{prefix}:{{{}}}:resv", demo::TENANT))
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One attempt; false when no reservation was held at the kill.
async fn kill_holding_reservations(n: usize) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let mut app = gateway_with_instances(dir.path(), n, true).await;
    let ops = saves_then_kill(&mut app, n).await;
    let held = held_reservations(&app);
    if held.is_empty() {
        return false;
    }
    eprintln!("{} of {n} saves held a reservation at the kill", held.len());
    assert!(held.iter().all(|op| ops.contains(op)), "{held:?}");

    app.restart().await;
    for op in &ops {
        let ended = app.wait(op, &app.member).await;
        assert!(
            ended["status"] == "succeeded" || ended["status"] == "failed",
            "{ended}"
        );
    }
    assert_usage_is_truth(&app).await;
    assert!(held_reservations(&app).is_empty());
    // The units came back: room for exactly one more state than the ones kept.
    let q = app
        .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
        .await;
    let kept = q.body["usage"]["states"]["in_use"].as_i64().unwrap();
    set_limits(
        &app,
        &format!(r#"{{"states": {}, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1}}"#, kept + 1),
    )
    .await;
    let one_more = app.save(&many_uuid(0), "fits", &app.member).await;
    assert_eq!(one_more.status, 202, "{}", one_more.text);
    let two_more = app.save(&many_uuid(1), "does not fit", &app.member).await;
    assert_eq!(
        (
            two_more.status,
            two_more.code(),
            two_more.body["error"]["resource"].as_str()
        ),
        (403, "quota_exceeded", Some("states")),
        "{}",
        two_more.text
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drifted_usage_is_corrected_from_the_database_while_idle() {
    let app = TestApp::builder()
        .redis()
        .config("[quota]\nrebuild_interval_secs = 1\n[snapshots]\nmaintenance_interval_secs = 0.2")
        .start()
        .await;
    app.saved(demo::WEB, "one", &app.member).await;
    app.saved(demo::DB, "two", &app.member).await;
    assert_usage_is_truth(&app).await;
    // Something outside snapgate corrupts the tenant's usage (the primed marker stays).
    let prefix = app.shared.redis_prefix.clone().unwrap();
    let key = format!("{prefix}:{{{}}}:inuse", demo::TENANT);
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "DEL", &key])
        .output()
        .unwrap();
    assert!(out.status.success());
    let q = app
        .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
        .await;
    assert_eq!(
        q.body["usage"]["states"]["in_use"], 0,
        "the corruption took: {}",
        q.body
    );
    let mut fixed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let q = app
            .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
            .await;
        if q.body["usage"]["states"]["in_use"] == 2 {
            fixed = true;
            break;
        }
    }
    assert!(fixed, "usage was not corrected: {}", app.log());
    assert_usage_is_truth(&app).await;
}

/// The saves-per-hour usage of the demo tenant, as the API reports it.
async fn saves_this_hour(app: &TestApp) -> i64 {
    let q = app
        .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
        .await;
    assert_eq!(q.status, 200, "{}", q.text);
    q.body["usage"]["saves_per_hour"]["in_use"]
        .as_i64()
        .unwrap()
}

const TWO_SAVES_AN_HOUR: &str =
    r#"{"states": -1, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": 2}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_per_hour_survive_a_graceful_restart_on_the_in_process_store() {
    let mut app = TestApp::builder().start().await;
    set_limits(&app, TWO_SAVES_AN_HOUR).await;
    app.saved(demo::WEB, "one", &app.member).await;
    app.saved(demo::DB, "two", &app.member).await;
    assert_eq!(saves_this_hour(&app).await, 2);

    app.restart_gracefully().await;
    // The gateway rebuilds its in-process quotas from the database before it serves.
    assert_eq!(saves_this_hour(&app).await, 2, "{}", app.log());
    assert_usage_is_truth(&app).await;
    let r = app.save(demo::WEB, "three", &app.member).await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_per_hour_survive_a_redis_flush() {
    let app = TestApp::builder()
        .redis()
        .config("[snapshots]\nmaintenance_interval_secs = 0.2")
        .start()
        .await;
    set_limits(&app, TWO_SAVES_AN_HOUR).await;
    app.saved(demo::WEB, "one", &app.member).await;
    app.saved(demo::DB, "two", &app.member).await;
    assert_eq!(saves_this_hour(&app).await, 2);

    // Every key of this gateway's prefix goes, as in a flushed or restarted Redis.
    let prefix = app.shared.redis_prefix.clone().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "redis-cli -h 127.0.0.1 --scan --pattern '{prefix}:*' | xargs -r redis-cli -h 127.0.0.1 DEL"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // DEL's answer: how many keys went (the tenant's window among them).
    let deleted: i64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|n| n.parse::<i64>().unwrap_or(0))
        .sum();
    assert!(deleted > 0, "the flush took: {out:?}");

    // The tenant's data is no longer owned by this Redis process: the first decision rebuilds
    // it from the database (the reconciler's full rebuild may come first), hour's saves and all.
    assert_eq!(saves_this_hour(&app).await, 2, "{}", app.log());
    let q = app
        .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
        .await;
    assert_eq!(q.body["usage"]["states"]["in_use"], 2, "{}", q.body);
    let r = app.save(demo::WEB, "three", &app.member).await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{}", r.body);
}

async fn set_owner(
    app: &TestApp,
    instance: &str,
    tenant: Option<&str>,
) -> snapgate_tests::app::Resp {
    app.call(
        "PUT",
        &format!("/v1/instances/{instance}/owner"),
        Some(&app.admin),
        Some(json!({ "tenant_id": tenant })),
    )
    .await
}

/// Both tenants' usage equals the database's after an ownership change, in both directions;
/// the states go with the instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ownership_change_moves_the_states_and_their_usage() {
    for redis in [false, true] {
        let builder = TestApp::builder().postgres();
        let app = if redis { builder.redis() } else { builder }.start().await;
        app.saved(demo::DB, "one", &app.member).await;
        app.saved(demo::DB, "two", &app.member).await;
        app.saved(demo::WEB, "stays", &app.member).await;
        assert_usage_is_truth(&app).await;

        // demo-db goes to the Nova tenant: its two states (and their bytes) go with it.
        let r = set_owner(&app, demo::DB, Some(demo::NOVA_TENANT)).await;
        assert_eq!(r.status, 204, "{}", r.text);
        assert_usage_is_truth_for(&app, demo::TENANT, &app.member).await;
        assert_usage_is_truth_for(&app, demo::NOVA_TENANT, &app.other_member).await;
        let q = app
            .get(
                &format!("/v1/quotas/{}", demo::NOVA_TENANT),
                &app.other_member,
            )
            .await;
        assert_eq!(q.body["usage"]["states"]["in_use"], 2, "{}", q.body);
        let list = app
            .get(
                &format!("/v1/instances/{}/states", demo::DB),
                &app.other_member,
            )
            .await;
        assert_eq!(
            list.body["values"].as_array().unwrap().len(),
            2,
            "{}",
            list.body
        );

        // And back to the domain's metadata (the demo tenant).
        let r = set_owner(&app, demo::DB, None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        assert_usage_is_truth_for(&app, demo::TENANT, &app.member).await;
        assert_usage_is_truth_for(&app, demo::NOVA_TENANT, &app.other_member).await;
        let q = app
            .get(&format!("/v1/quotas/{}", demo::TENANT), &app.member)
            .await;
        assert_eq!(q.body["usage"]["states"]["in_use"], 3, "{}", q.body);
        let list = app
            .get(&format!("/v1/instances/{}/states", demo::DB), &app.member)
            .await;
        assert_eq!(
            list.body["values"].as_array().unwrap().len(),
            2,
            "{}",
            list.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ownership_change_waits_for_the_operation_in_flight() {
    let app = TestApp::builder().postgres().start().await;
    let kept = app.saved(demo::DB, "kept", &app.member).await;
    // An operation in flight on the instance, as another gateway would hold it: a delete
    // recorded and holding the instance's lock.
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let state = repo
        .get_state(kept["uuid"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let now = chrono::Utc::now();
    let op = snapgate_core::Operation {
        uuid: uuid::Uuid::now_v7(),
        kind: snapgate_core::OperationKind::Delete,
        status: snapgate_core::OperationStatus::Running,
        instance_uuid: state.instance_uuid,
        state_uuid: state.uuid,
        tenant_id: state.tenant_id.clone(),
        host: state.host.clone(),
        error: None,
        created_at: now,
        updated_at: now,
        started_at: Some(now),
        finished_at: None,
        reserved_bytes: 0,
        lease_epoch: 0,
        lease_owner: None,
        progress: None,
        may_cancel: false,
        cancel_requested_at: None,
    };
    repo.begin_state_operation(
        &op,
        &[snapgate_core::StateStatus::Available],
        snapgate_core::StateStatus::Deleting,
    )
    .await
    .unwrap();

    let r = set_owner(&app, demo::DB, Some(demo::NOVA_TENANT)).await;
    assert_eq!((r.status, r.code()), (409, "instance_busy"), "{}", r.text);
    assert_eq!(r.body["error"]["operation"], op.uuid.to_string());
    // Nothing moved.
    let list = app
        .get(&format!("/v1/instances/{}/states", demo::DB), &app.member)
        .await;
    assert_eq!(list.status, 200);
    assert_usage_is_truth(&app).await;

    // Once the operation ends (here: it gives up), the move goes through.
    let mut ended = op.clone();
    ended.status = snapgate_core::OperationStatus::Failed;
    ended.finished_at = Some(chrono::Utc::now());
    let mut back = state.clone();
    back.status = snapgate_core::StateStatus::Available;
    repo.finish_operation(&ended, Some(&back)).await.unwrap();
    let r = set_owner(&app, demo::DB, Some(demo::NOVA_TENANT)).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_usage_is_truth_for(&app, demo::TENANT, &app.member).await;
    assert_usage_is_truth_for(&app, demo::NOVA_TENANT, &app.other_member).await;
}
