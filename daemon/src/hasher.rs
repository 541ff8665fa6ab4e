//! Secret hashing: Argon2id for what is stored, a keyed digest for what is cached in memory.
//!
//! Argon2id is deliberately slow (~15 ms at the default cost), so it runs on the blocking pool, never on an
//! async worker, behind a semaphore sized to the number of cores: a flood of cold or wrong secrets can
//! occupy those cores but cannot stall the warm verify path or queue without bound ([`DaemonError::Busy`]).
//!
//! Once a secret has passed Argon2 the hot index keeps its HMAC-SHA256 under a per-process random key, and
//! later verifies compare digests in constant time. The digest key lives only in this process's memory, so
//! a digest is useless to anyone who reads it from anywhere else.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::error::DaemonError;
use crate::mint;

/// The two persistent HMAC keys.
pub struct DigestKeys {
    /// Keys the warm digests of verified secrets.
    pub warm: Zeroizing<[u8; 32]>,
    /// Keys the lookup digests of imported tokens.
    pub lookup: Zeroizing<[u8; 32]>,
}

impl DigestKeys {
    /// Fresh random keys, for tests and tools that persist nothing.
    pub fn ephemeral() -> DigestKeys {
        DigestKeys { warm: mint::key_material(), lookup: mint::key_material() }
    }
}

/// A keyed digest of a secret, as cached in the hot index.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest([u8; 32]);

impl Digest {
    /// A digest read back from the store.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The digest's bytes, for the store.
    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// Constant-time equality.
    pub fn matches(&self, other: &Digest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest([redacted])")
    }
}

/// Argon2id cost parameters for new hashes. Verification reads the parameters stored in each hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashCost {
    /// The OWASP-recommended Argon2id setting (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        HashCost { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

/// Hashes and checks secrets; cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue_limit: usize,
    workers: usize,
    /// HMAC-SHA256 states already keyed with the warm and lookup keys: cloning one skips re-deriving the
    /// key pads (two SHA-256 blocks) on every verify. They live as long as the process, like the keys.
    warm_mac: Hmac<Sha256>,
    lookup_mac: Hmac<Sha256>,
}

impl Hasher {
    /// `workers` Argon2 computations run at once; at most `queue_limit` more may wait for a worker.
    /// `keys` are the persistent keys of the lookup and warm digests ([`crate::keyfile`]).
    pub fn new(cost: HashCost, workers: usize, queue_limit: usize, keys: DigestKeys) -> Result<Self, String> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
        Ok(Hasher {
            inner: Arc::new(Inner {
                argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
                permits: Arc::new(Semaphore::new(workers.max(1))),
                waiting: AtomicUsize::new(0),
                queue_limit,
                workers: workers.max(1),
                warm_mac: keyed(&keys.warm),
                lookup_mac: keyed(&keys.lookup),
            }),
        })
    }

    /// Argon2 computations running now, and waiting for a worker.
    pub fn load(&self) -> (u64, u64) {
        let inner = &self.inner;
        let running = inner.workers.saturating_sub(inner.permits.available_permits());
        (running as u64, inner.waiting.load(Ordering::Relaxed) as u64)
    }

    /// The keyed digest of `secret` under this process's key.
    pub fn digest(&self, secret: &[u8]) -> Digest {
        Digest(mac(&self.inner.warm_mac, secret))
    }

    /// Identifies the warm digest key, so digests persisted under another key are never reinstalled (they
    /// would never match, and a right secret would look wrong).
    pub fn warm_key_check(&self) -> [u8; 16] {
        mac(&self.inner.warm_mac, b"keyward warm key check")[..16].try_into().expect("16 bytes")
    }

    /// The persistent lookup digest of a whole imported token.
    pub fn lookup_digest(&self, token: &[u8]) -> [u8; 32] {
        mac(&self.inner.lookup_mac, token)
    }

    /// An Argon2id PHC string for `secret`, with a fresh random salt.
    pub async fn hash(&self, secret: Zeroizing<Vec<u8>>) -> Result<String, DaemonError> {
        let argon = self.inner.argon.clone();
        self.run_blocking(move || {
            let salt_bytes = mint::key_material();
            let salt = SaltString::encode_b64(&salt_bytes[..16])
                .map_err(|e| DaemonError::Internal(format!("salt encoding: {e}")))?;
            argon
                .hash_password(&secret, &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| DaemonError::Internal(format!("hashing: {e}")))
        })
        .await?
    }

    /// Whether `secret` matches the PHC string `phc` (using the cost stored in it).
    pub async fn verify(&self, secret: Zeroizing<Vec<u8>>, phc: Arc<str>) -> Result<bool, DaemonError> {
        let argon = self.inner.argon.clone();
        self.run_blocking(move || match PasswordHash::new(&phc) {
            Ok(parsed) => argon.verify_password(&secret, &parsed).is_ok(),
            Err(_) => false,
        })
        .await
    }

    /// Runs `work` on the blocking pool once a worker permit is free, or refuses when too many wait.
    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DaemonError> {
        let inner = &self.inner;
        if inner.waiting.fetch_add(1, Ordering::AcqRel) >= inner.queue_limit + inner.permits.available_permits() {
            inner.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(DaemonError::Busy);
        }
        let permit = inner.permits.clone().acquire_owned().await;
        inner.waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.map_err(|_| DaemonError::Internal("hasher closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| DaemonError::Internal(format!("hashing task failed: {e}")))
    }
}

/// Identifies a stored hash without revealing it: the first 16 bytes of SHA-256 of the PHC string. A
/// persisted warm digest is reinstalled only on the hash it was verified against.
pub fn fingerprint(phc: &str) -> [u8; 16] {
    let digest = <Sha256 as sha2::Digest>::digest(phc.as_bytes());
    digest[..16].try_into().expect("SHA-256 is 32 bytes")
}

fn keyed(key: &[u8; 32]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

fn mac(keyed: &Hmac<Sha256>, message: &[u8]) -> [u8; 32] {
    let mut mac = keyed.clone();
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Hasher {
        Hasher::new(HashCost { memory_kib: 64, iterations: 1, parallelism: 1 }, 2, 8, DigestKeys::ephemeral()).unwrap()
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = cheap();
        let phc = hasher.hash(Zeroizing::new(b"right".to_vec())).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("right"));
        let phc: Arc<str> = phc.into();
        assert!(hasher.verify(Zeroizing::new(b"right".to_vec()), phc.clone()).await.unwrap());
        assert!(!hasher.verify(Zeroizing::new(b"wrong".to_vec()), phc).await.unwrap());
    }

    #[test]
    fn digests_are_keyed_per_hasher() {
        let (a, b) = (cheap(), cheap());
        assert!(a.digest(b"s").matches(&a.digest(b"s")));
        assert!(!a.digest(b"s").matches(&a.digest(b"t")));
        assert!(!a.digest(b"s").matches(&b.digest(b"s")), "other keys give other digests");
    }
}
