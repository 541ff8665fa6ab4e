//! Minting new key ids and secrets, straight from the operating system's CSPRNG (`getrandom`).
//!
//! Nothing here is seeded, cached or derived: every byte of an id or secret is a fresh draw, mapped to
//! base62 by rejection sampling so every character is uniformly likely (a plain `% 62` would favour the
//! first characters).

use keyward_protocol::token::{BASE62, KEY_ID_LEN, SECRET_LEN};
use keyward_protocol::KeyId;
use rand::rngs::OsRng;
use rand::TryRngCore;
use zeroize::Zeroizing;

/// A new random key id. The caller checks it is not taken.
pub fn key_id() -> KeyId {
    let mut chars = [0u8; KEY_ID_LEN];
    fill_base62(&mut chars);
    KeyId::from_base62(chars)
}

/// A new random secret of [`SECRET_LEN`] base62 characters (190 bits), wiped when dropped.
pub fn secret() -> Zeroizing<[u8; SECRET_LEN]> {
    let mut chars = Zeroizing::new([0u8; SECRET_LEN]);
    fill_base62(chars.as_mut());
    chars
}

/// 32 random bytes, e.g. a per-process keyed-digest key.
pub fn key_material() -> Zeroizing<[u8; 32]> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    os_fill(bytes.as_mut());
    bytes
}

/// A new random id for a fleet change (so a commit whose answer was lost can be looked up).
pub fn change_id() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    os_fill(&mut bytes);
    bytes
}

fn fill_base62(out: &mut [u8]) {
    // 248 = 4 * 62: bytes at or above it are discarded so that `byte % 62` is uniform.
    const ACCEPT_BELOW: u8 = 248;
    let mut pool = Zeroizing::new([0u8; 64]);
    let mut filled = 0;
    while filled < out.len() {
        os_fill(pool.as_mut());
        for &byte in pool.iter().filter(|&&b| b < ACCEPT_BELOW) {
            if filled == out.len() {
                break;
            }
            out[filled] = BASE62[usize::from(byte % 62)];
            filled += 1;
        }
    }
}

fn os_fill(buf: &mut [u8]) {
    // A machine whose kernel cannot hand out random bytes cannot mint keys safely: stop rather than
    // fall back to anything weaker.
    OsRng.try_fill_bytes(buf).expect("the operating system's random number generator failed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_protocol::token::is_base62;

    #[test]
    fn ids_and_secrets_are_base62_and_distinct() {
        let a = secret();
        let b = secret();
        assert!(a.iter().all(|&c| is_base62(c)));
        assert_ne!(*a, *b);
        assert_ne!(key_id(), key_id());
    }

    #[test]
    fn characters_are_roughly_uniform() {
        let mut counts = [0u32; 62];
        for _ in 0..2000 {
            for &c in secret().iter() {
                counts[BASE62.iter().position(|&d| d == c).unwrap()] += 1;
            }
        }
        // 64,000 draws over 62 symbols: about 1032 each; a biased mapping would skew the first few.
        assert!(counts.iter().all(|&n| (800..1300).contains(&n)), "{counts:?}");
    }
}
