//! What tenants keep, who owns an instance, and per-tenant limits.

use std::sync::Arc;

use snapgate_core::ports::{QuotaLimits, Repository, TenantTotals};
use snapgate_core::{State, StateStatus};
use snapgate_store::SeaRepository;
use uuid::Uuid;

use crate::support::{new_state, now, put_state};

on_both_backends!(
    totals_count_kept_states_per_tenant,
    instance_owner_is_set_replaced_and_removed,
    quota_limits_are_set_replaced_and_removed
);

async fn totals_count_kept_states_per_tenant(repo: Arc<SeaRepository>) {
    assert!(repo.tenant_totals().await.unwrap().is_empty());
    let instance = Uuid::new_v4();
    let kept = [
        ("tenant-a", StateStatus::Available, Some(10)),
        ("tenant-a", StateStatus::Applying, Some(5)),
        // Size unknown counts as zero bytes.
        ("tenant-a", StateStatus::Deleting, None),
        // Not kept: a save in progress and a failed one.
        ("tenant-a", StateStatus::Saving, Some(100)),
        ("tenant-a", StateStatus::Error, Some(7)),
        ("tenant-b", StateStatus::Available, Some(3_000_000_000_000)),
        ("tenant-c", StateStatus::Error, Some(1)),
    ];
    for (i, (tenant, status, size)) in kept.into_iter().enumerate() {
        let state = State {
            status,
            size_bytes: size,
            ..new_state(instance, tenant, &format!("s{i}"), now())
        };
        put_state(&repo, &state).await;
    }
    assert_eq!(
        repo.tenant_totals().await.unwrap(),
        vec![
            TenantTotals {
                tenant: "tenant-a".into(),
                states: 3,
                bytes: 15
            },
            TenantTotals {
                tenant: "tenant-b".into(),
                states: 1,
                bytes: 3_000_000_000_000
            },
        ]
    );
}

async fn instance_owner_is_set_replaced_and_removed(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    assert_eq!(repo.instance_owner(instance).await.unwrap(), None);
    repo.set_instance_owner(instance, Some("tenant-a"), None)
        .await
        .unwrap();
    assert_eq!(
        repo.instance_owner(instance).await.unwrap().as_deref(),
        Some("tenant-a")
    );
    repo.set_instance_owner(instance, Some("tenant-b"), None)
        .await
        .unwrap();
    assert_eq!(
        repo.instance_owner(instance).await.unwrap().as_deref(),
        Some("tenant-b")
    );
    assert_eq!(repo.instance_owner(Uuid::new_v4()).await.unwrap(), None);
    repo.set_instance_owner(instance, None, None).await.unwrap();
    assert_eq!(repo.instance_owner(instance).await.unwrap(), None);
    // Removing what is not there is fine.
    repo.set_instance_owner(instance, None, None).await.unwrap();
}

async fn quota_limits_are_set_replaced_and_removed(repo: Arc<SeaRepository>) {
    let limits = QuotaLimits {
        states: 10,
        state_bytes: 50 << 30,
        concurrent_operations: 2,
        saves_per_hour: -1,
    };
    assert_eq!(repo.quota_limits("tenant-a").await.unwrap(), None);
    repo.set_quota_limits("tenant-a", Some(&limits))
        .await
        .unwrap();
    assert_eq!(repo.quota_limits("tenant-a").await.unwrap(), Some(limits));
    let tighter = QuotaLimits {
        states: 1,
        ..limits
    };
    repo.set_quota_limits("tenant-a", Some(&tighter))
        .await
        .unwrap();
    assert_eq!(repo.quota_limits("tenant-a").await.unwrap(), Some(tighter));
    assert_eq!(repo.quota_limits("tenant-b").await.unwrap(), None);
    repo.set_quota_limits("tenant-a", None).await.unwrap();
    assert_eq!(repo.quota_limits("tenant-a").await.unwrap(), None);
    repo.set_quota_limits("tenant-a", None).await.unwrap();
}
