//! Faults that must land mid-work to prove anything: saves started at once on many
//! instances, then `kill -9` of the gateway while they run.

use futures::future::join_all;
use serde_json::json;

use crate::app::{demo, many_instances_node, many_uuid, TestApp};

/// The sizes tried in turn until a kill lands while a save is still running: more saves at
/// once keep the gateway busy longer.
pub const SAVES_AT_ONCE: [usize; 3] = [8, 24, 64];

/// A gateway on PostgreSQL (and Redis when `redis`) over a node of `n` instances of the demo
/// tenant, with no quota limit that would refuse `n` saves at once.
pub async fn gateway_with_instances(dir: &std::path::Path, n: usize, redis: bool) -> TestApp {
    let mut builder = TestApp::builder()
        .postgres()
        .host("many", &many_instances_node(dir, n, demo::TENANT))
        .config("[snapshots]\nstale_after_secs = 0.5\nmaintenance_interval_secs = 0.2");
    if redis {
        builder = builder.redis();
    }
    let app = builder.start().await;
    let r = app
        .call(
            "PUT",
            &format!("/v1/quotas/{}", demo::TENANT),
            Some(&app.admin),
            Some(json!({"states": -1, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    app
}

/// Starts a save on each of the `n` instances at once and `kill -9`s the gateway as soon as
/// all are accepted. Returns the operation ids.
pub async fn saves_then_kill(app: &mut TestApp, n: usize) -> Vec<String> {
    let calls = (0..n).map(|i| {
        let app = &*app;
        async move {
            app.save(&many_uuid(i), &format!("racing kill {i}"), &app.member)
                .await
        }
    });
    let mut ops = Vec::new();
    for r in join_all(calls).await {
        assert_eq!(r.status, 202, "{}", r.text);
        ops.push(r.body["operation"].as_str().unwrap().to_owned());
    }
    app.kill9().await;
    ops
}
