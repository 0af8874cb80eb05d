//! The event log: plain appends, numbering by the sequencer only, dense order, reads, purge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Duration;
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};
use snapgate_core::events::{EventFilter, EventKind, NewEvent};
use snapgate_core::ports::EventLog;
use snapgate_store::entity::events;
use snapgate_store::testing::TestBackend;
use snapgate_store::SeaRepository;
use uuid::Uuid;

use crate::support::now;

on_both_backends!(
    appended_events_are_unnumbered_until_a_pass,
    passes_number_densely_and_reads_filter,
    concurrent_appenders_never_make_a_reader_see_seq_go_back_or_skip,
    purge_removes_old_numbered_events_in_batches_and_keeps_the_newest
);

fn event(kind: EventKind, tenant: &str, instance: Option<Uuid>, n: u32) -> NewEvent {
    NewEvent {
        instance_uuid: instance,
        state_uuid: Some(Uuid::now_v7()),
        ..NewEvent::new(kind, tenant, serde_json::json!({ "n": n }))
    }
}

async fn appended_events_are_unnumbered_until_a_pass(repo: Arc<SeaRepository>) {
    let list: Vec<_> = (0..3)
        .map(|n| event(EventKind::StateSaved, "tenant-a", Some(Uuid::new_v4()), n))
        .collect();
    repo.append_events(&list).await.unwrap();
    assert_eq!(repo.last_event_seq().await.unwrap(), 0);
    let all = EventFilter::default();
    assert!(repo.events_after(0, &all, 100).await.unwrap().is_empty());

    assert_eq!(repo.sequence_events(100).await.unwrap(), 3);
    let read = repo.events_after(0, &all, 100).await.unwrap();
    assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    for (got, sent) in read.iter().zip(&list) {
        assert_eq!(got.id, sent.id, "numbered in the order appended");
        assert_eq!(got.kind, sent.kind);
        assert_eq!(got.tenant, sent.tenant);
        assert_eq!(got.instance_uuid, sent.instance_uuid);
        assert_eq!(got.state_uuid, sent.state_uuid);
        assert_eq!(got.operation_uuid, None);
        assert_eq!(got.data, sent.data);
        assert_eq!(
            got.occurred_at.timestamp_micros(),
            sent.occurred_at.timestamp_micros()
        );
    }
    // A pass with nothing to do changes nothing.
    assert_eq!(repo.sequence_events(100).await.unwrap(), 3);
    assert_eq!(repo.last_event_seq().await.unwrap(), 3);
}

async fn passes_number_densely_and_reads_filter(repo: Arc<SeaRepository>) {
    let vm = Uuid::new_v4();
    let mut list = Vec::new();
    for n in 0..10 {
        let (kind, tenant) = match n % 3 {
            0 => (EventKind::StateSaved, "tenant-a"),
            1 => (EventKind::QuotaExceeded, "tenant-b"),
            _ => (EventKind::StateDeleted, "tenant-a"),
        };
        list.push(event(kind, tenant, (n % 2 == 0).then_some(vm), n));
    }
    repo.append_events(&list).await.unwrap();
    // Batches of 4: 4, 8, 10.
    assert_eq!(repo.sequence_events(4).await.unwrap(), 4);
    assert_eq!(repo.sequence_events(4).await.unwrap(), 8);
    assert_eq!(repo.sequence_events(4).await.unwrap(), 10);
    let all = repo
        .events_after(0, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        list.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    // after + limit page through the log.
    let page = repo
        .events_after(3, &EventFilter::default(), 2)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);

    let filters = [
        EventFilter {
            tenant: Some("tenant-b".into()),
            ..Default::default()
        },
        EventFilter {
            kinds: vec![EventKind::StateSaved, EventKind::StateDeleted],
            ..Default::default()
        },
        EventFilter {
            instance: Some(vm),
            ..Default::default()
        },
        EventFilter {
            tenant: Some("tenant-a".into()),
            kinds: vec![EventKind::StateDeleted],
            instance: Some(vm),
        },
        EventFilter {
            tenant: Some("tenant-c".into()),
            ..Default::default()
        },
    ];
    for filter in filters {
        let read = repo.events_after(0, &filter, 100).await.unwrap();
        let expected: Vec<_> = all.iter().filter(|e| filter.matches(e)).cloned().collect();
        assert_eq!(read, expected, "{filter:?}");
    }
}

async fn concurrent_appenders_never_make_a_reader_see_seq_go_back_or_skip(
    repo: Arc<SeaRepository>,
) {
    const PER_APPENDER: u32 = 150;
    let done = Arc::new(AtomicBool::new(false));
    let mut appenders = Vec::new();
    for tenant in ["tenant-a", "tenant-b"] {
        let repo = repo.clone();
        appenders.push(tokio::spawn(async move {
            for n in 0..PER_APPENDER {
                // Mostly single rows, sometimes a batch, like operation ends and the batcher.
                let list: Vec<_> = (0..1 + n % 3)
                    .map(|i| event(EventKind::StateSaved, tenant, None, n * 10 + i))
                    .collect();
                repo.append_events(&list).await.unwrap();
            }
        }));
    }
    let expected: i64 = (0..PER_APPENDER).map(|n| i64::from(1 + n % 3)).sum::<i64>() * 2;
    // Two sequencers, as two gateways would run.
    let mut sequencers = Vec::new();
    for _ in 0..2 {
        let (repo, done) = (repo.clone(), done.clone());
        sequencers.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                repo.sequence_events(7).await.unwrap();
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut last = 0;
    let mut seen = std::collections::HashSet::new();
    while last < expected {
        for e in repo
            .events_after(last, &EventFilter::default(), 50)
            .await
            .unwrap()
        {
            assert_eq!(e.seq, last + 1, "a reader at {last} got {}", e.seq);
            assert!(seen.insert(e.id), "event {} read twice", e.id);
            last = e.seq;
        }
        tokio::task::yield_now().await;
    }
    done.store(true, Ordering::Relaxed);
    for task in appenders.into_iter().chain(sequencers) {
        task.await.unwrap();
    }
    assert_eq!(repo.sequence_events(100).await.unwrap(), expected);
    assert_eq!(seen.len() as i64, expected);
}

async fn purge_removes_old_numbered_events_in_batches_and_keeps_the_newest(
    repo: Arc<SeaRepository>,
) {
    let old = now() - Duration::hours(10);
    let mut list = Vec::new();
    for n in 0..5 {
        list.push(NewEvent {
            occurred_at: old + Duration::seconds(n.into()),
            ..event(EventKind::StateSaved, "tenant-a", None, n)
        });
    }
    repo.append_events(&list).await.unwrap();
    repo.sequence_events(100).await.unwrap();
    // An old event not numbered yet is never purged: readers have not had it.
    let late = NewEvent {
        occurred_at: old,
        ..event(EventKind::StateSaved, "tenant-a", None, 99)
    };
    repo.append_events(std::slice::from_ref(&late))
        .await
        .unwrap();

    let cutoff = now() - Duration::hours(1);
    assert_eq!(repo.purge_events(cutoff, 2).await.unwrap(), 2);
    assert_eq!(repo.purge_events(cutoff, 100).await.unwrap(), 2);
    // The newest numbered event stays, so numbering goes on after it.
    assert_eq!(repo.purge_events(cutoff, 100).await.unwrap(), 0);
    let left = repo
        .events_after(0, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [5]);
    assert_eq!(repo.sequence_events(100).await.unwrap(), 6);
    let left = repo
        .events_after(0, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(left.last().map(|e| e.id), Some(late.id));
}

/// PostgreSQL only (SQLite has one writer, so no transaction can be open beside a pass): an
/// append whose transaction commits after a later append was numbered gets the next number, and
/// a reader already past the later one still gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_slow_append_commit_is_numbered_after_what_was_read() {
    crate::support::run(TestBackend::Postgres, |repo| async move {
        let slow = event(EventKind::StateSaved, "tenant-a", None, 1);
        let txn = repo.connection().begin().await.unwrap();
        events::Entity::insert(events::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            seq: Set(None),
            uuid: Set(slow.id),
            kind: Set(slow.kind.as_str().into()),
            tenant_id: Set(slow.tenant.clone()),
            instance_uuid: Set(None),
            state_uuid: Set(None),
            operation_uuid: Set(None),
            occurred_at: Set(slow.occurred_at.timestamp_micros()),
            data: Set(slow.data.to_string()),
        })
        .exec_without_returning(&txn)
        .await
        .unwrap();
        let fast = event(EventKind::StateSaved, "tenant-a", None, 2);
        repo.append_events(std::slice::from_ref(&fast))
            .await
            .unwrap();
        assert_eq!(repo.sequence_events(100).await.unwrap(), 1);
        let read = repo
            .events_after(0, &EventFilter::default(), 10)
            .await
            .unwrap();
        assert_eq!(read.iter().map(|e| e.id).collect::<Vec<_>>(), [fast.id]);
        txn.commit().await.unwrap();
        assert_eq!(repo.sequence_events(100).await.unwrap(), 2);
        let read = repo
            .events_after(1, &EventFilter::default(), 10)
            .await
            .unwrap();
        assert_eq!(
            read.iter().map(|e| (e.seq, e.id)).collect::<Vec<_>>(),
            [(2, slow.id)]
        );
    })
    .await;
}
