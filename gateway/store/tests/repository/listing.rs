//! Listing states: newest first, keyset pages that survive equal dates, marker errors.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use snapgate_core::ports::{RepoError, Repository};
use snapgate_core::{State, StateStatus};
use snapgate_store::SeaRepository;
use uuid::Uuid;

use crate::support::{new_state, now, put_state};

on_both_backends!(
    pages_cover_every_state_once_with_equal_dates,
    a_page_ends_exactly_at_the_last_state,
    unknown_marker_is_not_found,
);

/// Reads every page of `limit` items.
async fn all_pages(repo: &SeaRepository, instance: Uuid, limit: u64) -> Vec<Vec<State>> {
    let mut pages = Vec::new();
    let mut marker = None;
    loop {
        let page = repo.list_states(instance, limit, marker).await.unwrap();
        assert!(page.items.len() as u64 <= limit);
        marker = page.items.last().map(|s| s.uuid);
        let more = page.more;
        pages.push(page.items);
        if !more {
            return pages;
        }
        assert!(marker.is_some(), "`more` on an empty page");
    }
}

async fn pages_cover_every_state_once_with_equal_dates(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    let tie = now();
    let mut expected = Vec::new();
    // Ten states share one timestamp; their uuids span the whole byte range, so the tiebreak
    // must compare uuids the same way (unsigned bytes) on both backends.
    for (i, first_byte) in [0x00u8, 0x01, 0x7f, 0x80, 0x81, 0xfe, 0xff, 0x3c, 0xc3, 0x10]
        .into_iter()
        .enumerate()
    {
        let mut bytes = *Uuid::new_v4().as_bytes();
        bytes[0] = first_byte;
        let state = State {
            uuid: Uuid::from_bytes(bytes),
            status: StateStatus::Available,
            ..new_state(instance, "tenant-a", &format!("tie-{i}"), tie)
        };
        put_state(&repo, &state).await;
        expected.push(state);
    }
    // Before and after the tie, including sub-millisecond differences.
    for (i, offset) in [-3_000_000i64, -1, 1, 2_000_000].into_iter().enumerate() {
        let state = State {
            status: StateStatus::Available,
            ..new_state(
                instance,
                "tenant-a",
                &format!("other-{i}"),
                tie + Duration::microseconds(offset),
            )
        };
        put_state(&repo, &state).await;
        expected.push(state);
    }
    // Another instance's states never show up.
    put_state(
        &repo,
        &new_state(Uuid::new_v4(), "tenant-a", "elsewhere", tie),
    )
    .await;

    expected.sort_by(|a, b| b.date.cmp(&a.date).then(b.uuid.cmp(&a.uuid)));

    for limit in [1, 3, 4, 14, 100] {
        let pages = all_pages(&repo, instance, limit).await;
        let listed: Vec<State> = pages.into_iter().flatten().collect();
        let unique: HashSet<Uuid> = listed.iter().map(|s| s.uuid).collect();
        assert_eq!(
            unique.len(),
            listed.len(),
            "an item repeated with limit {limit}"
        );
        assert_eq!(listed, expected, "order or content with limit {limit}");
    }
    assert_eq!(repo.states_of_instance(instance).await.unwrap(), expected);
}

async fn a_page_ends_exactly_at_the_last_state(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    let empty = repo.list_states(instance, 10, None).await.unwrap();
    assert!(empty.items.is_empty() && !empty.more);

    for i in 0..4 {
        put_state(
            &repo,
            &new_state(
                instance,
                "tenant-a",
                &format!("s{i}"),
                now() + Duration::seconds(i),
            ),
        )
        .await;
    }
    let page = repo.list_states(instance, 4, None).await.unwrap();
    assert_eq!((page.items.len(), page.more), (4, false));
    let page = repo.list_states(instance, 3, None).await.unwrap();
    assert_eq!((page.items.len(), page.more), (3, true));
    assert_eq!(page.items[0].name, "s3", "newest first");
    let rest = repo
        .list_states(instance, 3, page.items.last().map(|s| s.uuid))
        .await
        .unwrap();
    assert_eq!((rest.items.len(), rest.more), (1, false));
    assert_eq!(rest.items[0].name, "s0");
    // The marker is the last state: an empty last page.
    let after = repo
        .list_states(instance, 3, Some(rest.items[0].uuid))
        .await
        .unwrap();
    assert!(after.items.is_empty() && !after.more);
}

async fn unknown_marker_is_not_found(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    put_state(&repo, &new_state(instance, "tenant-a", "mine", now())).await;
    let foreign = new_state(Uuid::new_v4(), "tenant-a", "theirs", now());
    put_state(&repo, &foreign).await;

    let err = repo
        .list_states(instance, 10, Some(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::NotFound), "{err:?}");
    // A state of another instance is no marker for this one.
    let err = repo
        .list_states(instance, 10, Some(foreign.uuid))
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::NotFound), "{err:?}");
}
