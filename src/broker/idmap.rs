//! Maps keyed by connection id. Ids are handed out by the bus itself (a
//! counter), so nobody can choose colliding keys, and SipHash's protection
//! against that is not needed on the hot path: a connection lookup costs one
//! multiply instead of a SipHash round (which was ~25% of broadcast routing).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` keyed by connection id.
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

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
}
