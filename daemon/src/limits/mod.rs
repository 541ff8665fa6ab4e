//! Limits: rate plans by name, the GCRA rate limiter (one atomic timestamp per limit, lock-free) and credit
//! balances with their refills. What a key may spend, and the arithmetic of spending it; the verify path
//! decides when ([`crate::verify`]).

use std::collections::{BTreeMap, BTreeSet};

use keyward_protocol::{Rate, DEFAULT_PLAN, DEFAULT_PLAN_RATE, PAID_PLAN_RATE};

pub mod credits;
pub mod lease;
pub mod limiter;

/// Rate plans by name, and in fleet mode which of them are fleet-wide (enforced with leases from the
/// engine, [`lease`]) rather than per host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plans {
    rates: BTreeMap<String, Rate>,
    /// Plans whose limit holds for the whole fleet (`[fleet] shared_plans`).
    pub shared: BTreeSet<String>,
}

impl Plans {
    pub fn get(&self, name: &str) -> Option<&Rate> {
        self.rates.get(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.rates.contains_key(name)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.rates.keys()
    }

    /// Defines or redefines plan `name`.
    pub fn insert(&mut self, name: String, rate: Rate) {
        self.rates.insert(name, rate);
    }

    /// Whether keys on plan `name` share its limit across the fleet.
    pub fn is_shared(&self, name: &str) -> bool {
        self.shared.contains(name)
    }
}

impl Extend<(String, Rate)> for Plans {
    fn extend<T: IntoIterator<Item = (String, Rate)>>(&mut self, plans: T) {
        self.rates.extend(plans);
    }
}

impl std::ops::Index<&str> for Plans {
    type Output = Rate;

    fn index(&self, name: &str) -> &Rate {
        &self.rates[name]
    }
}

/// The built-in plans: `free` = 100/min and `paid` = 1000/min, as the reference documents promise.
pub fn default_plans() -> Plans {
    let rates = BTreeMap::from([(DEFAULT_PLAN.to_owned(), DEFAULT_PLAN_RATE), ("paid".to_owned(), PAID_PLAN_RATE)]);
    Plans { rates, shared: BTreeSet::new() }
}
