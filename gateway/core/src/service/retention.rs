//! Which of a schedule's states its retention keeps: restic's `forget` rules.
//!
//! The states are taken newest first (by `date`, ties by uuid). Each rule that is set keeps
//! states on its own, and a state any rule keeps is kept:
//! - `keep_last = n`: the `n` newest states.
//! - `keep_hourly | keep_daily | keep_weekly | keep_monthly = n`: going from the newest state
//!   back, the newest state of each hour (day, ISO week Monday–Sunday, month) — of the
//!   schedule's time zone — until `n` such periods are covered. Periods without a state do
//!   not count: `keep_daily = 7` keeps one state for each of the last 7 days *that have one*.
//!
//! With no rule set nothing is selected for deletion. A state a rule keeps counts for that
//! rule only; the rules do not share a budget (as restic, unlike sanoid's wall-clock periods).

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use crate::Retention;

/// The period a local time falls in (a tuple that differs between periods).
type PeriodOf = fn(DateTime<Tz>) -> (i32, u32, u32, u32);

/// The uuids `retention` keeps among `states` (uuid and creation time, any order).
pub fn kept(states: &[(Uuid, DateTime<Utc>)], retention: &Retention, zone: Tz) -> HashSet<Uuid> {
    let mut newest_first = states.to_vec();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    if !retention.is_set() {
        return newest_first.iter().map(|(id, _)| *id).collect();
    }
    let mut keep = HashSet::new();
    if let Some(n) = retention.keep_last {
        keep.extend(newest_first.iter().take(n as usize).map(|(id, _)| *id));
    }
    let periods: [(Option<u32>, PeriodOf); 4] = [
        (retention.keep_hourly, |t| {
            (t.year(), t.ordinal(), t.hour(), 0)
        }),
        (retention.keep_daily, |t| (t.year(), t.ordinal(), 0, 0)),
        (retention.keep_weekly, |t| {
            let w = t.iso_week();
            (w.year(), w.week(), 0, 0)
        }),
        (retention.keep_monthly, |t| (t.year(), t.month(), 0, 0)),
    ];
    for (n, period_of) in periods {
        let Some(n) = n else { continue };
        let mut last = None;
        let mut covered = 0;
        for (id, date) in &newest_first {
            if covered == n {
                break;
            }
            let period = period_of(date.with_timezone(&zone));
            if last != Some(period) {
                keep.insert(*id);
                last = Some(period);
                covered += 1;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// States named by their time, so a test reads which times are kept.
    fn states(times: &[&str]) -> Vec<(Uuid, DateTime<Utc>)> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| (Uuid::from_u128(i as u128 + 1), at(t)))
            .collect()
    }

    fn kept_times(times: &[&str], r: Retention, zone: Tz) -> Vec<String> {
        let all = states(times);
        let keep = kept(&all, &r, zone);
        let mut out: Vec<String> = all
            .iter()
            .filter(|(id, _)| keep.contains(id))
            .map(|(_, t)| t.format("%Y-%m-%dT%H:%M").to_string())
            .collect();
        out.sort();
        out
    }

    const HOURS: [&str; 8] = [
        "2026-05-01T10:05:00Z",
        "2026-05-01T10:35:00Z",
        "2026-05-01T11:05:00Z",
        "2026-05-01T11:35:00Z",
        "2026-05-01T12:05:00Z",
        // 13:00 has none.
        "2026-05-01T14:05:00Z",
        "2026-05-01T14:35:00Z",
        "2026-05-01T14:50:00Z",
    ];

    #[test]
    fn no_rule_keeps_everything() {
        assert_eq!(kept_times(&HOURS, Retention::default(), Tz::UTC).len(), 8);
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let r = Retention {
            keep_last: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept_times(&HOURS, r, Tz::UTC),
            ["2026-05-01T14:05", "2026-05-01T14:35", "2026-05-01T14:50"]
        );
        let r = Retention {
            keep_last: Some(100),
            ..Default::default()
        };
        assert_eq!(kept_times(&HOURS, r, Tz::UTC).len(), 8);
    }

    #[test]
    fn keep_hourly_takes_the_newest_of_each_hour_and_skips_empty_hours() {
        let r = Retention {
            keep_hourly: Some(3),
            ..Default::default()
        };
        // 14:50 (hour 14), 12:05 (hour 12; 13 has none and does not count), 11:35 (hour 11).
        assert_eq!(
            kept_times(&HOURS, r, Tz::UTC),
            ["2026-05-01T11:35", "2026-05-01T12:05", "2026-05-01T14:50"]
        );
    }

    #[test]
    fn rules_are_independent_and_their_union_is_kept() {
        let r = Retention {
            keep_last: Some(2),
            keep_hourly: Some(2),
            ..Default::default()
        };
        // keep_last: 14:50, 14:35; keep_hourly: 14:50, 12:05. No shared budget.
        assert_eq!(
            kept_times(&HOURS, r, Tz::UTC),
            ["2026-05-01T12:05", "2026-05-01T14:35", "2026-05-01T14:50"]
        );
    }

    #[test]
    fn daily_weekly_monthly_tiers() {
        let times = [
            "2026-03-30T09:00:00Z", // Mon, ISO week 14, March
            "2026-03-31T09:00:00Z", // Tue, week 14, March
            "2026-04-01T09:00:00Z", // Wed, week 14, April
            "2026-04-01T21:00:00Z", // Wed, week 14, April
            "2026-04-06T09:00:00Z", // Mon, week 15
            "2026-04-12T23:00:00Z", // Sun, week 15
            "2026-04-13T01:00:00Z", // Mon, week 16
            "2026-05-02T09:00:00Z", // Sat, week 18, May
        ];
        let daily = Retention {
            keep_daily: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept_times(&times, daily, Tz::UTC),
            ["2026-04-12T23:00", "2026-04-13T01:00", "2026-05-02T09:00"]
        );
        let weekly = Retention {
            keep_weekly: Some(3),
            ..Default::default()
        };
        // Weeks 18, 16, 15 (its newest: Sunday 12 April).
        assert_eq!(
            kept_times(&times, weekly, Tz::UTC),
            ["2026-04-12T23:00", "2026-04-13T01:00", "2026-05-02T09:00"]
        );
        let weekly4 = Retention {
            keep_weekly: Some(4),
            ..Default::default()
        };
        // … and week 14's newest, 1 April 21:00.
        assert!(kept_times(&times, weekly4, Tz::UTC).contains(&"2026-04-01T21:00".to_owned()));
        let monthly = Retention {
            keep_monthly: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept_times(&times, monthly, Tz::UTC),
            ["2026-03-31T09:00", "2026-04-13T01:00", "2026-05-02T09:00"]
        );
    }

    #[test]
    fn periods_are_those_of_the_schedules_time_zone() {
        // 23:30 and 00:30 UTC are two UTC days but one day in New York (19:30 and 20:30).
        let times = ["2026-06-01T23:30:00Z", "2026-06-02T00:30:00Z"];
        let daily = Retention {
            keep_daily: Some(2),
            ..Default::default()
        };
        assert_eq!(kept_times(&times, daily, Tz::UTC).len(), 2);
        assert_eq!(
            kept_times(&times, daily, Tz::America__New_York),
            ["2026-06-02T00:30"]
        );
        // In Tokyo (+9) a Sunday-to-Monday UTC pair is Monday both: one ISO week.
        let weekly = Retention {
            keep_weekly: Some(2),
            ..Default::default()
        };
        let times = ["2026-06-07T16:00:00Z", "2026-06-08T01:00:00Z"];
        assert_eq!(kept_times(&times, weekly, Tz::UTC).len(), 2);
        assert_eq!(kept_times(&times, weekly, Tz::Asia__Tokyo).len(), 1);
    }

    #[test]
    fn the_newest_state_is_always_kept_when_a_rule_is_set() {
        for r in [
            Retention {
                keep_last: Some(1),
                ..Default::default()
            },
            Retention {
                keep_hourly: Some(1),
                ..Default::default()
            },
            Retention {
                keep_daily: Some(1),
                ..Default::default()
            },
            Retention {
                keep_weekly: Some(1),
                ..Default::default()
            },
            Retention {
                keep_monthly: Some(1),
                ..Default::default()
            },
        ] {
            assert_eq!(
                kept_times(&HOURS, r, Tz::UTC),
                ["2026-05-01T14:50"],
                "{r:?}"
            );
        }
    }

    #[test]
    fn order_of_the_input_does_not_matter_and_ties_are_stable() {
        let mut all = states(&HOURS);
        let r = Retention {
            keep_hourly: Some(2),
            ..Default::default()
        };
        let a = kept(&all, &r, Tz::UTC);
        all.reverse();
        assert_eq!(kept(&all, &r, Tz::UTC), a);
        // Two states at the same instant: the larger uuid counts as the newer, every time.
        let same = vec![
            (Uuid::from_u128(1), at("2026-05-01T10:00:00Z")),
            (Uuid::from_u128(2), at("2026-05-01T10:00:00Z")),
        ];
        let last = Retention {
            keep_last: Some(1),
            ..Default::default()
        };
        assert_eq!(
            kept(&same, &last, Tz::UTC),
            HashSet::from([Uuid::from_u128(2)])
        );
    }
}
