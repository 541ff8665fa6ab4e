//! Scope parsing and implication: any list of strings. Parsing never panics; what parses grants itself,
//! and `admin` grants it.
#![no_main]

use keyward_protocol::ScopeSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let scopes: Vec<&str> = text.split('\n').collect();
    if let Ok(set) = ScopeSet::parse(&scopes) {
        for scope in set.to_strings() {
            assert!(set.grants(&scope).expect("a canonical scope parses"));
            assert!(ScopeSet::parse(&["admin"]).unwrap().grants(&scope).unwrap());
        }
    }
    for required in &scopes {
        let _ = ScopeSet::parse(&["read:all"]).unwrap().grants(required);
    }
});
