//! Token and key id parsing: any text. A token that parses must keep its parts, and reassembling it must
//! give the very same text (so the checksum really covers everything).
#![no_main]

use keyward_protocol::token::Token;
use keyward_protocol::KeyId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = KeyId::parse(text);
    if let Ok(token) = Token::parse(text) {
        let id = KeyId::parse(token.key_id()).expect("a parsed token's id is a key id");
        let secret: [u8; 32] = token.secret().try_into().expect("32 secret characters");
        assert_eq!(Token::assemble(token.env(), &id, &secret).expose(), text);
    }
});
