//! A concurrent bloom filter: the guard in front of a source for keys known
//! not to exist (cache penetration defence).

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::CacheError;
use crate::hashing::FastHashBuilder;

/// A fixed-size bloom filter; `insert` and `might_contain` take `&self`.
///
/// ```
/// use kuai_cache::BloomFilter;
/// let f = BloomFilter::new(1_000, 0.01)?;
/// f.insert(&"alice");
/// assert!(f.might_contain(&"alice"));
/// # Ok::<(), kuai_cache::CacheError>(())
/// ```
#[derive(Debug)]
pub struct BloomFilter {
    bits: Box<[AtomicU64]>,
    mask: u64,
    hashes: u32,
    hasher: FastHashBuilder,
}

impl BloomFilter {
    /// A filter for about `expected` keys at false-positive rate `fp`
    /// (0 < fp < 1). At most 2^32 bits.
    pub fn new(expected: usize, fp: f64) -> Result<Self, CacheError> {
        if !(fp > 0.0 && fp < 1.0) || expected == 0 {
            return Err(CacheError::InvalidConfig(
                "bloom filter needs expected > 0 and 0 < fp < 1",
            ));
        }
        let ln2 = std::f64::consts::LN_2;
        let m = (-(expected as f64) * fp.ln() / (ln2 * ln2)).ceil();
        let m = (m.clamp(64.0, (1u64 << 32) as f64) as u64).next_power_of_two();
        let k = ((m as f64 / expected as f64) * ln2)
            .round()
            .clamp(1.0, 16.0) as u32;
        let words = (m / 64) as usize;
        Ok(BloomFilter {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            mask: m - 1,
            hashes: k,
            hasher: FastHashBuilder::with_seed(0xb100_f11e),
        })
    }

    fn positions<K: Hash + ?Sized>(&self, key: &K) -> impl Iterator<Item = (usize, u64)> + '_ {
        let h = self.hasher.hash_one(key);
        let (h1, h2) = (h, h.rotate_left(32) | 1);
        (0..u64::from(self.hashes)).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & self.mask;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    /// Adds `key`.
    pub fn insert<K: Hash + ?Sized>(&self, key: &K) {
        for (w, b) in self.positions(key) {
            self.bits[w].fetch_or(b, Ordering::Relaxed);
        }
    }

    /// `false` means `key` was certainly never inserted.
    pub fn might_contain<K: Hash + ?Sized>(&self, key: &K) -> bool {
        self.positions(key)
            .all(|(w, b)| self.bits[w].load(Ordering::Relaxed) & b != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let f = BloomFilter::new(10_000, 0.01).expect("valid");
        for k in 0..10_000u64 {
            f.insert(&k);
        }
        assert!((0..10_000u64).all(|k| f.might_contain(&k)));
        let fp = (10_000..110_000u64).filter(|k| f.might_contain(k)).count();
        assert!(fp < 3_000, "false positives: {fp}");
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(BloomFilter::new(0, 0.1).is_err());
        assert!(BloomFilter::new(10, 0.0).is_err());
        assert!(BloomFilter::new(10, f64::NAN).is_err());
    }
}
