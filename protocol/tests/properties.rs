//! Property tests of the contract's pure parts: tokens and scopes.

use keyward_protocol::token::{Token, KEY_ID_LEN, SECRET_LEN};
use keyward_protocol::{Environment, KeyId, ScopeSet};
use proptest::prelude::*;

fn base62(len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::sample::select(keyward_protocol::token::BASE62.to_vec()), len)
}

fn scope() -> impl Strategy<Value = String> {
    let resource = prop_oneof![Just("all".to_owned()), "[a-z][a-z0-9_-]{0,6}"];
    prop_oneof![
        Just("admin".to_owned()),
        resource.clone().prop_map(|r| format!("read:{r}")),
        resource.prop_map(|r| format!("write:{r}")),
    ]
}

proptest! {
    #[test]
    fn every_assembled_token_parses_back(id in base62(KEY_ID_LEN), secret in base62(SECRET_LEN), test in any::<bool>()) {
        let env = if test { Environment::Test } else { Environment::Live };
        let key_id = KeyId::from_base62(id.clone().try_into().unwrap());
        let token = Token::assemble(env, &key_id, &secret.clone().try_into().unwrap());
        let parsed = Token::parse(token.expose()).unwrap();
        prop_assert_eq!(parsed.env(), env);
        prop_assert_eq!(parsed.key_id().as_bytes(), &id[..]);
        prop_assert_eq!(parsed.secret(), &secret[..]);
    }

    #[test]
    fn any_single_substitution_is_refused(id in base62(KEY_ID_LEN), secret in base62(SECRET_LEN), at in 0usize..59, with in any::<u8>()) {
        let token = Token::assemble(Environment::Live, &KeyId::from_base62(id.try_into().unwrap()), &secret.try_into().unwrap());
        let mut bytes = token.expose().as_bytes().to_vec();
        prop_assume!(bytes[at] != with);
        bytes[at] = with;
        if let Ok(text) = String::from_utf8(bytes) {
            prop_assert!(Token::parse(&text).is_err());
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_parser(text in ".{0,80}") {
        let _ = Token::parse(&text);
        let _ = KeyId::parse(&text);
        let _ = ScopeSet::parse(&[text.as_str()]);
    }

    #[test]
    fn every_scope_grants_itself_and_admin_grants_everything(required in scope()) {
        prop_assert!(ScopeSet::parse(&[required.as_str()]).unwrap().grants(&required).unwrap());
        prop_assert!(ScopeSet::parse(&["admin"]).unwrap().grants(&required).unwrap());
    }

    #[test]
    fn write_implies_read_and_all_implies_each(resource in "[a-z][a-z0-9_-]{0,6}") {
        let read = format!("read:{resource}");
        let write = format!("write:{resource}");
        prop_assert!(ScopeSet::parse(&[write.as_str()]).unwrap().grants(&read).unwrap());
        prop_assert!(!ScopeSet::parse(&[read.as_str()]).unwrap().grants(&write).unwrap());
        prop_assert!(ScopeSet::parse(&["write:all"]).unwrap().grants(&write).unwrap());
        prop_assert!(ScopeSet::parse(&["read:all"]).unwrap().grants(&read).unwrap());
    }

    #[test]
    fn implication_is_transitive(a in scope(), b in scope(), c in scope()) {
        let grants = |held: &str, required: &str| ScopeSet::parse(&[held]).unwrap().grants(required).unwrap();
        if grants(&a, &b) && grants(&b, &c) {
            prop_assert!(grants(&a, &c), "{} grants {} grants {}", a, b, c);
        }
    }

    #[test]
    fn a_set_grants_exactly_what_one_of_its_scopes_grants(held in proptest::collection::vec(scope(), 1..4), required in scope()) {
        let set = ScopeSet::parse(&held).unwrap();
        let any = held.iter().any(|h| ScopeSet::parse(&[h.as_str()]).unwrap().grants(&required).unwrap());
        prop_assert_eq!(set.grants(&required).unwrap(), any);
    }
}
