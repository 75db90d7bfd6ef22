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

/// A key in two halves: 8-byte aligned, so a list of (key, u32) is 24 bytes an
/// entry, not 32.
pub type SplitKey = [u64; 2];

pub fn split(key: u128) -> SplitKey {
    [(key >> 64) as u64, key as u64]
}

/// Where each run of keys with the same leading bits starts in a list sorted by
/// key: a look-up goes straight to its run (about eight keys) instead of
/// halving a million twenty times (a first version keyed the assignments so and
/// cost the 1M incremental cycle 2 s). Keys are hashes, spread evenly, so the
/// runs are even too. Half a byte a key; a table sized for a million keys was
/// twice the list.
#[derive(Default)]
pub struct KeyIndex {
    bits: u32,
    starts: Vec<u32>,
}

impl KeyIndex {
    /// The index of `sorted` (sorted by `key_of`).
    pub fn new<T>(sorted: &[T], key_of: impl Fn(&T) -> SplitKey) -> KeyIndex {
        let bits = (sorted.len() / 8)
            .max(1)
            .next_power_of_two()
            .trailing_zeros()
            .min(24);
        let mut index = KeyIndex {
            bits,
            starts: vec![0; (1usize << bits) + 1],
        };
        for x in sorted {
            let r = index.run(key_of(x));
            index.starts[r + 1] += 1;
        }
        for i in 1..index.starts.len() {
            index.starts[i] += index.starts[i - 1];
        }
        index
    }

    fn run(&self, k: SplitKey) -> usize {
        k[0].checked_shr(64 - self.bits).unwrap_or(0) as usize
    }

    /// Where `key` sits in `sorted` (the list this index was made of), if there.
    pub fn find<T>(
        &self,
        sorted: &[T],
        key: u128,
        key_of: impl Fn(&T) -> SplitKey,
    ) -> Option<usize> {
        let k = split(key);
        let r = self.run(k);
        let lo = *self.starts.get(r)? as usize;
        let hi = (*self.starts.get(r + 1)? as usize).min(sorted.len());
        sorted
            .get(lo..hi)?
            .binary_search_by(|x| key_of(x).cmp(&k))
            .ok()
            .map(|i| lo + i)
    }
}

#[cfg(test)]
mod sorted_tests {
    use super::*;

    /// Finds every key that is there and none that is not, at every size
    /// (the first and last runs included).
    #[test]
    fn a_key_index_finds_exactly_the_keys_present() {
        for n in [0usize, 1, 2, 3, 10, 1000, 5000] {
            let mut keys: Vec<SplitKey> = (0..n).map(|i| split(key(&format!("in{i}")))).collect();
            keys.sort_unstable();
            let index = KeyIndex::new(&keys, |x| *x);
            for i in 0..n {
                let k = key(&format!("in{i}"));
                let at = index.find(&keys, k, |x| *x);
                assert_eq!(at.map(|j| keys[j]), Some(split(k)), "n={n} i={i}");
            }
            for i in 0..n.max(5) {
                let k = key(&format!("out{i}"));
                assert_eq!(index.find(&keys, k, |x| *x), None, "n={n} out{i}");
            }
            assert_eq!(index.find(&keys, 0, |x| *x), None);
            assert_eq!(index.find(&keys, u128::MAX, |x| *x), None);
        }
    }
}

/// A set of ids by key, as a list sorted once every id is in (`settle`): half
/// the memory of a table (16 bytes an id), for sets filled first and asked after.
#[derive(Default)]
pub struct KeyList {
    keys: Vec<SplitKey>,
    /// Present once settled.
    index: Option<KeyIndex>,
}

impl KeyList {
    pub fn reserve(&mut self, n: usize) {
        self.keys.reserve_exact(n);
    }

    pub fn insert(&mut self, key: u128) {
        self.keys.push(split(key));
        self.index = None;
    }

    /// Sorts what was inserted, for `contains`.
    pub fn settle(&mut self) {
        if self.index.is_none() {
            self.keys.sort_unstable();
            self.keys.dedup();
            self.index = Some(KeyIndex::new(&self.keys, |k| *k));
        }
    }

    /// Whether the key is in (settled: a look-up; otherwise a scan).
    pub fn contains(&self, key: u128) -> bool {
        match &self.index {
            Some(index) => index.find(&self.keys, key, |k| *k).is_some(),
            None => self.keys.contains(&split(key)),
        }
    }
}
