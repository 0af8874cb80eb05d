//! Webhooks' rows: the per-tenant limit, the fan-out's conditional cursor (each event once per
//! webhook however many gateways race), exclusive claims that expire, attempts recorded only
//! under their claim, disabling after failures in a row, and the purge of finished ones.

use std::sync::Arc;

use chrono::Duration;
use snapgate_core::ports::{AttemptRecord, NewDelivery, Recorded, WebhookRecord, WebhookStore};
use snapgate_core::webhook::{new_secret, DeliveryStatus, Webhook};
use snapgate_store::SeaRepository;
use uuid::Uuid;

use crate::support::now;

on_both_backends!(
    the_tenant_limit_counts_its_webhooks,
    a_cursor_moves_once_and_racing_fan_outs_make_each_delivery_once,
    claims_are_exclusive_until_they_expire_and_attempts_need_their_claim,
    failures_in_a_row_disable_the_webhook_and_a_success_resets_the_count
);

fn hook(tenant: &str) -> WebhookRecord {
    WebhookRecord {
        webhook: Webhook {
            uuid: Uuid::now_v7(),
            tenant_id: tenant.into(),
            url: "https://example.com/hook".into(),
            events: vec![],
            description: None,
            enabled: true,
            disabled_reason: None,
            consecutive_failures: 0,
            created_at: now(),
        },
        secret: new_secret(),
        cursor: 0,
    }
}

fn deliveries(seqs: std::ops::RangeInclusive<i64>) -> Vec<NewDelivery> {
    seqs.map(|seq| NewDelivery {
        uuid: Uuid::now_v7(),
        event_seq: seq,
        event_id: Uuid::now_v7(),
        payload: format!("{{\"seq\":{seq}}}"),
        due_at: now() - Duration::seconds(1),
    })
    .collect()
}

fn attempt(delivery: Uuid, webhook: Uuid, claim: &str, delivered: bool) -> AttemptRecord {
    AttemptRecord {
        delivery,
        webhook,
        claim: claim.into(),
        at: now(),
        delivered,
        status_code: Some(if delivered { 200 } else { 500 }),
        error: (!delivered).then(|| "the receiver answered HTTP 500".into()),
        next_attempt_at: (!delivered).then(|| now() - Duration::seconds(1)),
        disable_after: 2,
        disabled_reason: "two in a row".into(),
    }
}

async fn the_tenant_limit_counts_its_webhooks(repo: Arc<SeaRepository>) {
    assert!(repo.create_webhook(&hook("a"), 1).await.unwrap());
    assert!(!repo.create_webhook(&hook("a"), 1).await.unwrap());
    assert!(repo.create_webhook(&hook("b"), 1).await.unwrap());
    assert_eq!(repo.list_webhooks(Some("a")).await.unwrap().len(), 1);
    assert_eq!(repo.list_webhooks(None).await.unwrap().len(), 2);
}

async fn a_cursor_moves_once_and_racing_fan_outs_make_each_delivery_once(repo: Arc<SeaRepository>) {
    let h = hook("a");
    let id = h.webhook.uuid;
    assert!(repo.create_webhook(&h, 10).await.unwrap());
    assert!(repo.fan_out(id, 0, 5, &deliveries(1..=2)).await.unwrap());
    // A gateway that read the old cursor writes nothing.
    assert!(!repo.fan_out(id, 0, 5, &deliveries(1..=2)).await.unwrap());
    assert_eq!(repo.get_webhook(id).await.unwrap().unwrap().cursor, 5);

    // Eight gateways fan out the same events from the same cursor: one wins.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.fan_out(id, 5, 9, &deliveries(6..=9)).await })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        if r.await.unwrap().unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    let all = repo.recent_deliveries(id, 100).await.unwrap();
    let seqs: Vec<i64> = all.iter().map(|d| d.event_seq).collect();
    assert_eq!(seqs, [9, 8, 7, 6, 2, 1], "newest first, each once");
    assert!(all.iter().all(|d| d.status == DeliveryStatus::Pending));
}

async fn claims_are_exclusive_until_they_expire_and_attempts_need_their_claim(
    repo: Arc<SeaRepository>,
) {
    let h = hook("a");
    let id = h.webhook.uuid;
    repo.create_webhook(&h, 10).await.unwrap();
    repo.fan_out(id, 0, 6, &deliveries(1..=6)).await.unwrap();
    let t = now();
    let until = t + Duration::seconds(60);

    // Two gateways claim at once: disjoint sets covering all six.
    let (a, b) = tokio::join!(
        repo.claim_deliveries("gw-a", t, until, 4),
        repo.claim_deliveries("gw-b", t, until, 4)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 6, "{} + {}", a.len(), b.len());
    let mut seen: Vec<Uuid> = a.iter().chain(&b).map(|d| d.uuid).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6);
    assert!(repo
        .claim_deliveries("gw-c", t, until, 10)
        .await
        .unwrap()
        .is_empty());

    // An attempt is recorded only under its own claim.
    let d = &a[0];
    assert_eq!(
        repo.record_attempt(&attempt(d.uuid, id, "gw-b", true))
            .await
            .unwrap(),
        Recorded::ClaimLost
    );
    // Once a claim has expired, another gateway takes it; the first one's record is refused.
    let later = until + Duration::seconds(1);
    let retaken = repo
        .claim_deliveries("gw-c", later, later + Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(retaken.len(), 6);
    assert_eq!(
        repo.record_attempt(&attempt(d.uuid, id, "gw-a", true))
            .await
            .unwrap(),
        Recorded::ClaimLost
    );
    assert_eq!(
        repo.record_attempt(&attempt(d.uuid, id, "gw-c", true))
            .await
            .unwrap(),
        Recorded::Written { disabled: false }
    );
    let recorded = repo.recent_deliveries(id, 100).await.unwrap();
    let done = recorded.iter().find(|r| r.uuid == d.uuid).unwrap();
    assert_eq!(done.status, DeliveryStatus::Delivered);
    assert_eq!(done.attempts, 1);
    assert_eq!(done.last_status_code, Some(200));
    assert_eq!(done.next_attempt_at, None);

    // Purging takes finished deliveries older than the cut only, never pending ones.
    assert_eq!(
        repo.purge_deliveries(now() - Duration::hours(1), 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        repo.purge_deliveries(now() + Duration::hours(1), 10)
            .await
            .unwrap(),
        1
    );
    let left = repo.recent_deliveries(id, 100).await.unwrap();
    assert_eq!(left.len(), 5);
    assert!(left.iter().all(|d| d.status == DeliveryStatus::Pending));
}

async fn failures_in_a_row_disable_the_webhook_and_a_success_resets_the_count(
    repo: Arc<SeaRepository>,
) {
    let h = hook("a");
    let id = h.webhook.uuid;
    repo.create_webhook(&h, 10).await.unwrap();
    repo.fan_out(id, 0, 1, &deliveries(1..=1)).await.unwrap();
    let claim = |n: i64| {
        let repo = repo.clone();
        async move {
            let t = now() + Duration::seconds(n);
            let got = repo
                .claim_deliveries(&format!("c{n}"), t, t + Duration::seconds(1), 10)
                .await
                .unwrap();
            assert_eq!(got.len(), 1, "claim {n}");
            got[0].uuid
        }
    };
    let d = claim(0).await;
    let first = attempt(d, id, "c0", false);
    assert_eq!(
        repo.record_attempt(&first).await.unwrap(),
        Recorded::Written { disabled: false }
    );
    assert_eq!(
        repo.get_webhook(id)
            .await
            .unwrap()
            .unwrap()
            .webhook
            .consecutive_failures,
        1
    );
    let d = claim(10).await;
    repo.record_attempt(&attempt(d, id, "c10", true))
        .await
        .unwrap();
    assert_eq!(
        repo.get_webhook(id)
            .await
            .unwrap()
            .unwrap()
            .webhook
            .consecutive_failures,
        0
    );

    repo.fan_out(id, 1, 2, &deliveries(2..=2)).await.unwrap();
    let d = claim(20).await;
    repo.record_attempt(&attempt(d, id, "c20", false))
        .await
        .unwrap();
    let d = claim(30).await;
    assert_eq!(
        repo.record_attempt(&attempt(d, id, "c30", false))
            .await
            .unwrap(),
        Recorded::Written { disabled: true }
    );
    let w = repo.get_webhook(id).await.unwrap().unwrap().webhook;
    assert!(!w.enabled);
    assert_eq!(w.disabled_reason.as_deref(), Some("two in a row"));
    assert_eq!(w.consecutive_failures, 2);
    // Nothing of a disabled webhook is fanned out or claimed.
    assert!(repo.enabled_webhooks().await.unwrap().is_empty());
    let t = now() + Duration::seconds(60);
    assert!(repo
        .claim_deliveries("c", t, t + Duration::seconds(1), 10)
        .await
        .unwrap()
        .is_empty());
    // Deleting takes its deliveries with it.
    assert!(repo.delete_webhook(id).await.unwrap());
    assert!(repo.recent_deliveries(id, 10).await.unwrap().is_empty());
    assert!(!repo.delete_webhook(id).await.unwrap());
}
