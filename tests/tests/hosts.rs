//! Many compute hosts behind one gateway: the placement index finds an instance with one call
//! to its host and corrects itself when the instance moved; a host that hangs costs only its
//! own instances, the tenant wall holds during the outage, and the host comes back.

use std::path::Path;

use snapgate_core::ports::{Placement, PlacementStore};
use snapgate_store::SeaRepository;
use snapgate_tests::app::{demo, demo_host_uri, many_uuid, TestApp};
use snapgate_tests::hosts::{
    instances_node_file, metric_sum, system_libvirtd, test_hosts, HostProxy, LIBVIRTD_SOCKET,
};
use uuid::Uuid;

/// libvirt calls the gateway made on `host` (every result, refusals by the breaker included).
fn calls(page: &str, host: &str) -> f64 {
    metric_sum(page, "snapgate_libvirt_calls_total", &[("host", host)])
}

fn rejected(page: &str, host: &str) -> f64 {
    metric_sum(
        page,
        "snapgate_libvirt_calls_total",
        &[("host", host), ("result", "rejected")],
    )
}

fn breaker(page: &str, host: &str) -> f64 {
    metric_sum(page, "snapgate_host_breaker_state", &[("host", host)])
}

async fn wait_for_inventories(app: &TestApp, hosts: &[&str]) {
    app.wait_for_metrics("every host's inventory in the placement index", |p| {
        hosts
            .iter()
            .all(|h| metric_sum(p, "snapgate_placement_inventories_total", &[("host", h)]) >= 1.0)
    })
    .await;
}

#[tokio::test]
async fn an_instance_on_the_last_of_many_hosts_is_found_with_one_call_to_its_host() {
    const HOSTS: usize = 12;
    const PER_HOST: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut builder = TestApp::builder()
        // Only the start-up inventory: no background listing during the counts below.
        .config("[compute]\nplacement_refresh_secs = 3600\n");
    let hosts = test_hosts(dir.path(), HOSTS, PER_HOST, demo::TENANT);
    for (name, uri) in &hosts {
        builder = builder.host(name, uri);
    }
    let app = builder.start().await;
    let names: Vec<&str> = hosts.iter().map(|(n, _)| n.as_str()).collect();
    wait_for_inventories(&app, &names).await;

    let last_host = names[HOSTS - 1];
    let last = many_uuid((HOSTS - 1) * PER_HOST + 1);
    let path = format!("/v1/instances/{last}/states");
    let before = app.metrics().await;
    let r = app.get(&path, &app.member).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after = app.metrics().await;
    for host in &names {
        let expected = if *host == last_host { 1.0 } else { 0.0 };
        assert_eq!(
            calls(&after, host) - calls(&before, host),
            expected,
            "libvirt calls on {host}"
        );
    }

    // The instance moves: its record names h0, as after a migration the index has not seen.
    let repo = SeaRepository::connect(&app.shared.db_url).await.unwrap();
    let instance: Uuid = last.parse().unwrap();
    repo.record_placements(&[Placement {
        instance,
        host: "h0".into(),
        owner_tenant: Some(demo::TENANT.into()),
    }])
    .await
    .unwrap();
    let before = app.metrics().await;
    let r = app.get(&path, &app.member).await;
    assert_eq!(r.status, 200, "found after the miss: {}", r.body);
    let after = app.metrics().await;
    assert_eq!(calls(&after, "h0") - calls(&before, "h0"), 1.0, "the miss");
    assert_eq!(calls(&after, last_host) - calls(&before, last_host), 1.0);
    for host in &names {
        // The search asks each other host at most once (it stops at the first running copy).
        assert!(calls(&after, host) - calls(&before, host) <= 1.0, "{host}");
    }
    assert_eq!(
        metric_sum(&after, "snapgate_placement_corrections_total", &[]),
        1.0
    );
    let corrected = repo.placement(instance).await.unwrap().expect("a record");
    assert_eq!(corrected.host, last_host);
    assert_eq!(corrected.owner_tenant.as_deref(), Some(demo::TENANT));

    // Corrected: one call to its host again.
    let before = app.metrics().await;
    assert_eq!(app.get(&path, &app.member).await.status, 200);
    let after = app.metrics().await;
    let total: f64 = names
        .iter()
        .map(|h| calls(&after, h) - calls(&before, h))
        .sum();
    assert_eq!(total, 1.0);
    assert_eq!(calls(&after, last_host) - calls(&before, last_host), 1.0);
    repo.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_host_costs_only_its_own_instances_and_comes_back() {
    // The host behind the proxy is the system libvirtd's test driver: it must be up.
    system_libvirtd();
    let dir = tempfile::tempdir().unwrap();
    let node = instances_node_file(dir.path(), 0, 2, demo::TENANT);
    let proxy = HostProxy::start(&dir.path().join("remote.sock"), Path::new(LIBVIRTD_SOCKET));
    let app = TestApp::builder()
        .host("remote", &proxy.uri(&node))
        .host("demo", &demo_host_uri())
        .config(
            // Short keepalive so the test sees the host judged down within seconds; timeouts
            // that a loaded machine does not reach while the host still answers.
            "[compute]\nconnect_timeout_secs = 3.0\ncall_timeout_secs = 5.0\n\
             keepalive_interval_secs = 1\nkeepalive_count = 3\n\
             reconnect_min_secs = 0.2\nreconnect_max_secs = 0.5\nplacement_refresh_secs = 3600\n",
        )
        .start()
        .await;
    wait_for_inventories(&app, &["remote", "demo"]).await;
    let remote_vm = many_uuid(0);
    let kept = app.saved(&remote_vm, "before-outage", &app.member).await;
    let kept_path = format!(
        "/v1/instances/{remote_vm}/states/{}",
        kept["uuid"].as_str().unwrap()
    );

    // The host stops answering. libvirt's keepalive notices and closes the connection; the
    // breaker opens without any request having to wait for it.
    proxy.freeze();
    app.wait_for_metrics("the hanging host's breaker to open", |p| {
        breaker(p, "remote") == 2.0
    })
    .await;
    let before = app.metrics().await;

    // Its instance: a save is a 503 refused by the breaker; what the database holds is read.
    let r = app.save(&remote_vm, "during-outage", &app.member).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "compute_unavailable"),
        "{}",
        r.body
    );
    let r = app.get(&kept_path, &app.member).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Instances on the other host work as before, and none of their calls goes to the dead host.
    app.saved(demo::WEB, "other-host", &app.member).await;

    // The tenant wall: another tenant cannot tell the remote instance (not theirs) from a uuid
    // that exists nowhere, although the host that might hold the latter is down.
    let unknown = Uuid::new_v4();
    let theirs = app
        .get(
            &format!("/v1/instances/{remote_vm}/states"),
            &app.other_member,
        )
        .await;
    let nothing = app
        .get(
            &format!("/v1/instances/{unknown}/states"),
            &app.other_member,
        )
        .await;
    assert_eq!(theirs.status, 404, "{}", theirs.body);
    assert_eq!((nothing.status, nothing.code()), (404, theirs.code()));
    assert_eq!(
        nothing.text.replace(&unknown.to_string(), "ID"),
        theirs.text.replace(&remote_vm, "ID")
    );
    // An admin sees every tenant: for them the truth, the host is down.
    let r = app
        .get(&format!("/v1/instances/{unknown}/states"), &app.admin)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (503, "compute_unavailable"),
        "{}",
        r.body
    );

    let after = app.metrics().await;
    // Every call towards the dead host was refused by its breaker, without reaching libvirt:
    // the remote save, the remote read, the other tenant's look at the remote instance and the
    // two searches for the unknown uuid. The other host's requests made none.
    assert_eq!(
        rejected(&after, "remote") - rejected(&before, "remote"),
        5.0
    );
    assert_eq!(calls(&after, "remote") - calls(&before, "remote"), 5.0);
    assert_eq!(breaker(&after, "demo"), 0.0);

    // /readyz reports the host from its breaker and stays ready: the other host is up.
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let hosts = &r.body["checks"]["hosts"];
    assert_eq!(hosts["remote"]["ok"], false, "{}", r.body);
    assert_ne!(hosts["remote"]["breaker"], "closed", "{}", r.body);
    assert_eq!(hosts["demo"]["ok"], true, "{}", r.body);

    // The host answers again: the background reconnection closes the breaker.
    proxy.thaw();
    app.wait_for_metrics("the host to be back", |p| breaker(p, "remote") == 0.0)
        .await;
    app.saved(&remote_vm, "after-outage", &app.member).await;
    assert!(
        proxy.accepted() >= 2,
        "the gateway reconnected through the proxy"
    );
}
