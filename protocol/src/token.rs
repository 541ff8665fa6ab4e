//! The API token format.
//!
//! ```text
//! kw_live_7Hq2mZ0aB9xY_4fP0...(32 secret chars)...Zq9T1c
//! \_/\__/ \__________/ \______________________/\____/
//!  |   |       |                  |               checksum: CRC32 (IEEE) of every character before it,
//!  |   |       |                  |               6 base62 digits, most significant first, zero-padded
//!  |   |       |                  secret: 32 base62 characters from the OS CSPRNG (190 bits)
//!  |   |       key id: 12 base62 characters, public, shown in listings, finds the record
//!  |   environment: `live` or `test`
//!  product: `kw`
//! ```
//!
//! Every character is `[0-9A-Za-z_]`: safe in an HTTP header, and a double click selects the whole token.
//! A token is exactly [`TOKEN_LEN`] characters. The checksum lets a verifier refuse a mistyped or truncated
//! token without any lookup: a single changed character always changes the CRC32.
//!
//! Parsing never allocates and never reveals the secret: [`TokenError`] names what is wrong, not what was
//! given.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The product part of every token.
pub const PRODUCT: &str = "kw";
/// Characters in a key id.
pub const KEY_ID_LEN: usize = 12;
/// Characters in a secret.
pub const SECRET_LEN: usize = 32;
/// Characters in the checksum.
pub const CHECKSUM_LEN: usize = 6;
/// Characters in a whole token: `kw_` + 4-letter environment + `_` + id + `_` + secret + checksum.
pub const TOKEN_LEN: usize = PRODUCT.len() + 1 + 4 + 1 + KEY_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;
/// Characters a listing shows from the start of a token.
pub const PREFIX_LEN: usize = 8;
/// Characters a masked preview shows from the end of a token.
pub const TAIL_LEN: usize = 4;

/// The base62 alphabet, in digit order.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The environment a key belongs to; it is the second part of the token so that a test key pasted into a
/// production config is recognisable at a glance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Environment {
    #[default]
    Live,
    Test,
}

impl Environment {
    /// The token spelling: `live` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }
}

impl std::str::FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Environment::Live),
            "test" => Ok(Environment::Test),
            other => Err(format!("unknown environment {other:?}: expected live or test")),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key id: 12 base62 characters. Not a secret; shown in listings and audit entries.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// Checks the shape of a key id typed by an operator.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        if s.len() == KEY_ID_LEN && s.bytes().all(is_base62) {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(TokenError::BadKeyId)
        }
    }

    /// Builds a key id from [`KEY_ID_LEN`] base62 characters (the caller's random draw).
    pub fn from_base62(chars: [u8; KEY_ID_LEN]) -> Self {
        assert!(chars.iter().all(|&c| is_base62(c)), "key id characters must be base62");
        KeyId(String::from_utf8(chars.to_vec()).expect("base62 is ASCII"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl std::borrow::Borrow<str> for KeyId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// How long an imported token (one another system issued, of any format) may be, in characters.
pub const IMPORTED_LEN: std::ops::RangeInclusive<usize> = 16..=512;

/// Why a string cannot be imported as a token; the message states the rule, never the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("an imported token must be {min} to {max} characters (got {0})", min = IMPORTED_LEN.start(), max = IMPORTED_LEN.end())]
    Length(usize),
    #[error("an imported token must be printable ASCII without spaces")]
    NotPrintable,
}

/// Whether `text` may be imported as a token: [`IMPORTED_LEN`] printable ASCII characters, no spaces. Says
/// nothing about the token's content.
pub fn check_importable(text: &str) -> Result<(), ImportError> {
    if !IMPORTED_LEN.contains(&text.len()) {
        return Err(ImportError::Length(text.len()));
    }
    if !text.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(ImportError::NotPrintable);
    }
    Ok(())
}

/// Why a string is not a well-formed token. Deliberately says nothing about the string's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the key is empty")]
    Empty,
    #[error("the key has the wrong length: use the full key, not just its id")]
    WrongLength,
    #[error("the key does not start with a keyward prefix (kw_live_ or kw_test_)")]
    BadPrefix,
    #[error("the key contains characters a keyward key never has")]
    BadCharacter,
    #[error("the key's checksum does not match: it was mistyped or truncated")]
    BadChecksum,
    #[error("a key id is 12 letters and digits")]
    BadKeyId,
}

/// A well-formed token, borrowed from the string it was parsed from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    text: &'a str,
    env: Environment,
}

impl<'a> Token<'a> {
    /// Checks format and checksum. Runs in time linear in the input and touches nothing else.
    pub fn parse(text: &'a str) -> Result<Self, TokenError> {
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        if text.len() != TOKEN_LEN {
            return Err(TokenError::WrongLength);
        }
        let bytes = text.as_bytes();
        let env = match &bytes[..8] {
            b"kw_live_" => Environment::Live,
            b"kw_test_" => Environment::Test,
            _ => return Err(TokenError::BadPrefix),
        };
        let id_end = 8 + KEY_ID_LEN;
        if bytes[id_end] != b'_' {
            return Err(TokenError::BadCharacter);
        }
        let id_ok = bytes[8..id_end].iter().all(|&c| is_base62(c));
        if !id_ok || !bytes[id_end + 1..].iter().all(|&c| is_base62(c)) {
            return Err(TokenError::BadCharacter);
        }
        let (body, checksum) = bytes.split_at(TOKEN_LEN - CHECKSUM_LEN);
        if encode_checksum(crc32fast::hash(body)) != *checksum {
            return Err(TokenError::BadChecksum);
        }
        Ok(Token { text, env })
    }

    /// Assembles a token from its parts, computing the checksum.
    pub fn assemble(env: Environment, id: &KeyId, secret: &[u8; SECRET_LEN]) -> crate::secret::Secret {
        assert!(secret.iter().all(|&c| is_base62(c)), "secret characters must be base62");
        let mut text = String::with_capacity(TOKEN_LEN);
        text.push_str(PRODUCT);
        text.push('_');
        text.push_str(env.as_str());
        text.push('_');
        text.push_str(id.as_str());
        text.push('_');
        text.push_str(std::str::from_utf8(secret).expect("base62 is ASCII"));
        let checksum = encode_checksum(crc32fast::hash(text.as_bytes()));
        text.push_str(std::str::from_utf8(&checksum).expect("base62 is ASCII"));
        crate::secret::Secret::new(text)
    }

    pub fn env(&self) -> Environment {
        self.env
    }

    /// The public key id.
    pub fn key_id(&self) -> &'a str {
        &self.text[8..8 + KEY_ID_LEN]
    }

    /// The secret part (without the checksum).
    pub fn secret(&self) -> &'a [u8] {
        let start = 8 + KEY_ID_LEN + 1;
        &self.text.as_bytes()[start..start + SECRET_LEN]
    }

    /// The first [`PREFIX_LEN`] characters, shown in listings.
    pub fn prefix(&self) -> &'a str {
        &self.text[..PREFIX_LEN]
    }

    /// The last [`TAIL_LEN`] characters, shown in masked previews.
    pub fn tail(&self) -> &'a str {
        &self.text[TOKEN_LEN - TAIL_LEN..]
    }
}

impl fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}_{}_[redacted])", self.env.as_str(), self.key_id())
    }
}

/// A masked preview: the first [`PREFIX_LEN`] characters and the last [`TAIL_LEN`], the rest elided.
pub fn masked(prefix: &str, tail: &str) -> String {
    format!("{prefix}****{tail}")
}

/// Whether `c` is a base62 digit.
pub fn is_base62(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn encode_checksum(mut crc: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> crate::secret::Secret {
        let id = KeyId::parse("AbCdEf012345").unwrap();
        Token::assemble(Environment::Live, &id, b"0123456789abcdefghijABCDEFGHIJxy")
    }

    #[test]
    fn assembled_token_parses_back_into_its_parts() {
        let token = sample();
        assert_eq!(token.expose().len(), TOKEN_LEN);
        let parsed = Token::parse(token.expose()).unwrap();
        assert_eq!(parsed.env(), Environment::Live);
        assert_eq!(parsed.key_id(), "AbCdEf012345");
        assert_eq!(parsed.secret(), b"0123456789abcdefghijABCDEFGHIJxy");
        assert_eq!(parsed.prefix(), "kw_live_");
        assert!(token.expose().starts_with("kw_live_AbCdEf012345_0123"));
    }

    #[test]
    fn every_single_character_change_breaks_the_checksum_or_shape() {
        let token = sample();
        let text = token.expose();
        for i in 0..text.len() {
            for replacement in [b'0', b'Z', b'z', b'_', b'-'] {
                let mut bytes = text.as_bytes().to_vec();
                if bytes[i] == replacement {
                    continue;
                }
                bytes[i] = replacement;
                let changed = String::from_utf8(bytes).unwrap();
                assert!(Token::parse(&changed).is_err(), "accepted a change at {i}");
            }
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let token = sample();
        let text = token.expose();
        assert_eq!(Token::parse("").unwrap_err(), TokenError::Empty);
        assert_eq!(Token::parse(&text[..TOKEN_LEN - 1]).unwrap_err(), TokenError::WrongLength);
        assert_eq!(Token::parse("AbCdEf012345").unwrap_err(), TokenError::WrongLength);
        let other_env = text.replacen("kw_live_", "kw_prod_", 1);
        assert_eq!(Token::parse(&other_env).unwrap_err(), TokenError::BadPrefix);
        let mut bad_sum = text.to_owned();
        let last = if bad_sum.ends_with('0') { "1" } else { "0" };
        bad_sum.replace_range(TOKEN_LEN - 1.., last);
        assert_eq!(Token::parse(&bad_sum).unwrap_err(), TokenError::BadChecksum);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let token = sample();
        let parsed = Token::parse(token.expose()).unwrap();
        let shown = format!("{parsed:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("AbCdEf012345"));
    }

    #[test]
    fn checksum_is_fixed_width_base62() {
        assert_eq!(&encode_checksum(0), b"000000");
        assert_eq!(&encode_checksum(61), b"00000z");
        assert_eq!(&encode_checksum(u32::MAX), b"4gfFC3");
    }

    #[test]
    fn key_ids_are_checked() {
        assert!(KeyId::parse("AbCdEf012345").is_ok());
        assert_eq!(KeyId::parse("short").unwrap_err(), TokenError::BadKeyId);
        assert_eq!(KeyId::parse("AbCdEf01234_").unwrap_err(), TokenError::BadKeyId);
    }
}
