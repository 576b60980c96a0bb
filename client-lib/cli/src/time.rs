//! Times for people: relative ("in 3 h", "2 d ago") and absolute (UTC,
//! minutes), and the forms a command line takes (a date, or a span from
//! now such as `90d`).

use std::time::{Duration, SystemTime};

use crate::error::{CliError, Result};

/// `at` relative to `now`: "in 3 h", "5 min ago", "now".
pub(crate) fn relative(at: SystemTime, now: SystemTime) -> String {
    match at.duration_since(now) {
        Ok(ahead) => match span(ahead) {
            Some(span) => format!("in {span}"),
            None => "now".to_owned(),
        },
        Err(behind) => match span(behind.duration()) {
            Some(span) => format!("{span} ago"),
            None => "now".to_owned(),
        },
    }
}

/// A span in its largest whole unit, with the next unit while the first is
/// under ten ("2 d 23 h", "5 h 50 min"), rounded down so time left is never
/// overstated; `None` under a minute.
pub(crate) fn span(duration: Duration) -> Option<String> {
    let minutes = duration.as_secs() / 60;
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if big < 10 && small > 0 {
            format!("{big} {big_unit} {small} {small_unit}")
        } else {
            format!("{big} {big_unit}")
        }
    };
    match minutes {
        0 => None,
        1..=59 => Some(format!("{minutes} min")),
        60..=2879 => Some(two(minutes / 60, "h", minutes % 60, "min")),
        _ => Some(two(minutes / 1440, "d", minutes % 1440 / 60, "h")),
    }
}

/// `at` as a UTC date and time to the minute: `2026-12-01 15:44`.
pub(crate) fn absolute(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (year, month, day) = civil(days);
    let minute = (secs % 86_400) / 60;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        minute / 60,
        minute % 60
    )
}

/// RFC 3339 in UTC, for `--json`.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (year, month, day) = civil(days);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A moment given on the command line: `YYYY-MM-DD` (start of that day,
/// UTC) or a span from now: `90d`, `12h`, `30min`.
///
/// # Errors
/// [`CliError::usage`] for anything else.
pub(crate) fn parse_moment(text: &str, now: SystemTime) -> Result<SystemTime> {
    if let Some(span) = parse_span(text) {
        return Ok(now + span);
    }
    let bad = || {
        CliError::usage(format!(
            "{text:?} is not a date (YYYY-MM-DD) or a span (90d, 12h)"
        ))
    };
    let parts: Vec<&str> = text.split('-').collect();
    let [year, month, day] = parts.as_slice() else {
        return Err(bad());
    };
    let (Ok(year), Ok(month), Ok(day)) = (
        year.parse::<i64>(),
        month.parse::<u32>(),
        day.parse::<u32>(),
    ) else {
        return Err(bad());
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).map_err(|_| bad())? * 86_400;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// `90d`, `12h`, `30min` as a duration.
fn parse_span(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3600,
        "min" | "m" => 60,
        _ => return None,
    };
    Some(Duration::from_secs(number.checked_mul(seconds)?))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_a_person_says_them() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_600_000);
        assert_eq!(
            relative(now + Duration::from_secs(3 * 3600 + 5), now),
            "in 3 h"
        );
        assert_eq!(relative(now - Duration::from_secs(300), now), "5 min ago");
        assert_eq!(relative(now + Duration::from_secs(20), now), "now");
        assert_eq!(
            relative(now + Duration::from_secs(5 * 86_400), now),
            "in 5 d"
        );
        assert_eq!(
            relative(now + Duration::from_secs(3 * 86_400 - 60), now),
            "in 2 d 23 h",
            "time left is never rounded up"
        );
        assert_eq!(
            relative(now - Duration::from_secs(5 * 3600 + 50 * 60), now),
            "5 h 50 min ago"
        );
        assert_eq!(
            relative(now + Duration::from_secs(12 * 86_400 + 7 * 3600), now),
            "in 12 d"
        );
        assert_eq!(absolute(now), "2025-12-01 14:40");
        assert_eq!(rfc3339(now), "2025-12-01T14:40:00Z");
    }

    #[test]
    fn moments_are_dates_or_spans() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            parse_moment("90d", now).unwrap(),
            now + Duration::from_secs(90 * 86_400)
        );
        assert_eq!(
            absolute(parse_moment("2027-06-30", now).unwrap()),
            "2027-06-30 00:00"
        );
        assert!(parse_moment("30 juni", now).is_err());
        assert!(parse_moment("2027-13-01", now).is_err());
    }
}
