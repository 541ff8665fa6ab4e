//! The words and numbers `keyward` prints in its text and JSON: times (RFC 3339 for JSON, `YYYY-MM-DD
//! HH:MM` UTC for people), waits, durations, byte sizes, counts by verify code, fleet change numbers,
//! plurals, and the daemon's text made safe for a terminal.
//!
//! Every answer file formats through these functions, so a time or a size reads the same in every
//! command. They only turn values into strings and never write anything.

use std::borrow::Cow;
use std::collections::BTreeMap;

use keyward_protocol::VerifyCode;

/// `1 key`, `2 keys`.
pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A wait for people: `250 ms`, `2.5 s`, `4 min 10 s`, `1 h 0 min` (rounded up, so waiting that long is
/// always enough).
pub(super) fn wait_text(ms: u64) -> String {
    let seconds = ms.div_ceil(1000);
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => {
            let tenths = ms.div_ceil(100);
            format!("{}.{} s", tenths / 10, tenths % 10)
        }
        _ if seconds < 3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => {
            let minutes = seconds.div_ceil(60);
            format!("{} h {} min", minutes / 60, minutes % 60)
        }
    }
}

/// `VALID 3, NOT_FOUND 1`, or `-` for none.
pub(super) fn counts_text(counts: &BTreeMap<VerifyCode, u64>) -> String {
    if counts.is_empty() {
        return "-".to_owned();
    }
    counts.iter().map(|(code, n)| format!("{code} {n}")).collect::<Vec<_>>().join(", ")
}

/// Seconds as `42 s`, `5 min 3 s`, `2 h 5 min`, `3 d 4 h`.
pub(super) fn duration_text(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        3600..86_400 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

/// A change of the fleet's, by the engine's number: `#44`.
pub(super) fn change_text(seq: u64) -> String {
    format!("#{seq}")
}

/// Seconds as microseconds: `3.5 µs` below 10 µs, whole microseconds above.
pub(super) fn micros_text(seconds: f64) -> String {
    let micros = seconds * 1e6;
    if micros < 10.0 {
        format!("{micros:.1} µs")
    } else {
        format!("{micros:.0} µs")
    }
}

/// Bytes in binary units with the exact count: `1.2 MiB (1234567 bytes)`.
pub(super) fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return plural(bytes, "byte", "bytes");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {} ({bytes} bytes)", UNITS[unit])
}

/// Unix seconds as RFC 3339 UTC, e.g. `2026-11-23T12:00:00Z` (the bare number if out of range).
pub(super) fn rfc3339(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(at) => at.to_string(),
        Err(_) => seconds.to_string(),
    }
}

/// Unix milliseconds as RFC 3339 UTC with the milliseconds, e.g. `2026-11-23T12:00:00.6Z` (the bare number
/// if out of range).
pub(super) fn rfc3339_millis(millis: i64) -> String {
    match jiff::Timestamp::from_millisecond(millis) {
        Ok(at) => at.to_string(),
        Err(_) => millis.to_string(),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM` in UTC (the bare number if out of range).
pub(super) fn human_time(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(at) => at.strftime("%Y-%m-%d %H:%M").to_string(),
        Err(_) => seconds.to_string(),
    }
}

pub(super) fn expiry_text(expires_at: Option<i64>) -> String {
    expires_at.map_or_else(|| "never".to_owned(), human_time)
}

/// Text from the daemon with control characters escaped, so a crafted name or description cannot send
/// escape sequences to the operator's terminal.
pub(super) fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(text.chars().flat_map(char::escape_default).collect())
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::samples::{audit_entries, render, sample_key};
    use crate::cli::output::{audit::audit, keys::key, Format};
    use crate::fixtures::NOON;

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(rfc3339(NOON), "2026-11-23T12:00:00Z");
        assert_eq!(human_time(NOON), "2026-11-23 12:00");
        assert_eq!(human_time(0), "1970-01-01 00:00");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
        assert_eq!(rfc3339_millis(NOON * 1000 + 600), "2026-11-23T12:00:00.6Z");
        assert_eq!(rfc3339_millis(NOON * 1000), "2026-11-23T12:00:00Z");
    }

    #[test]
    fn waits_read_naturally_and_never_short() {
        let cases = [
            (0, "0 ms"),
            (999, "999 ms"),
            (1000, "1.0 s"),
            (1001, "1.1 s"),
            (1800, "1.8 s"),
            (59_999, "60.0 s"),
            (60_000, "1 min 0 s"),
            (61_001, "1 min 2 s"),
            (3_599_998, "1 h 0 min"),
            (3_600_001, "1 h 1 min"),
        ];
        for (ms, text) in cases {
            assert_eq!(wait_text(ms), text, "{ms} ms");
        }
        assert_eq!((plural(1, "key", "keys"), plural(0, "key", "keys")), ("1 key".into(), "0 keys".into()));
    }

    #[test]
    fn control_characters_are_escaped_in_text() {
        let mut key = sample_key();
        key.name = "evil\u{1b}[2J".into();
        let text = render(|out| self::key(out, Format::Text, &key));
        assert!(!text.contains('\u{1b}'));
        assert!(text.contains("evil\\u{1b}[2J"), "{text}");
        let mut entries = audit_entries();
        entries[1].actor.label = Some("mallory\u{1b}]0;".into());
        entries[1].changes[0].to = Some("x\u{7}".into());
        let text = render(|out| audit(out, Format::Text, &entries));
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text}");
    }
}
