//! A Redis of our own that dies and comes back on the same port: calls fail fast with
//! `Unavailable` while it is down, and the `ConnectionManager` reconnects once it is back
//! (loading the scripts again: the new server's script cache is empty).

mod common;

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{scenarios, LONG_LEASE};
use snapgate_core::ports::{QuotaError, QuotaStore};
use snapgate_quota::{RedisQuotaConfig, RedisQuotaStore};
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn start_redis(port: u16) -> Child {
    let child = Command::new("redis-server")
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server must be installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "redis-server did not start on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_while_down_then_recovers_on_restart() {
    let port = free_port();
    let mut server = start_redis(port).await;
    let store = RedisQuotaStore::new(RedisQuotaConfig::new(
        format!("redis://127.0.0.1:{port}"),
        "outage",
    ))
    .unwrap();
    let t = common::tenant();
    let lim = common::limits(10, -1, -1, -1);

    store.connect().await.unwrap();
    store.rebuild(&[], &[], &[], LONG_LEASE).await.unwrap();
    let before = common::save(&t, 1);
    store.reserve(&before, &lim, LONG_LEASE).await.unwrap();

    server.kill().await.unwrap();
    for _ in 0..3 {
        let (result, took) =
            scenarios::elapsed(store.reserve(&common::save(&t, 1), &lim, LONG_LEASE)).await;
        assert!(
            matches!(result, Err(QuotaError::Unavailable(_))),
            "{result:?}"
        );
        assert!(took < Duration::from_millis(1500), "took {took:?}");
    }
    let (usage, took) = scenarios::elapsed(store.usage(&t, &lim)).await;
    assert!(
        matches!(usage, Err(QuotaError::Unavailable(_))),
        "{usage:?}"
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");

    let _server = start_redis(port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = common::save(&t, 1);
    loop {
        match store.reserve(&after, &lim, LONG_LEASE).await {
            Ok(()) => break,
            Err(QuotaError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery after restart: {e:?}"),
        }
    }
    // The new server lost everything: the store must say so, so the service rebuilds.
    assert!(!store.is_primed().await.unwrap());
    // Scripts without a preload (usage, commit) go through EVALSHA → NOSCRIPT → SCRIPT LOAD.
    store.commit(&t, after.operation, None).await.unwrap();
    assert_eq!(store.usage(&t, &lim).await.unwrap().states.in_use, 1);
}

#[tokio::test]
async fn a_flushed_script_cache_is_reloaded() {
    let port = free_port();
    let _server = start_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let store = RedisQuotaStore::new(RedisQuotaConfig::new(url.as_str(), "noscript")).unwrap();
    let t = common::tenant();
    let lim = common::limits(10, -1, -1, -1);
    store.connect().await.unwrap();

    let mut admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap();
    let r = common::save(&t, 5);
    store.reserve(&r, &lim, LONG_LEASE).await.unwrap(); // pipelined EVALSHA, own fallback
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap();
    store.commit(&t, r.operation, None).await.unwrap(); // redis::Script's fallback
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!((u.states.in_use, u.state_bytes.in_use), (1, 5));
}
