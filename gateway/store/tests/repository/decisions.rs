//! Recorded policy decisions and their filtered listing.

use std::sync::Arc;

use chrono::Duration;
use snapgate_core::ports::repository::{DecisionFilter, DecisionRecord};
use snapgate_core::ports::{Decision, Repository};
use snapgate_core::OperationKind;
use snapgate_store::SeaRepository;
use uuid::Uuid;

use crate::support::now;

on_both_backends!(
    decisions_round_trip_and_filter,
    decisions_past_retention_are_purged_in_batches_oldest_first
);

fn record(tenant: &str, plugin: &str, outcome: &str, age_secs: i64) -> DecisionRecord {
    DecisionRecord {
        id: Uuid::now_v7(),
        time: now() - Duration::seconds(age_secs),
        tenant: tenant.to_owned(),
        instance_uuid: Uuid::new_v4(),
        operation: OperationKind::Save,
        dry_run: age_secs % 2 == 0,
        decision: Decision {
            plugin: plugin.to_owned(),
            plugin_sha256: "ab".repeat(32),
            mode: "enforce".to_owned(),
            outcome: outcome.to_owned(),
            overridden: outcome == "error",
            code: (outcome == "deny").then(|| "too_many".to_owned()),
            reason: (outcome == "deny").then(|| "too many states".to_owned()),
            warnings: if outcome == "allow" {
                vec![]
            } else {
                vec!["w1".to_owned(), "w2".to_owned()]
            },
            latency_us: 17,
        },
    }
}

fn ids(records: &[DecisionRecord]) -> Vec<Uuid> {
    records.iter().map(|r| r.id).collect()
}

async fn decisions_round_trip_and_filter(repo: Arc<SeaRepository>) {
    repo.record_decisions(&[]).await.unwrap();
    let recorded = vec![
        record("tenant-a", "max-states", "allow", 400),
        record("tenant-a", "max-states", "deny", 300),
        record("tenant-b", "max-states", "allow", 200),
        record("tenant-b", "cpu-guard", "error", 100),
        record("tenant-a", "cpu-guard", "deny", 10),
    ];
    repo.record_decisions(&recorded).await.unwrap();
    let newest_first: Vec<DecisionRecord> = recorded.iter().rev().cloned().collect();

    let all = repo
        .list_decisions(&DecisionFilter::default())
        .await
        .unwrap();
    assert_eq!(all, newest_first, "every field round-trips, newest first");

    let filter = |f: DecisionFilter| {
        let repo = Arc::clone(&repo);
        async move { ids(&repo.list_decisions(&f).await.unwrap()) }
    };
    let tenant_a = DecisionFilter {
        tenant: Some("tenant-a".into()),
        ..Default::default()
    };
    assert_eq!(
        filter(tenant_a.clone()).await,
        vec![recorded[4].id, recorded[1].id, recorded[0].id]
    );
    let plugin = DecisionFilter {
        plugin: Some("cpu-guard".into()),
        ..Default::default()
    };
    assert_eq!(filter(plugin).await, vec![recorded[4].id, recorded[3].id]);
    let denials_of_a = DecisionFilter {
        outcome: Some("deny".into()),
        ..tenant_a.clone()
    };
    assert_eq!(
        filter(denials_of_a).await,
        vec![recorded[4].id, recorded[1].id]
    );
    // `since` inclusive, `until` exclusive.
    let window = DecisionFilter {
        since: Some(recorded[2].time),
        until: Some(recorded[4].time),
        ..Default::default()
    };
    assert_eq!(filter(window).await, vec![recorded[3].id, recorded[2].id]);
    let limited = DecisionFilter {
        limit: 2,
        ..Default::default()
    };
    assert_eq!(filter(limited).await, vec![recorded[4].id, recorded[3].id]);
    let nobody = DecisionFilter {
        tenant: Some("tenant-z".into()),
        ..Default::default()
    };
    assert!(filter(nobody).await.is_empty());

    // A large batch goes in whole.
    let many: Vec<DecisionRecord> = (0..1200)
        .map(|i| record("tenant-m", "bulk", "allow", 1000 + i))
        .collect();
    repo.record_decisions(&many).await.unwrap();
    let bulk = DecisionFilter {
        plugin: Some("bulk".into()),
        ..Default::default()
    };
    assert_eq!(filter(bulk).await.len(), 1200);
}

/// The maintenance loop's purge: only decisions older than the cutoff go, at most `batch` per
/// call and oldest first, so a backlog leaves in short statements.
async fn decisions_past_retention_are_purged_in_batches_oldest_first(repo: Arc<SeaRepository>) {
    const DAY: i64 = 24 * 3600;
    let old: Vec<DecisionRecord> = (0..5)
        .map(|i| record("tenant-a", "max-states", "allow", 40 * DAY - i))
        .collect();
    let kept = vec![
        record("tenant-a", "max-states", "deny", 29 * DAY),
        record("tenant-b", "cpu-guard", "allow", 10),
    ];
    repo.record_decisions(&old).await.unwrap();
    repo.record_decisions(&kept).await.unwrap();
    let cutoff = now() - Duration::days(30);

    assert_eq!(repo.purge_decisions(cutoff, 2).await.unwrap(), 2);
    let left = ids(&repo
        .list_decisions(&DecisionFilter::default())
        .await
        .unwrap());
    assert!(
        !left.contains(&old[0].id) && !left.contains(&old[1].id) && left.contains(&old[2].id),
        "the oldest go first"
    );
    assert_eq!(repo.purge_decisions(cutoff, 2).await.unwrap(), 2);
    assert_eq!(repo.purge_decisions(cutoff, 2).await.unwrap(), 1);
    assert_eq!(repo.purge_decisions(cutoff, 2).await.unwrap(), 0);
    let left = ids(&repo
        .list_decisions(&DecisionFilter::default())
        .await
        .unwrap());
    assert_eq!(left, vec![kept[1].id, kept[0].id], "newer decisions stay");
}
