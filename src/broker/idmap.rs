//! Maps keyed by connection id. Ids are handed out by the bus itself (a
//! counter), so nobody can choose colliding keys, and SipHash's protection
//! against that is not needed on the hot path: a connection lookup costs one
//! multiply instead of a SipHash round (which was ~25% of broadcast routing).
//!
//! Keys that include a number a peer chooses (a message serial) use
//! [`KeyedMap`] instead: the same multiply, but folded with a secret drawn
//! once per process, so a peer cannot pick serials that collide. This is
//! the construction of foldhash, not a cryptographic guarantee; the number
//! of such keys per peer is bounded by max_replies_per_connection anyway.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// A hasher for bus-assigned `u64` ids: one folded 64x64->128 multiply.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Not used for u64 keys; still correct for anything else.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let r = u128::from(self.0 ^ x) * u128::from(K);
        self.0 = (r as u64) ^ ((r >> 64) as u64);
    }

    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`IdHasher`]s for connection ids.
pub type IdBuild = BuildHasherDefault<IdHasher>;

/// A `HashMap` keyed by connection id.
pub type IdMap<V> = HashMap<u64, V, IdBuild>;

/// Builds [`IdHasher`]s that start from a per-process secret.
#[derive(Clone, Copy, Debug)]
pub struct Keyed(u64);

impl Default for Keyed {
    fn default() -> Self {
        static SECRET: OnceLock<u64> = OnceLock::new();
        // std's RandomState is seeded from the OS's random source.
        Keyed(*SECRET.get_or_init(|| std::hash::RandomState::new().hash_one(0x6275_7362_6172u64)))
    }
}

impl BuildHasher for Keyed {
    type Hasher = IdHasher;
    #[inline]
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

/// A `HashMap` whose keys hold peer-chosen integers (serials).
pub type KeyedMap<K, V> = HashMap<K, V, Keyed>;
/// A `HashSet` of keys that hold peer-chosen integers (serials).
pub type KeyedSet<K> = HashSet<K, Keyed>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread() {
        let mut m: IdMap<u64> = IdMap::default();
        for i in 1..=10_000u64 {
            m.insert(i, i * 2);
        }
        assert!((1..=10_000u64).all(|i| m.get(&i) == Some(&(i * 2))));
        let h = |x: u64| {
            let mut s = IdHasher::default();
            s.write_u64(x);
            s.finish()
        };
        // Low bits (bucket) and top 7 bits (tag) both vary.
        let low: std::collections::HashSet<u64> = (1..=256).map(|x| h(x) & 255).collect();
        let top: std::collections::HashSet<u64> = (1..=256).map(|x| h(x) >> 57).collect();
        assert!(
            low.len() > 128 && top.len() > 64,
            "{} {}",
            low.len(),
            top.len()
        );
    }

    #[test]
    fn keyed_serials_spread() {
        let mut m: KeyedMap<(u64, u32), u32> = KeyedMap::default();
        for s in 1..=10_000u32 {
            m.insert((7, s), s);
        }
        assert!((1..=10_000u32).all(|s| m.get(&(7, s)) == Some(&s)));
        let k = Keyed::default();
        let low: std::collections::HashSet<u64> =
            (1..=256u32).map(|s| k.hash_one((7u64, s)) & 255).collect();
        assert!(low.len() > 128, "{}", low.len());
        // Same secret everywhere in the process.
        assert_eq!(k.hash_one(1u32), Keyed::default().hash_one(1u32));
    }
}
