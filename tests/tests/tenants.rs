//! Tenants are walls: every endpoint × every kind of caller × own or other tenant, with the
//! exact status each must get, and no body that tells of another tenant's things. A tenant's
//! admin is inside the wall; only the cloud operator (an explicit claim) crosses it.

use serde_json::json;
use snapgate_tests::app::{demo, jwt, operator_jwt, TestApp, JWT_SECRET};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    NoToken,
    Expired,
    BadSignature,
    Reader,
    Member,
    /// The tenant's `admin` role: no operator scope.
    TenantAdmin,
    /// The cloud operator: admin role with the configured system-scope claim.
    Operator,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Endpoint {
    List,
    Get,
    Save,
    Apply,
    Delete,
    Operation,
    Wait,
    QuotaGet,
    QuotaPut,
    QuotaDelete,
    Owner,
    PolicyDecisions,
    PolicyPlugins,
    PolicyReload,
}

/// The status the contract promises.
fn expected(who: Who, ep: Endpoint, own: bool) -> u16 {
    use Endpoint::*;
    match who {
        Who::NoToken | Who::Expired | Who::BadSignature => 401,
        Who::Operator => match ep {
            Save | Apply | Delete => 202,
            Owner => 204,
            _ => 200,
        },
        // A tenant's admin reads its own tenant's policy decisions; another tenant's are a 404
        // like everything else of another tenant.
        Who::TenantAdmin if ep == PolicyDecisions => {
            if own {
                200
            } else {
                404
            }
        }
        // Anything of another tenant is a 404, whatever the role (the operator's calls
        // excepted, which are refused before anything is looked up; the policy calls have no
        // tenant).
        _ if matches!(ep, Owner | PolicyDecisions | PolicyPlugins | PolicyReload) => 403,
        _ if !own => 404,
        Who::Reader => match ep {
            List | Get | Operation | Wait | QuotaGet => 200,
            _ => 403,
        },
        // Inside its tenant, an admin does what a member does; quota limits are the
        // operator's (a tenant must not raise its own).
        Who::Member | Who::TenantAdmin => match ep {
            Save | Apply | Delete => 202,
            QuotaPut | QuotaDelete => 403,
            _ => 200,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_matrix() {
    let app = TestApp::builder().config("[quota.defaults]\nstates = -1\nstate_bytes = -1\nconcurrent_operations = -1\nsaves_per_hour = -1").start().await;
    let admin = app.admin.clone();
    let endpoints = [
        Endpoint::List,
        Endpoint::Get,
        Endpoint::Save,
        Endpoint::Apply,
        Endpoint::Delete,
        Endpoint::Operation,
        Endpoint::Wait,
        Endpoint::QuotaGet,
        Endpoint::QuotaPut,
        Endpoint::QuotaDelete,
        Endpoint::Owner,
        Endpoint::PolicyDecisions,
        Endpoint::PolicyPlugins,
        Endpoint::PolicyReload,
    ];
    let whos = [
        Who::NoToken,
        Who::Expired,
        Who::BadSignature,
        Who::Reader,
        Who::Member,
        Who::TenantAdmin,
        Who::Operator,
    ];
    let mut cells = 0;
    for own in [true, false] {
        let (instance, tenant, secret_name) = if own {
            (demo::WEB, demo::TENANT, "mine")
        } else {
            (demo::NOVA_APP, demo::NOVA_TENANT, "theirs-secret-name")
        };
        for who in whos {
            let token = match who {
                Who::NoToken => None,
                Who::Expired => Some(jwt(demo::TENANT, &["member"], -3600, JWT_SECRET)),
                Who::BadSignature => Some(jwt(demo::TENANT, &["admin"], 3600, "not-the-secret")),
                Who::Reader => Some(jwt(demo::TENANT, &["reader"], 3600, JWT_SECRET)),
                Who::Member => Some(jwt(demo::TENANT, &["member"], 3600, JWT_SECRET)),
                Who::TenantAdmin => Some(jwt(demo::TENANT, &["admin", "member"], 3600, JWT_SECRET)),
                Who::Operator => Some(operator_jwt(demo::TENANT, &["admin"], 3600)),
            };
            for ep in endpoints {
                // A fresh available state (saved by the operator) for every cell, and its save
                // operation for the operation endpoints.
                let saved = app
                    .save(instance, &format!("{secret_name}-{who:?}-{ep:?}"), &admin)
                    .await;
                assert_eq!(saved.status, 202, "{}", saved.body);
                let sid = saved.body["uuid"].as_str().unwrap().to_owned();
                let op_id = saved.body["operation"].as_str().unwrap().to_owned();
                assert_eq!(app.wait(&op_id, &admin).await["status"], "succeeded");
                let (method, path, body) = match ep {
                    Endpoint::List => ("GET", format!("/v1/instances/{instance}/states"), None),
                    Endpoint::Get => (
                        "GET",
                        format!("/v1/instances/{instance}/states/{sid}"),
                        None,
                    ),
                    Endpoint::Save => (
                        "POST",
                        format!("/v1/instances/{instance}/states"),
                        Some(json!({"name": format!("new-{who:?}")})),
                    ),
                    Endpoint::Apply => (
                        "POST",
                        format!("/v1/instances/{instance}/states/apply"),
                        Some(json!({"uuid": sid})),
                    ),
                    Endpoint::Delete => (
                        "DELETE",
                        format!("/v1/instances/{instance}/states/{sid}"),
                        None,
                    ),
                    Endpoint::Operation => ("GET", format!("/v1/operations/{op_id}"), None),
                    Endpoint::Wait => (
                        "GET",
                        format!("/v1/operations/{op_id}/wait?timeout=1"),
                        None,
                    ),
                    Endpoint::QuotaGet => ("GET", format!("/v1/quotas/{tenant}"), None),
                    Endpoint::QuotaPut => (
                        "PUT",
                        format!("/v1/quotas/{tenant}"),
                        Some(
                            json!({"states": -1, "state_bytes": -1, "concurrent_operations": -1, "saves_per_hour": -1}),
                        ),
                    ),
                    Endpoint::QuotaDelete => ("DELETE", format!("/v1/quotas/{tenant}"), None),
                    Endpoint::Owner => (
                        "PUT",
                        format!("/v1/instances/{instance}/owner"),
                        Some(json!({"tenant_id": tenant})),
                    ),
                    Endpoint::PolicyDecisions => {
                        ("GET", format!("/v1/policy/decisions?tenant={tenant}"), None)
                    }
                    Endpoint::PolicyPlugins => ("GET", "/v1/policy/plugins".to_owned(), None),
                    Endpoint::PolicyReload => ("POST", "/v1/policy/reload".to_owned(), None),
                };
                let r = app.call(method, &path, token.as_deref(), body).await;
                let want = expected(who, ep, own);
                assert_eq!(
                    r.status, want,
                    "{who:?} {ep:?} own={own}: {method} {path} -> {}",
                    r.text
                );
                if want >= 400 {
                    assert!(
                        r.body["error"]["code"].is_string(),
                        "error shape: {}",
                        r.text
                    );
                }
                if want == 401 {
                    assert!(
                        r.header("www-authenticate")
                            .unwrap_or("")
                            .starts_with("Bearer"),
                        "{who:?} {ep:?}"
                    );
                }
                if !own && who != Who::Operator {
                    // Nothing of the other tenant shows: not its state names, not its tenant id.
                    assert!(
                        !r.text.contains(secret_name),
                        "{who:?} {ep:?} leaked a name: {}",
                        r.text
                    );
                    assert!(
                        !r.text.contains(demo::NOVA_TENANT)
                            || r.status == 404 && r.text.contains("tenant"),
                        "{who:?} {ep:?}: {}",
                        r.text
                    );
                }
                if r.status == 202 {
                    let id = if ep == Endpoint::Save {
                        &r.body["operation"]
                    } else {
                        &r.body["uuid"]
                    };
                    app.wait(id.as_str().unwrap(), &admin).await;
                }
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 2 * 7 * 14);
}

/// A bare `admin` role (what Keystone and most IdPs give a project's admin) is no cloud-wide
/// grant: not by JWT, not by static token. Only the configured operator claim crosses tenants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_admin_role_is_no_cloud_operator() {
    let app = TestApp::builder().start().await;
    let jwt_admin = jwt(
        demo::TENANT,
        &["admin", "member", "reader"],
        3600,
        JWT_SECRET,
    );
    let their_quota = format!("/v1/quotas/{}", demo::NOVA_TENANT);
    let limits = json!({"states": 1000, "state_bytes": -1, "concurrent_operations": 50, "saves_per_hour": -1});
    for admin in [&jwt_admin, &app.tenant_admin] {
        let r = app.get(&their_quota, admin).await;
        assert_eq!(
            (r.status, r.code()),
            (404, "tenant_not_found"),
            "{}",
            r.text
        );
        let r = app.save(demo::NOVA_APP, "not yours", admin).await;
        assert_eq!(
            (r.status, r.code()),
            (404, "instance_not_found"),
            "{}",
            r.text
        );
        let r = app
            .get(&format!("/v1/instances/{}/states", demo::NOVA_APP), admin)
            .await;
        assert_eq!(r.status, 404, "{}", r.text);
        // Its own tenant: reads its quota, saves on its instances, cannot raise its limits or
        // give an instance away.
        assert_eq!(app.get("/v1/quotas/demo", admin).await.status, 200);
        let r = app
            .saved(demo::DB, &format!("own-{}", &admin[..8]), admin)
            .await;
        assert_eq!(r["status"], "available");
        let r = app
            .call("PUT", "/v1/quotas/demo", Some(admin), Some(limits.clone()))
            .await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.text);
        let r = app
            .call(
                "PUT",
                &format!("/v1/instances/{}/owner", demo::WEB),
                Some(admin),
                Some(json!({"tenant_id": demo::NOVA_TENANT})),
            )
            .await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.text);
        let r = app
            .call("POST", "/v1/policy/reload", Some(admin), None)
            .await;
        assert_eq!(r.status, 403, "{}", r.text);
    }
    // The operator, by JWT claim and by static token, crosses the wall.
    for operator in [&operator_jwt(demo::TENANT, &["admin"], 3600), &app.admin] {
        assert_eq!(app.get(&their_quota, operator).await.status, 200);
        let r = app
            .call("PUT", &their_quota, Some(operator), Some(limits.clone()))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = app
            .save(demo::NOVA_APP, &format!("ops-{}", &operator[..8]), operator)
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        app.wait(r.body["operation"].as_str().unwrap(), operator)
            .await;
    }
    // An operator claim with a reader role reads any tenant but changes nothing.
    let system_reader = operator_jwt(demo::TENANT, &["reader"], 3600);
    assert_eq!(app.get(&their_quota, &system_reader).await.status, 200);
    let r = app.save(demo::NOVA_APP, "reader", &system_reader).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = app
        .call("PUT", &their_quota, Some(&system_reader), Some(limits))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}

/// An instance no tenant owns (no owner metadata, no owner row) is the operator's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unowned_instance_is_the_operators_alone() {
    let dir = tempfile::tempdir().unwrap();
    let uuid = "0a0a0a0a-0000-4000-8000-000000000001";
    let node = dir.path().join("unowned.xml");
    std::fs::write(
        &node,
        format!(
            "<node><cpu><mhz>2400</mhz><model>x86_64</model><active>2</active><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads></cpu><memory>8388608</memory>\
             <domain type='test'><name>unowned</name><uuid>{uuid}</uuid>\
             <memory unit='MiB'>256</memory><currentMemory unit='MiB'>256</currentMemory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>\
             <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/snapgate-test/unowned.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain></node>\n"
        ),
    )
    .unwrap();
    let app = TestApp::builder()
        .host("unowned", &format!("test://{}", node.display()))
        .start()
        .await;
    let states = format!("/v1/instances/{uuid}/states");
    for tenant_admin in [
        &jwt(demo::TENANT, &["admin"], 3600, JWT_SECRET),
        &app.tenant_admin,
    ] {
        let r = app.get(&states, tenant_admin).await;
        assert_eq!(
            (r.status, r.code()),
            (404, "instance_not_found"),
            "{}",
            r.text
        );
    }
    assert_eq!(app.get(&states, &app.admin).await.status, 200);
    let op = operator_jwt(demo::TENANT, &["admin"], 3600);
    app.saved(uuid, "by the operator", &op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenant_state_is_indistinguishable_from_a_missing_one() {
    let app = TestApp::builder().start().await;
    let theirs = app
        .saved(demo::NOVA_APP, "their state", &app.other_member)
        .await;
    let theirs_id = theirs["uuid"].as_str().unwrap();
    let missing = uuid::Uuid::new_v4().to_string();
    // Via the other tenant's instance and via our own instance, it looks like nothing.
    let a = app
        .get(
            &format!("/v1/instances/{}/states/{theirs_id}", demo::WEB),
            &app.member,
        )
        .await;
    let b = app
        .get(
            &format!("/v1/instances/{}/states/{missing}", demo::WEB),
            &app.member,
        )
        .await;
    assert_eq!((a.status, a.code()), (b.status, b.code()));
    assert_eq!(a.status, 404);
    let a = app
        .get(
            &format!("/v1/instances/{}/states", demo::NOVA_APP),
            &app.member,
        )
        .await;
    let b = app
        .get(&format!("/v1/instances/{missing}/states"), &app.member)
        .await;
    assert_eq!((a.status, a.code()), (404, "instance_not_found"));
    assert_eq!((b.status, b.code()), (404, "instance_not_found"));
    // Applying their state on our instance: the same 404.
    let r = app
        .post(
            &format!("/v1/instances/{}/states/apply", demo::WEB),
            &app.member,
            json!({"uuid": theirs_id}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "state_not_found"));
    // Static tokens and JWTs agree.
    let r = app
        .get(
            &format!("/v1/instances/{}/states", demo::NOVA_APP),
            &app.other_reader,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["values"][0]["name"], "their state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_assigns_ownership() {
    let app = TestApp::builder().start().await;
    // Give demo-db to the Nova tenant: demo's member loses sight of it, the Nova member gains it.
    let r = app
        .call(
            "PUT",
            &format!("/v1/instances/{}/owner", demo::DB),
            Some(&app.admin),
            Some(json!({"tenant_id": demo::NOVA_TENANT})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        app.get(&format!("/v1/instances/{}/states", demo::DB), &app.member)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(
            &format!("/v1/instances/{}/states", demo::DB),
            &app.other_member
        )
        .await
        .status,
        200
    );
    // Back to the domain's metadata.
    let r = app
        .call(
            "PUT",
            &format!("/v1/instances/{}/owner", demo::DB),
            Some(&app.admin),
            Some(json!({"tenant_id": null})),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        app.get(&format!("/v1/instances/{}/states", demo::DB), &app.member)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(
            &format!("/v1/instances/{}/states", demo::DB),
            &app.other_member
        )
        .await
        .status,
        404
    );
}

/// Everything of a response but what differs per request by design (its id and the date).
fn comparable(r: &snapgate_tests::app::Resp) -> (u16, Vec<(String, String)>, String) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
        .collect();
    headers.sort();
    (r.status, headers, r.text.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_yours_and_missing_answer_the_same_bytes_on_every_endpoint() {
    let app = TestApp::builder().start().await;
    let theirs = app
        .saved(demo::NOVA_APP, "their state", &app.other_member)
        .await;
    let their_state = theirs["uuid"].as_str().unwrap().to_owned();
    let their_save = app
        .save(demo::NOVA_APP, "their second", &app.other_member)
        .await;
    let their_op = their_save.body["operation"].as_str().unwrap().to_owned();
    app.wait(&their_op, &app.other_member).await;
    let missing = uuid::Uuid::new_v4().to_string();

    // (method, path for the other tenant's thing, path for a missing one, body)
    let instance_calls = |i: &str, s: &str| {
        vec![
            ("GET", format!("/v1/instances/{i}/states"), None),
            ("GET", format!("/v1/instances/{i}/states/{s}"), None),
            (
                "POST",
                format!("/v1/instances/{i}/states"),
                Some(json!({"name": "n"})),
            ),
            (
                "POST",
                format!("/v1/instances/{i}/states?dry_run=true"),
                Some(json!({"name": "n"})),
            ),
            (
                "POST",
                format!("/v1/instances/{i}/states/apply"),
                Some(json!({"uuid": s})),
            ),
            ("DELETE", format!("/v1/instances/{i}/states/{s}"), None),
        ]
    };
    let mut pairs = Vec::new();
    // Their instance (with their state) against an instance that does not exist.
    for (a, b) in instance_calls(demo::NOVA_APP, &their_state)
        .into_iter()
        .zip(instance_calls(&missing, &missing))
    {
        pairs.push((a, b));
    }
    // Our instance with their state against our instance with a state that does not exist.
    for (a, b) in instance_calls(demo::WEB, &their_state)
        .into_iter()
        .zip(instance_calls(demo::WEB, &missing))
        .filter(|((_, path, body), _)| {
            path.contains(&their_state)
                || body
                    .as_ref()
                    .is_some_and(|b| b.to_string().contains(&their_state))
        })
    {
        pairs.push((a, b));
    }
    // Their operation against one that does not exist.
    for suffix in ["", "/wait?timeout=0"] {
        pairs.push((
            ("GET", format!("/v1/operations/{their_op}{suffix}"), None),
            ("GET", format!("/v1/operations/{missing}{suffix}"), None),
        ));
    }
    assert_eq!(pairs.len(), 6 + 3 + 2);
    for token in [&app.member, &app.reader] {
        for ((method, theirs_path, body), (_, missing_path, _)) in &pairs {
            let a = app
                .call(method, theirs_path, Some(token), body.clone())
                .await;
            let b = app
                .call(method, missing_path, Some(token), body.clone())
                .await;
            assert_eq!(a.status, 404, "{method} {theirs_path}: {}", a.text);
            assert_eq!(
                comparable(&a),
                comparable(&b),
                "{method} {theirs_path} vs {missing_path}"
            );
        }
    }
}
