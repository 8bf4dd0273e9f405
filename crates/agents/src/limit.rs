//! When a rate or usage limit resets, read from what the runtime said. Neither CLI has a field
//! for it in the result (Claude Code's `rate_limit_event` has `resetsAt` when it is sent); the
//! texts carry it in a few shapes:
//!
//! - `Claude AI usage limit reached|1767225600` — Unix seconds after a bar;
//! - `5-hour limit reached ∙ resets 3pm (Europe/Paris)`, `resets 11:30am` — a time of day, in the
//!   zone named (UTC when none is);
//! - `try again in 2 hours 5 minutes`, `Please retry after 30s`, `resets in 4 days` — a delay;
//! - `resets at 2026-11-28T15:00:00Z` — an RFC 3339 time.
//!
//! No time found: the worker's park is a capped backoff instead.

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use mission_core::Timestamp;
use regex::Regex;
use std::sync::OnceLock;
use std::time::Duration;

/// A reset time as the runtime gave it; [`ResetHint::resolve`] makes it a time.
#[derive(Clone, Debug, PartialEq)]
pub enum ResetHint {
    At(Timestamp),
    After(Duration),
    /// The next time the clock shows this time of day in the zone.
    Clock {
        hour: u32,
        minute: u32,
        zone: chrono_tz::Tz,
    },
}

impl ResetHint {
    /// The reset as a time, for a limit reported at `now`.
    pub fn resolve(&self, now: Timestamp) -> Timestamp {
        match self {
            ResetHint::At(at) => *at,
            ResetHint::After(delay) => now.plus(*delay),
            ResetHint::Clock { hour, minute, zone } => {
                let Some(time) = NaiveTime::from_hms_opt(*hour, *minute, 0) else {
                    return now;
                };
                let local = DateTime::<Utc>::from_timestamp_millis(now.as_millis())
                    .unwrap_or_default()
                    .with_timezone(zone);
                let mut date = local.date_naive();
                for _ in 0..3 {
                    if let Some(at) = zone.from_local_datetime(&date.and_time(time)).earliest() {
                        let at = Timestamp::from_millis(at.timestamp_millis());
                        if at > now {
                            return at;
                        }
                    }
                    date = date.succ_opt().unwrap_or(date);
                }
                now
            }
        }
    }
}

fn patterns() -> &'static [Regex; 4] {
    static PATTERNS: OnceLock<[Regex; 4]> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("a valid pattern");
        [
            re(r"\|(\d{10,13})\b"),
            re(r"(?i)(?:try again|retry|resets?|available again)\s+(?:in|after)\s+((?:\d+(?:\.\d+)?\s*(?:days?|d|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)\b[\s,]*(?:and\s+)?)+)"),
            re(r"(?i)(?:resets?|try again|available again)(?:\s+(?:at|on))?\s+(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}))"),
            re(r"(?i)(?:resets?|try again at)(?:\s+at)?\s+(\d{1,2})(?::(\d{2}))?\s*(am|pm)?(?:\s*\(([A-Za-z_]+(?:/[A-Za-z_+-]+){0,2})\))?"),
        ]
    })
}

fn duration_of(text: &str) -> Option<Duration> {
    static PART: OnceLock<Regex> = OnceLock::new();
    let part = PART.get_or_init(|| {
        Regex::new(
            r"(?i)(\d+(?:\.\d+)?)\s*(days?|d|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)\b",
        )
        .expect("a valid pattern")
    });
    let mut seconds = 0f64;
    for caps in part.captures_iter(text) {
        let n: f64 = caps[1].parse().ok()?;
        let unit = caps[2].to_ascii_lowercase();
        let scale = match unit.chars().next()? {
            'd' => 86_400.0,
            'h' => 3_600.0,
            'm' => 60.0,
            _ => 1.0,
        };
        seconds += n * scale;
    }
    (seconds > 0.0 && seconds < 1e9).then(|| Duration::from_secs_f64(seconds))
}

/// The reset time in a limit message, if it gives one.
pub fn reset_hint(text: &str) -> Option<ResetHint> {
    let [epoch, delay, rfc3339, clock] = patterns();
    if let Some(caps) = epoch.captures(text) {
        let n: i64 = caps[1].parse().ok()?;
        let millis = if caps[1].len() > 10 { n } else { n * 1000 };
        return Some(ResetHint::At(Timestamp::from_millis(millis)));
    }
    if let Some(caps) = delay.captures(text)
        && let Some(d) = duration_of(&caps[1])
    {
        return Some(ResetHint::After(d));
    }
    if let Some(caps) = rfc3339.captures(text) {
        let normal = caps[1].replacen(' ', "T", 1);
        if let Ok(at) = DateTime::parse_from_rfc3339(&normal)
            .or_else(|_| DateTime::parse_from_str(&normal, "%Y-%m-%dT%H:%M%#z"))
        {
            return Some(ResetHint::At(Timestamp::from_millis(at.timestamp_millis())));
        }
    }
    if let Some(caps) = clock.captures(text) {
        let meridiem = caps.get(3).map(|m| m.as_str().to_ascii_lowercase());
        // A bare number ("resets 5") is not a time of day.
        if caps.get(2).is_none() && meridiem.is_none() {
            return None;
        }
        let mut hour: u32 = caps[1].parse().ok()?;
        let minute: u32 = caps.get(2).map_or(Some(0), |m| m.as_str().parse().ok())?;
        match meridiem.as_deref() {
            Some(_) if !(1..=12).contains(&hour) => return None,
            Some("am") => hour %= 12,
            Some(_) => hour = hour % 12 + 12,
            None => {}
        }
        if hour > 23 || minute > 59 {
            return None;
        }
        let zone = match caps.get(4) {
            Some(name) => name.as_str().parse().ok()?,
            None => chrono_tz::Tz::UTC,
        };
        return Some(ResetHint::Clock { hour, minute, zone });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_times_in_limit_messages() {
        let now = Timestamp::parse_rfc3339("2026-11-28T10:20:00Z").unwrap();
        let at = |s: &str| Some(Timestamp::parse_rfc3339(s).unwrap());
        let cases = [
            (
                "Claude AI usage limit reached|1795867200",
                at("2026-11-28T12:00:00Z"),
            ),
            (
                "5-hour limit reached ∙ resets 3pm",
                at("2026-11-28T15:00:00Z"),
            ),
            (
                "You've hit your limit · resets 3pm (Europe/Paris)",
                at("2026-11-28T14:00:00Z"),
            ),
            (
                "limit reached, resets 9am (Europe/Paris)",
                at("2026-11-29T08:00:00Z"),
            ),
            (
                "Usage limit reached. Resets at 11:30am",
                at("2026-11-28T11:30:00Z"),
            ),
            (
                "You've hit your usage limit. Upgrade to Pro or try again in 2 hours 5 minutes.",
                at("2026-11-28T12:25:00Z"),
            ),
            (
                "You've hit your usage limit. Try again in 4 days 1 hour.",
                at("2026-12-02T11:20:00Z"),
            ),
            (
                "Rate limit reached. Please retry after 30s",
                at("2026-11-28T10:20:30Z"),
            ),
            (
                "usage limit; resets at 2026-11-28T18:00:00Z",
                at("2026-11-28T18:00:00Z"),
            ),
            (
                "usage limit; resets at 2026-11-28 18:00+01:00",
                at("2026-11-28T17:00:00Z"),
            ),
            ("API Error: Request rejected (429) · rate_limit_error", None),
            (
                "exceeded retry limit, last status: 429 Too Many Requests",
                None,
            ),
            ("limit reached, resets 5 times", None),
            ("resets 13pm", None),
        ];
        for (text, expected) in cases {
            assert_eq!(reset_hint(text).map(|h| h.resolve(now)), expected, "{text}");
        }
    }
}
