//! Expiry presets: how long a new key lives.
//!
//! Accepted spellings: `never`, `15d`, `25d`, `30d`, `45d`, `90d`, `6m`, `1y`, or an RFC 3339 time
//! (`2027-01-31T00:00:00Z`). The daemon resolves a relative preset against its own clock when it creates
//! the key; months and years are calendar months in UTC, clamped to the end of shorter months.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The default expiry of a new key: the reference documents advise a 90-day rotation.
pub const DEFAULT_EXPIRY: ExpirySpec = ExpirySpec::Days(90);

/// The relative presets, in the order help texts list them.
pub const PRESETS: &[&str] = &["never", "15d", "25d", "30d", "45d", "90d", "6m", "1y"];

/// When a key should expire, as the caller said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpirySpec {
    Never,
    Days(u32),
    Months(u32),
    /// An absolute time, Unix seconds.
    At(i64),
}

impl Default for ExpirySpec {
    fn default() -> Self {
        DEFAULT_EXPIRY
    }
}

/// The expiry text is neither a preset nor an RFC 3339 time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown expiry {0:?}: use never, 15d, 25d, 30d, 45d, 90d, 6m, 1y or an RFC 3339 time such as 2027-01-31T00:00:00Z"
)]
pub struct ExpiryError(String);

impl FromStr for ExpirySpec {
    type Err = ExpiryError;
    fn from_str(text: &str) -> Result<Self, ExpiryError> {
        let spec = match text {
            "never" => ExpirySpec::Never,
            "15d" => ExpirySpec::Days(15),
            "25d" => ExpirySpec::Days(25),
            "30d" => ExpirySpec::Days(30),
            "45d" => ExpirySpec::Days(45),
            "90d" => ExpirySpec::Days(90),
            "6m" => ExpirySpec::Months(6),
            "1y" => ExpirySpec::Months(12),
            other => {
                let at: jiff::Timestamp = other.parse().map_err(|_| ExpiryError(other.to_owned()))?;
                ExpirySpec::At(at.as_second())
            }
        };
        Ok(spec)
    }
}

impl ExpirySpec {
    /// The expiry time in Unix seconds for a key created at `now` (Unix seconds), or `None` for never.
    pub fn resolve(self, now: i64) -> Option<i64> {
        match self {
            ExpirySpec::Never => None,
            ExpirySpec::Days(days) => Some(now.saturating_add(i64::from(days) * 86_400)),
            ExpirySpec::Months(months) => Some(add_months(now, months)),
            ExpirySpec::At(at) => Some(at),
        }
    }
}

fn add_months(now: i64, months: u32) -> i64 {
    let start = jiff::Timestamp::from_second(now).unwrap_or(jiff::Timestamp::MAX);
    let span = jiff::Span::new().months(i64::from(months));
    start.to_zoned(jiff::tz::TimeZone::UTC).checked_add(span).map(|z| z.timestamp().as_second()).unwrap_or(i64::MAX)
}

impl fmt::Display for ExpirySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpirySpec::Never => f.write_str("never"),
            ExpirySpec::Days(days) => write!(f, "{days}d"),
            ExpirySpec::Months(12) => f.write_str("1y"),
            ExpirySpec::Months(months) => write!(f, "{months}m"),
            ExpirySpec::At(at) => match jiff::Timestamp::from_second(*at) {
                Ok(ts) => write!(f, "{ts}"),
                Err(_) => write!(f, "@{at}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_times_parse() {
        for preset in PRESETS {
            let spec: ExpirySpec = preset.parse().unwrap();
            assert_eq!(spec.to_string(), *preset);
        }
        let at: ExpirySpec = "2027-01-31T00:00:00Z".parse().unwrap();
        assert_eq!(at, ExpirySpec::At(1_801_353_600));
        assert!("7d".parse::<ExpirySpec>().is_err());
        assert!("tomorrow".parse::<ExpirySpec>().is_err());
    }

    #[test]
    fn relative_presets_resolve_against_now() {
        let jan_31: i64 = "2027-01-31T12:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
        assert_eq!(ExpirySpec::Never.resolve(jan_31), None);
        assert_eq!(ExpirySpec::Days(15).resolve(jan_31), Some(jan_31 + 15 * 86_400));
        let in_one_month = ExpirySpec::Months(1).resolve(jan_31).unwrap();
        let expected: i64 = "2027-02-28T12:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
        assert_eq!(in_one_month, expected, "clamped to the end of February");
    }
}
