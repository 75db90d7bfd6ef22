//! Identifiers: random ones and tokens without an extra dependency, and the
//! 128-bit keys a cycle holds ids by where it holds many.
//!
//! `RandomState` is seeded from the OS per thread and its keys advance for every new
//! instance, so hashing a counter with fresh instances gives unpredictable values —
//! enough for GUIDs, emulator ids and loopback tokens (not for key material).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// `n` random lowercase hex digits.
pub fn random_hex(n: usize) -> String {
    let mut s = String::with_capacity(n + 16);
    while s.len() < n {
        s.push_str(&format!("{:016x}", random_u64()));
    }
    s.truncate(n);
    s
}

/// A random version-4 style GUID.
pub fn guid() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn guids_differ_and_have_shape() {
        let a = super::guid();
        let b = super::guid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}

/// An id's 128-bit key: two halves of std's SipHash with its fixed keys, so the
/// same id has the same key in every process (the file source's cache stores
/// them). Sets of a million ids hold keys (16 bytes) instead of copies (~70).
pub fn key(id: &str) -> u128 {
    use std::hash::Hash;
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        id.hash(&mut h);
        h.finish() as u128
    };
    half(0) << 64 | half(1)
}

/// Maps and sets keyed by `key`: the keys are hashes already, so the table
/// takes their low bits as they are instead of hashing them again.
pub type Keyed = std::hash::BuildHasherDefault<KeyHasher>;

/// Ids by their key.
pub type KeySet = std::collections::HashSet<u128, Keyed>;

#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, k: u128) {
        self.0 = k as u64;
    }
}
