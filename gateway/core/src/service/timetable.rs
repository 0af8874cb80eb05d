//! A schedule's timetable (a cron expression read in an IANA time zone) and its name pattern.
//! Pure functions of their inputs and a given time: no clock is read here.

use std::str::FromStr;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;

use super::validate;
use crate::ServiceError;

pub const MAX_CRON_CHARS: usize = 255;

/// A parsed cron expression and the zone its fields are read in.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: Cron,
    zone: Tz,
}

impl Timetable {
    /// Five fields (minute hour day-of-month month day-of-week), six (seconds first) or seven
    /// (a year last); `L`, `#`, `W`, names and `@daily`-style nicknames as croner reads them.
    /// 400 `invalid_cron` / `invalid_time_zone`; a timetable that never fires is refused.
    pub fn parse(cron: &str, zone: &str, now: DateTime<Utc>) -> Result<Self, ServiceError> {
        let zone = Tz::from_str(zone).map_err(|_| {
            ServiceError::bad_request(
                "invalid_time_zone",
                "time_zone must be an IANA time zone name such as UTC or Europe/Paris",
            )
        })?;
        if cron.chars().count() > MAX_CRON_CHARS || cron.chars().any(char::is_control) {
            return Err(ServiceError::bad_request(
                "invalid_cron",
                format!("cron must be at most {MAX_CRON_CHARS} printable characters"),
            ));
        }
        let parsed = Cron::from_str(cron).map_err(|e| {
            ServiceError::bad_request("invalid_cron", format!("cron expression: {e}"))
        })?;
        let table = Timetable { cron: parsed, zone };
        if table.next_after(now).is_none() {
            return Err(ServiceError::bad_request(
                "invalid_cron",
                "the cron expression never fires",
            ));
        }
        Ok(table)
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The first slot strictly after `t`, or `None` when there is none.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }
}

/// The date fields a name pattern may hold, each written with a fixed width, so every name a
/// pattern makes has the same length.
const FIELDS: [(char, &str); 6] = [
    ('Y', "year, 4 digits"),
    ('m', "month, 01-12"),
    ('d', "day, 01-31"),
    ('H', "hour, 00-23"),
    ('M', "minute, 00-59"),
    ('S', "second, 00-59"),
];

/// Checks a name pattern: only the fields of [`FIELDS`] and `%%`, at least one field (or
/// every run after the first would collide with the first's name), and every name it makes is
/// a valid state name (checked on one rendering: fields have fixed widths and digits only).
pub fn check_name_pattern(pattern: &str) -> Result<(), ServiceError> {
    let invalid = |m: String| ServiceError::bad_request("invalid_name_pattern", m);
    let mut fields = 0;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        match chars.next() {
            Some('%') => {}
            Some(f) if FIELDS.iter().any(|(k, _)| *k == f) => fields += 1,
            other => {
                return Err(invalid(format!(
                    "unknown field %{}; the fields are %Y %m %d %H %M %S and %% for a percent sign",
                    other.map(String::from).unwrap_or_default()
                )))
            }
        }
    }
    if fields == 0 {
        return Err(invalid(
            "the pattern needs at least one date field (%Y %m %d %H %M %S), or every run would make the same name"
                .into(),
        ));
    }
    let sample = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
    validate::state_name(&render_name(pattern, sample, Tz::UTC))
        .map_err(|e| invalid(format!("the names it makes are invalid: {e}")))?;
    Ok(())
}

/// The name of the run for slot `at`, its fields read in `zone`.
pub fn render_name(pattern: &str, at: DateTime<Utc>, zone: Tz) -> String {
    let local = at.with_timezone(&zone);
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('Y') => out.push_str(&format!("{:04}", local.year())),
            Some('m') => out.push_str(&format!("{:02}", local.month())),
            Some('d') => out.push_str(&format!("{:02}", local.day())),
            Some('H') => out.push_str(&format!("{:02}", local.hour())),
            Some('M') => out.push_str(&format!("{:02}", local.minute())),
            Some('S') => out.push_str(&format!("{:02}", local.second())),
            // Refused by check_name_pattern; kept as written should one reach here.
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_slots_in_a_time_zone() {
        let now = at("2026-03-28T12:00:00Z");
        let nightly = Timetable::parse("30 2 * * *", "Europe/Paris", now).unwrap();
        // 02:30 in Paris: 01:30 UTC in winter time, 00:30 UTC in summer time.
        let winter = nightly.next_after(at("2026-01-10T12:00:00Z")).unwrap();
        assert_eq!(winter, at("2026-01-11T01:30:00Z"));
        let summer = nightly.next_after(at("2026-03-30T12:00:00Z")).unwrap();
        assert_eq!(summer, at("2026-03-31T00:30:00Z"));
        let every_second = Timetable::parse("* * * * * *", "UTC", now).unwrap();
        assert_eq!(
            every_second.next_after(now).unwrap(),
            at("2026-03-28T12:00:01Z")
        );
        let hourly = Timetable::parse("@hourly", "UTC", now).unwrap();
        assert_eq!(hourly.next_after(now).unwrap(), at("2026-03-28T13:00:00Z"));
    }

    #[test]
    fn bad_timetables_are_refused() {
        let now = at("2026-03-28T12:00:00Z");
        for (cron, zone, code) in [
            ("61 * * * *", "UTC", "invalid_cron"),
            ("* * *", "UTC", "invalid_cron"),
            ("nonsense", "UTC", "invalid_cron"),
            ("0 0 30 2 *", "UTC", "invalid_cron"),
            ("* * * * *", "Mars/Olympus", "invalid_time_zone"),
            ("* * * * *", "", "invalid_time_zone"),
        ] {
            assert_eq!(
                Timetable::parse(cron, zone, now).unwrap_err().code(),
                code,
                "{cron} {zone}"
            );
        }
    }

    #[test]
    fn far_and_rare_slots_are_found() {
        let now = at("2026-03-28T12:00:00Z");
        for (cron, first) in [
            ("0 0 0 1 1 * 2999", "2999-01-01T00:00:00Z"),
            ("59 59 23 31 12 * 2998", "2998-12-31T23:59:59Z"),
            ("0 0 29 2 *", "2028-02-29T00:00:00Z"),
        ] {
            let t = Timetable::parse(cron, "UTC", now).unwrap();
            assert_eq!(t.next_after(now), Some(at(first)), "{cron}");
        }
    }

    #[test]
    fn names_from_patterns() {
        let t = at("2026-07-04T03:05:09Z");
        assert_eq!(
            render_name("nightly-%Y-%m-%d-%H%M", t, Tz::UTC),
            "nightly-2026-07-04-0305"
        );
        assert_eq!(
            render_name("%Y%m%d %H:%M:%S 100%%", t, Tz::UTC),
            "20260704 03:05:09 100%"
        );
        // Fields are read in the schedule's zone.
        assert_eq!(render_name("%d %H", t, Tz::America__New_York), "03 23");
        assert!(check_name_pattern("nightly-%Y-%m-%d-%H%M").is_ok());
        for bad in [
            "nightly",
            "100%%",
            "%Q-%Y",
            "x%",
            " %Y",
            "%Y\u{200B}",
            &format!("{}%Y", "x".repeat(252)),
        ] {
            assert_eq!(
                check_name_pattern(bad).unwrap_err().code(),
                "invalid_name_pattern",
                "{bad:?}"
            );
        }
        assert!(check_name_pattern(&format!("{}%Y", "x".repeat(251))).is_ok());
    }
}
