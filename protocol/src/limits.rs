//! Rate limits, credits and usage: the wire types.
//!
//! Spellings: a rate is `N/s`, `N/min`, `N/h` or `N/d` (`100/min`); a key's rate policy is a plan name, a
//! custom rate, or `none`; a refill is `N/day` or `N/month[@DAY]` (day of month, clamped to short months).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::code::VerifyCode;

/// The window a rate is counted over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Period {
    Second,
    Minute,
    Hour,
    Day,
}

impl Period {
    pub fn seconds(self) -> u64 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
            Period::Day => 86_400,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Period::Second => "s",
            Period::Minute => "min",
            Period::Hour => "h",
            Period::Day => "d",
        }
    }
}

/// `count` requests per `period`, with bursts of up to `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rate {
    pub count: u64,
    pub period: Period,
}

/// A text that is not a rate, plan, refill or limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitSyntaxError(String);

/// The largest count a rate may have (one per microsecond over a day keeps interval arithmetic exact).
pub const MAX_RATE_COUNT: u64 = 1_000_000_000;

impl FromStr for Rate {
    type Err = LimitSyntaxError;
    fn from_str(text: &str) -> Result<Self, LimitSyntaxError> {
        let bad = || LimitSyntaxError(format!("bad rate {text:?}: expected N/s, N/min, N/h or N/d, e.g. 100/min"));
        let (count, period) = text.split_once('/').ok_or_else(bad)?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        let period = match period.trim() {
            "s" | "sec" | "second" => Period::Second,
            "m" | "min" | "minute" => Period::Minute,
            "h" | "hour" => Period::Hour,
            "d" | "day" => Period::Day,
            _ => return Err(bad()),
        };
        let rate = Rate { count, period };
        rate.check()
            .map_err(|_| LimitSyntaxError(format!("bad rate {text:?}: the count must be 1 to {MAX_RATE_COUNT}")))?;
        Ok(rate)
    }
}

impl Rate {
    /// Whether the count is one a limit can hold: 1 to [`MAX_RATE_COUNT`]. A rate read off the wire is
    /// checked with this, as a parsed one is.
    pub fn check(&self) -> Result<(), LimitSyntaxError> {
        if self.count == 0 || self.count > MAX_RATE_COUNT {
            return Err(LimitSyntaxError(format!("bad rate {self}: the count must be 1 to {MAX_RATE_COUNT}")));
        }
        Ok(())
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.period.suffix())
    }
}

/// How a key's main rate limit is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RatePolicy {
    /// A plan from the daemon's configuration (`free` = 100/min and `paid` = 1000/min by default).
    Plan(String),
    /// A rate of the key's own.
    Custom(Rate),
    /// No limit (internal keys).
    Unlimited,
}

/// The plan a key gets when nothing else is said.
pub const DEFAULT_PLAN: &str = "free";
/// The default plan's rate, from the reference documents: 100 requests per minute.
pub const DEFAULT_PLAN_RATE: Rate = Rate { count: 100, period: Period::Minute };
/// The default `paid` plan: 1,000 requests per minute.
pub const PAID_PLAN_RATE: Rate = Rate { count: 1000, period: Period::Minute };

impl Default for RatePolicy {
    fn default() -> Self {
        RatePolicy::Plan(DEFAULT_PLAN.to_owned())
    }
}

impl fmt::Display for RatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RatePolicy::Plan(name) => write!(f, "plan {name}"),
            RatePolicy::Custom(rate) => write!(f, "{rate}"),
            RatePolicy::Unlimited => f.write_str("none"),
        }
    }
}

impl RatePolicy {
    /// Parses a `--rate-limit` value: `none` or a rate.
    pub fn parse_rate_limit(text: &str) -> Result<RatePolicy, LimitSyntaxError> {
        if text == "none" {
            Ok(RatePolicy::Unlimited)
        } else {
            text.parse().map(RatePolicy::Custom)
        }
    }
}

/// When credits are refilled. A refill *sets* the balance to `amount`; it does not add.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refill {
    /// Every day at 00:00 UTC.
    Daily { amount: u64 },
    /// Every month on `day` (1–31, clamped to the month's last day) at 00:00 UTC.
    Monthly { amount: u64, day: u8 },
}

impl FromStr for Refill {
    type Err = LimitSyntaxError;
    fn from_str(text: &str) -> Result<Self, LimitSyntaxError> {
        let bad =
            || LimitSyntaxError(format!("bad refill {text:?}: expected N/day or N/month[@DAY], e.g. 5000/month@1"));
        let (amount, period) = text.split_once('/').ok_or_else(bad)?;
        let amount: u64 = amount.parse().map_err(|_| bad())?;
        match period.split_once('@') {
            None if period == "day" => Ok(Refill::Daily { amount }),
            None if period == "month" => Ok(Refill::Monthly { amount, day: 1 }),
            Some(("month", day)) => {
                let refill = Refill::Monthly { amount, day: day.parse().map_err(|_| bad())? };
                refill.check().map_err(|_| bad())?;
                Ok(refill)
            }
            _ => Err(bad()),
        }
    }
}

impl Refill {
    /// Whether a monthly refill's day is a day of a month (1–31). A refill read off the wire is checked
    /// with this, as a parsed one is.
    pub fn check(&self) -> Result<(), LimitSyntaxError> {
        match self {
            Refill::Monthly { day, .. } if !(1..=31).contains(day) => {
                Err(LimitSyntaxError(format!("bad refill day {day}: a monthly refill's day is 1 to 31")))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Refill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refill::Daily { amount } => write!(f, "{amount}/day"),
            Refill::Monthly { amount, day } => write!(f, "{amount}/month@{day}"),
        }
    }
}

/// Why a plan or limit name is refused; the message states the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(String);

/// The longest name a named limit may have.
pub const LIMIT_NAME_MAX: usize = 32;

/// A plan's name, wherever it is defined (`keywardd --plan`, `[plans]` in the configuration file): a
/// lowercase word of letters, digits and `-`.
pub fn check_plan_name(name: &str) -> Result<(), NameError> {
    let word = !name.is_empty() && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if word {
        Ok(())
    } else {
        Err(NameError(format!("plan name {name:?} must be a lowercase word (letters, digits and -)")))
    }
}

/// A named limit's name: a lowercase letter, then lowercase letters, digits, `-` or `_`, at most
/// [`LIMIT_NAME_MAX`] characters.
pub fn check_limit_name(name: &str) -> Result<(), NameError> {
    let ok = name.len() <= LIMIT_NAME_MAX
        && name.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(NameError(format!("limit name {name:?} must be a lowercase word of at most {LIMIT_NAME_MAX} characters")))
    }
}

/// Parses a `--limit NAME=N/PERIOD` value.
pub fn parse_named_limit(text: &str) -> Result<(String, Rate), LimitSyntaxError> {
    let (name, rate) = text
        .split_once('=')
        .ok_or_else(|| LimitSyntaxError(format!("bad limit {text:?}: expected NAME=N/PERIOD, e.g. exports=10/h")))?;
    Ok((name.to_owned(), rate.parse()?))
}

/// A key's limits as set at creation or by an edit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub rate: RatePolicy,
    /// Extra limits that apply only when a verify names them.
    pub named: BTreeMap<String, Rate>,
    /// A starting credit balance; `None` for a key without credits.
    pub credits: Option<u64>,
    pub refill: Option<Refill>,
}

/// One limit as a verify found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitStatus {
    /// The plan name (e.g. `free`), `custom`, or the named limit's name.
    pub policy: String,
    /// Requests allowed per window.
    pub limit: u64,
    /// Requests still allowed right now (after this one, if it was allowed).
    pub remaining: u64,
    /// When the full limit is available again, Unix milliseconds.
    pub reset_at_ms: i64,
    /// The window, in seconds.
    pub window_seconds: u64,
}

/// Change a key's credit balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreditChange {
    Set(u64),
    Add(u64),
}

/// Verifications of one key in one hour or day, by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBucket {
    /// The bucket's start, Unix seconds.
    pub start: i64,
    pub counts: BTreeMap<VerifyCode, u64>,
}

/// One key's usage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    pub key_id: String,
    /// Over the last 90 days.
    pub totals: BTreeMap<VerifyCode, u64>,
    /// The last 48 hours, oldest first, hours without verifications left out.
    pub hourly: Vec<UsageBucket>,
    /// The last 90 days, oldest first, days without verifications left out.
    pub daily: Vec<UsageBucket>,
}

/// One key's totals in a workspace usage report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsage {
    pub key_id: String,
    pub name: String,
    pub total: u64,
    pub totals: BTreeMap<VerifyCode, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for text in ["100/min", "1000/min", "5/s", "10/h", "7/d"] {
            assert_eq!(text.parse::<Rate>().unwrap().to_string(), text);
        }
        assert!("0/min".parse::<Rate>().is_err());
        assert!("ten/min".parse::<Rate>().is_err());
        assert!("10/week".parse::<Rate>().is_err());
        assert_eq!(RatePolicy::parse_rate_limit("none").unwrap(), RatePolicy::Unlimited);
        assert_eq!("500/day".parse::<Refill>().unwrap(), Refill::Daily { amount: 500 });
        assert_eq!("9/month@31".parse::<Refill>().unwrap(), Refill::Monthly { amount: 9, day: 31 });
        assert_eq!("9/month".parse::<Refill>().unwrap().to_string(), "9/month@1");
        assert!("9/month@32".parse::<Refill>().is_err());
        let (name, rate) = parse_named_limit("exports=10/h").unwrap();
        assert_eq!((name.as_str(), rate.count, rate.period), ("exports", 10, Period::Hour));
    }
}

/// A latency distribution: summary percentiles and cumulative buckets (Prometheus style).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub sum_seconds: f64,
    pub p50_seconds: f64,
    pub p99_seconds: f64,
    pub p999_seconds: f64,
    /// `(upper bound in seconds, observations at or below it)`, increasing; the last bound is +∞.
    pub buckets: Vec<(f64, u64)>,
}

/// The daemon's counters, as `keyward stats` shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub version: String,
    pub uptime_seconds: u64,
    /// Keys by status name (`active`, `inactive`, `expired`, `revoked`, `legacy`, `sunset`).
    pub keys: BTreeMap<String, u64>,
    pub connections_open: u64,
    pub connections_total: u64,
    /// Connections refused for their peer's credentials.
    pub connections_forbidden: u64,
    /// Verifies answered since start, by code.
    pub verifies: BTreeMap<VerifyCode, u64>,
    /// Time from a verify request's decoding to its answer.
    pub verify_latency: LatencySummary,
    /// Verifies of a known key answered from the warm digest cache, and those that needed Argon2.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub argon2_running: u64,
    pub argon2_waiting: u64,
    /// Verifies refused with BUSY because the Argon2 queue was full.
    pub busy_refusals: u64,
    /// Bytes of the data directory's store.
    pub store_bytes: u64,
    /// When counters were last written to the store (Unix seconds).
    pub last_flush_at: Option<i64>,
    /// Fleet mode's figures; `None` for a daemon on its own.
    pub fleet: Option<crate::fleet::FleetFigures>,
    /// The forward-auth endpoint's figures; `None` when `[http]` listens nowhere.
    pub http: Option<HttpFigures>,
}

/// The forward-auth endpoint's counters since start, in `keyward stats` and Prometheus. Its verifies also
/// count in [`StatsReport::verifies`] and the latency, as every verify does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpFigures {
    pub connections_open: u64,
    pub connections_total: u64,
    /// Connections refused for their peer's credentials (Unix sockets only).
    pub connections_forbidden: u64,
    /// Answers by HTTP status (200, 401, 403, 404, 429, 500, 503): a refusal's own status, also when it
    /// was sent as a 401 for nginx (`X-Keyward-Refuse-With`); the 400 and 431 that hyper gives to malformed
    /// requests before the endpoint sees them are not counted.
    pub answers: BTreeMap<u16, u64>,
}
