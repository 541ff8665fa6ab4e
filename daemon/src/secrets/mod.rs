//! Secrets: Argon2id hashing on its own pool of threads, the keyed digests (warm and lookup) that let a
//! verify skip Argon2, minting ids and secrets from the OS CSPRNG, and the persistent digest keys.
//!
//! Nothing in this folder logs, prints or returns a secret; its types redact themselves in `Debug`.

pub mod hasher;
pub mod keyfile;
pub mod mint;
