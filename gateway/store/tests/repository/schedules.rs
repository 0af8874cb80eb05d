//! The ScheduleStore contract: a due run is claimed by one caller however many race for it,
//! the per-tenant limit holds under concurrent creations, and a late record never overwrites
//! a newer run. Also LifecycleStore's edits and expiry listing.

use std::sync::Arc;

use chrono::{Duration, SubsecRound};
use snapgate_core::ports::{LifecycleStore, PatchOutcome, RepoError, ScheduleStore, StatePatch};
use snapgate_core::{Retention, RunOutcome, Schedule, ScheduleRun, StateStatus};
use snapgate_store::SeaRepository;
use uuid::Uuid;

use crate::support::{new_state, now};

fn schedule(tenant: &str, next: Option<chrono::DateTime<chrono::Utc>>) -> Schedule {
    let t = now();
    Schedule {
        uuid: Uuid::now_v7(),
        instance_uuid: Uuid::new_v4(),
        tenant_id: tenant.to_owned(),
        cron: "* * * * *".into(),
        time_zone: "UTC".into(),
        name_pattern: "s-%H%M".into(),
        mode: None,
        enabled: true,
        retention: Retention {
            keep_last: Some(3),
            ..Default::default()
        },
        next_run_at: next,
        last_run: None,
        created_at: t,
        updated_at: t,
    }
}

fn run_for(slot: chrono::DateTime<chrono::Utc>, outcome: RunOutcome) -> ScheduleRun {
    ScheduleRun {
        scheduled_for: slot,
        started_at: now(),
        outcome,
        error: None,
        state: None,
        operation: None,
    }
}

async fn a_due_run_is_claimed_once(repo: Arc<SeaRepository>) {
    let slot = now() - Duration::minutes(5);
    let s = schedule("t", Some(slot));
    assert!(repo.create_schedule(&s, 10).await.unwrap());
    assert_eq!(repo.get_schedule(s.uuid).await.unwrap().unwrap(), s);
    let due = repo.due_schedules(now(), 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.uuid).collect::<Vec<_>>(), [s.uuid]);
    let next = now() + Duration::minutes(1);
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move {
                repo.claim_schedule_run(
                    s.uuid,
                    slot,
                    Some(next),
                    &run_for(slot, RunOutcome::Started),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut claims = Vec::new();
    for r in racers {
        claims.push(r.await.unwrap());
    }
    assert_eq!(claims.iter().filter(|c| **c).count(), 1, "{claims:?}");
    let after = repo.get_schedule(s.uuid).await.unwrap().unwrap();
    assert_eq!(after.next_run_at, Some(next.trunc_subsecs(6)));
    assert_eq!(after.last_run.unwrap().outcome, RunOutcome::Started);
    assert!(repo.due_schedules(now(), 10).await.unwrap().is_empty());

    // A record of an older slot does not overwrite the last run; one of the same slot does.
    repo.record_schedule_run(
        s.uuid,
        &run_for(slot - Duration::minutes(1), RunOutcome::Failed),
    )
    .await
    .unwrap();
    let last = repo
        .get_schedule(s.uuid)
        .await
        .unwrap()
        .unwrap()
        .last_run
        .unwrap();
    assert_eq!(last.outcome, RunOutcome::Started);
    repo.record_schedule_run(s.uuid, &run_for(slot, RunOutcome::Succeeded))
        .await
        .unwrap();
    let last = repo
        .get_schedule(s.uuid)
        .await
        .unwrap()
        .unwrap()
        .last_run
        .unwrap();
    assert_eq!(last.outcome, RunOutcome::Succeeded);
}

async fn the_tenant_limit_holds_under_concurrent_creations(repo: Arc<SeaRepository>) {
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move {
                repo.create_schedule(&schedule("limited", None), 3)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = Vec::new();
    for r in racers {
        created.push(r.await.unwrap());
    }
    assert_eq!(created.iter().filter(|c| **c).count(), 3, "{created:?}");
    // Another tenant has its own count.
    assert!(repo
        .create_schedule(&schedule("other", None), 3)
        .await
        .unwrap());
}

async fn edits_are_conditional_and_expired_states_are_listed(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    let mut a = new_state(instance, "t", "a", now());
    a.status = StateStatus::Available;
    let mut b = new_state(instance, "t", "b", now());
    b.status = StateStatus::Available;
    b.expires_at = Some(now() - Duration::seconds(1));
    for s in [&a, &b] {
        crate::support::put_state(&repo, s).await;
    }
    let rename = |name: &str| StatePatch {
        name: Some(name.into()),
        ..Default::default()
    };
    assert!(matches!(
        repo.update_state(instance, a.uuid, &rename("b"), now())
            .await,
        Err(RepoError::DuplicateName(_))
    ));
    match repo
        .update_state(instance, a.uuid, &rename("c"), now())
        .await
        .unwrap()
    {
        PatchOutcome::Updated(s) => assert_eq!(s.name, "c"),
        other => panic!("{other:?}"),
    }
    let expiry = StatePatch {
        expires_at: Some(None),
        ..Default::default()
    };
    assert!(matches!(
        repo.update_state(instance, b.uuid, &expiry, now())
            .await
            .unwrap(),
        PatchOutcome::Expired
    ));
    assert!(matches!(
        repo.update_state(Uuid::new_v4(), a.uuid, &rename("d"), now())
            .await,
        Err(RepoError::NotFound)
    ));
    let expired = repo.expired_states(now(), 10).await.unwrap();
    assert_eq!(expired.iter().map(|s| s.uuid).collect::<Vec<_>>(), [b.uuid]);
}

on_both_backends!(
    a_due_run_is_claimed_once,
    the_tenant_limit_holds_under_concurrent_creations,
    edits_are_conditional_and_expired_states_are_listed,
);
