//! Scopes: what a key may do, and which scope implies which.
//!
//! A scope is `admin`, `read:<resource>` or `write:<resource>`, where `<resource>` is a product name
//! (`tables`, `workflows`, `forms`, `agents`, `emails`, or any lowercase word of up to 32 characters made
//! of `a-z`, `0-9`, `-`, `_`, starting with a letter) or `all`.
//!
//! Implication: `admin` grants everything; `write:X` grants `read:X`; `write:all` grants `write:X` and
//! `read:X` for every X; `read:all` grants `read:X` for every X. Nothing but `admin` grants `admin`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The products the reference documents name. Any other lowercase word is accepted too.
pub const KNOWN_RESOURCES: &[&str] = &["tables", "workflows", "forms", "agents", "emails"];

const MAX_RESOURCE_LEN: usize = 32;

/// How much a scope allows, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Access {
    Read,
    Write,
    Admin,
}

/// Why a string is not a scope. Scope strings are not secret, so the error quotes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("empty scope")]
    Empty,
    #[error("unknown scope {0:?}: expected admin, read:<resource> or write:<resource> (resource: all or a lowercase word such as tables)")]
    Unknown(String),
    #[error("bad resource in scope {0:?}: a resource is `all` or a lowercase word of at most 32 characters (a-z, 0-9, -, _)")]
    BadResource(String),
}

/// One parsed scope.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    access: Access,
    /// `None` means every resource (`all`, or `admin`).
    resource: Option<Box<str>>,
}

/// A borrowed view of a scope, so checking a required scope on the verify path allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ScopeRef<'a> {
    access: Access,
    resource: Option<&'a str>,
}

impl<'a> ScopeRef<'a> {
    fn parse(text: &'a str) -> Result<Self, ScopeError> {
        if text.is_empty() {
            return Err(ScopeError::Empty);
        }
        if text == "admin" {
            return Ok(ScopeRef { access: Access::Admin, resource: None });
        }
        let (access, resource) = match text.split_once(':') {
            Some(("read", resource)) => (Access::Read, resource),
            Some(("write", resource)) => (Access::Write, resource),
            _ => return Err(ScopeError::Unknown(text.to_owned())),
        };
        if resource == "all" {
            return Ok(ScopeRef { access, resource: None });
        }
        if !is_resource_word(resource) {
            return Err(ScopeError::BadResource(text.to_owned()));
        }
        Ok(ScopeRef { access, resource: Some(resource) })
    }

    fn grants(self, required: ScopeRef<'_>) -> bool {
        if self.access == Access::Admin {
            return true;
        }
        required.access != Access::Admin
            && self.access >= required.access
            && (self.resource.is_none() || self.resource == required.resource)
    }
}

fn is_resource_word(word: &str) -> bool {
    let mut bytes = word.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && word.len() <= MAX_RESOURCE_LEN
        && bytes.all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'))
}

impl Scope {
    fn as_ref(&self) -> ScopeRef<'_> {
        ScopeRef { access: self.access, resource: self.resource.as_deref() }
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// The resource, or `None` for `all` and `admin`.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// Whether holding `self` allows what `required` asks for.
    pub fn grants(&self, required: &Scope) -> bool {
        self.as_ref().grants(required.as_ref())
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(text: &str) -> Result<Self, ScopeError> {
        let parsed = ScopeRef::parse(text)?;
        Ok(Scope { access: parsed.access, resource: parsed.resource.map(Box::from) })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource = self.resource.as_deref().unwrap_or("all");
        match self.access {
            Access::Admin => f.write_str("admin"),
            Access::Read => write!(f, "read:{resource}"),
            Access::Write => write!(f, "write:{resource}"),
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({self})")
    }
}

/// The scopes a key holds: sorted, without duplicates, never empty once validated by the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// Parses every string; the first invalid one is the error.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Self, ScopeError> {
        let mut scopes = texts.iter().map(|t| t.as_ref().parse()).collect::<Result<Vec<Scope>, _>>()?;
        scopes.sort();
        scopes.dedup();
        Ok(ScopeSet(scopes))
    }

    /// Whether any held scope grants `required` (a scope string). Allocates nothing.
    pub fn grants(&self, required: &str) -> Result<bool, ScopeError> {
        let required = ScopeRef::parse(required)?;
        Ok(self.0.iter().any(|held| held.as_ref().grants(required)))
    }

    pub fn contains_admin(&self) -> bool {
        self.0.iter().any(|s| s.access == Access::Admin)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// The canonical strings, in order.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(Scope::to_string).collect()
    }
}

/// Checks one scope string, for callers that only need to validate.
pub fn validate(text: &str) -> Result<(), ScopeError> {
    ScopeRef::parse(text).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(texts: &[&str]) -> ScopeSet {
        ScopeSet::parse(texts).unwrap()
    }

    #[test]
    fn implication_table() {
        // (held, required, granted)
        let table = [
            ("admin", "admin", true),
            ("admin", "write:all", true),
            ("admin", "read:tables", true),
            ("write:all", "write:tables", true),
            ("write:all", "read:forms", true),
            ("write:all", "read:all", true),
            ("write:all", "admin", false),
            ("read:all", "read:agents", true),
            ("read:all", "write:agents", false),
            ("read:all", "write:all", false),
            ("write:tables", "read:tables", true),
            ("write:tables", "write:tables", true),
            ("write:tables", "read:workflows", false),
            ("write:tables", "write:all", false),
            ("write:tables", "read:all", false),
            ("read:tables", "read:tables", true),
            ("read:tables", "write:tables", false),
            ("read:tables", "read:all", false),
        ];
        for (held, required, granted) in table {
            assert_eq!(set(&[held]).grants(required).unwrap(), granted, "{held} grants {required}");
        }
    }

    #[test]
    fn parsing_canonicalises_and_refuses_nonsense() {
        let scopes = set(&["write:tables", "read:all", "write:tables", "admin"]);
        assert_eq!(scopes.to_strings(), ["read:all", "write:tables", "admin"]);
        for bad in ["", "root", "read", "read:", "read:Tables", "delete:tables", "read:1x", "write:a b"] {
            assert!(bad.parse::<Scope>().is_err(), "accepted {bad:?}");
        }
        assert!("read:my-product_2".parse::<Scope>().is_ok());
        let long = format!("read:{}", "a".repeat(33));
        assert!(long.parse::<Scope>().is_err());
        assert!(matches!(set(&["admin"]).grants("nope"), Err(ScopeError::Unknown(_))));
    }
}
