//! Limits: rate plans by name, the GCRA rate limiter (one atomic timestamp per limit, lock-free) and credit
//! balances with their refills. What a key may spend, and the arithmetic of spending it; the verify path
//! decides when ([`crate::verify`]).

use std::collections::BTreeMap;

use keyward_protocol::{Rate, DEFAULT_PLAN, DEFAULT_PLAN_RATE, PAID_PLAN_RATE};

pub mod credits;
pub mod limiter;

/// Rate plans by name.
pub type Plans = BTreeMap<String, Rate>;

/// The built-in plans: `free` = 100/min and `paid` = 1000/min, as the reference documents promise.
pub fn default_plans() -> Plans {
    BTreeMap::from([(DEFAULT_PLAN.to_owned(), DEFAULT_PLAN_RATE), ("paid".to_owned(), PAID_PLAN_RATE)])
}
