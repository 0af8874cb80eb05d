//! The placement index: records replaced or kept, forgotten only on their own host, batches
//! larger than one statement.

use std::sync::Arc;

use snapgate_core::ports::{Placement, PlacementStore};
use snapgate_store::SeaRepository;
use uuid::Uuid;

on_both_backends!(
    placements_are_replaced_kept_and_forgotten_per_host,
    a_host_inventory_larger_than_one_statement_is_recorded
);

fn at(instance: Uuid, host: &str, owner: Option<&str>) -> Placement {
    Placement {
        instance,
        host: host.into(),
        owner_tenant: owner.map(Into::into),
    }
}

async fn placements_are_replaced_kept_and_forgotten_per_host(repo: Arc<SeaRepository>) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(repo.placement(a).await.unwrap(), None);
    repo.record_placements(&[at(a, "h1", Some("t1")), at(b, "h1", None)])
        .await
        .unwrap();
    assert_eq!(
        repo.placement(a).await.unwrap(),
        Some(at(a, "h1", Some("t1")))
    );

    // A defined-only copy elsewhere does not take the record; a running one does.
    repo.record_new_placements(&[at(a, "h2", Some("t1"))])
        .await
        .unwrap();
    assert_eq!(repo.placement(a).await.unwrap().unwrap().host, "h1");
    repo.record_placements(&[at(a, "h2", Some("t2"))])
        .await
        .unwrap();
    assert_eq!(
        repo.placement(a).await.unwrap(),
        Some(at(a, "h2", Some("t2")))
    );

    // h1's inventory no longer lists a: a has moved on, so its record stays.
    repo.forget_placements("h1", &[a, b]).await.unwrap();
    assert_eq!(repo.placement(a).await.unwrap().unwrap().host, "h2");
    assert_eq!(repo.placement(b).await.unwrap(), None);
    assert_eq!(
        repo.placements_on_host("h2").await.unwrap(),
        vec![at(a, "h2", Some("t2"))]
    );
    assert!(repo.placements_on_host("h1").await.unwrap().is_empty());
}

async fn a_host_inventory_larger_than_one_statement_is_recorded(repo: Arc<SeaRepository>) {
    let many: Vec<Placement> = (0..1_203)
        .map(|_| at(Uuid::new_v4(), "big", Some("t")))
        .collect();
    repo.record_placements(&many).await.unwrap();
    assert_eq!(repo.placements_on_host("big").await.unwrap().len(), 1_203);
    let gone: Vec<Uuid> = many.iter().map(|p| p.instance).collect();
    repo.forget_placements("big", &gone).await.unwrap();
    assert!(repo.placements_on_host("big").await.unwrap().is_empty());
}
