//! Timestamps as milliseconds since the Unix epoch, the one representation stored and compared.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The longest duration a configuration or task file may give: long enough for any schedule,
/// short enough that milliseconds never overflow when added to a time.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);

/// Parses a duration such as `30s`, `10m` or `1d`, within `MAX_DURATION`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?}: {e} (e.g. \"30s\", \"10m\")"))?;
    if duration > MAX_DURATION {
        return Err(format!("duration {text:?} is longer than 10 years"));
    }
    Ok(duration)
}

/// Reads a duration written as text (`"30s"`, `"10m"`), for configuration fields
/// (`#[serde(deserialize_with = "deserialize_duration")]`).
pub fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<std::time::Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// A point in time, milliseconds since 1970-01-01T00:00:00Z.
///
/// Stored as an integer (portable across SQLite and PostgreSQL, cheap to index and compare) and
/// shown as RFC 3339 with millisecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time. Engines get time from an injected clock; this is only for
    /// the edges (the CLI, the system clock implementation).
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }

    /// This time plus `duration`, saturating at the end of the representable range.
    pub fn plus(self, duration: std::time::Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// How long after `earlier` this time is; zero when it is not after it.
    pub fn since(self, earlier: Timestamp) -> std::time::Duration {
        let millis = self.0.saturating_sub(earlier.0).max(0);
        std::time::Duration::from_millis(millis as u64)
    }

    pub fn to_rfc3339(self) -> String {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => format!("@{}ms", self.0),
        }
    }

    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|dt| Timestamp(dt.timestamp_millis()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339() {
        let t = Timestamp::from_millis(1_795_000_000_123);
        assert_eq!(t.to_rfc3339(), "2026-11-18T11:06:40.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(1_000);
        assert_eq!(t.plus(std::time::Duration::from_secs(2)).as_millis(), 3_000);
        assert_eq!(
            Timestamp::from_millis(i64::MAX - 1)
                .plus(std::time::Duration::from_secs(1))
                .as_millis(),
            i64::MAX
        );
        assert_eq!(
            Timestamp::from_millis(3_500).since(t),
            std::time::Duration::from_millis(2_500)
        );
        assert_eq!(
            t.since(Timestamp::from_millis(5_000)),
            std::time::Duration::ZERO
        );
    }
}
