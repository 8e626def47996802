//! TinyLFU's frequency estimate: a 4-bit count-min sketch aged by halving.
//!
//! A key maps to one 64-byte block of eight `u64` words (128 counters); each
//! of its four rows picks one counter in one of two words, so an increment or
//! an estimate touches one cache line. There is no doorkeeper: on the traces
//! measured (LIRS, ARC, Zipf), a doorkeeper's lost first sighting cost more
//! hit ratio than its saved space, and 32 counters per key of capacity keep
//! the estimate's collisions low. After `10 × capacity` increments (capacity
//! at least 256) every counter is halved, so old popularity fades.

/// A frequency sketch sized for about `capacity` distinct keys.
#[derive(Debug, Clone)]
pub(crate) struct FrequencySketch {
    table: Vec<u64>,
    block_mask: u64,
    additions: u32,
    sample_size: u32,
}

const RESET_MASK: u64 = 0x7777_7777_7777_7777;
const BLOCK: usize = 8;
/// Counters per key of capacity (a block holds 128).
const COUNTERS_PER_KEY: usize = 32;

#[inline(always)]
fn spread(hash: u64) -> u64 {
    let h = (hash ^ (hash >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

impl FrequencySketch {
    /// A sketch for about `capacity` keys.
    pub(crate) fn new(capacity: usize) -> Self {
        // A floor of 256 keys: tiny caches still need enough history to tell
        // a loop's keys from noise (measured on the LIRS loop trace).
        let cap = capacity.clamp(256, 1 << 26).next_power_of_two();
        let blocks = (cap * COUNTERS_PER_KEY / (BLOCK * 16)).max(1);
        FrequencySketch {
            table: vec![0; blocks * BLOCK],
            block_mask: (blocks - 1) as u64,
            additions: 0,
            sample_size: u32::try_from(cap.saturating_mul(10).max(512)).unwrap_or(u32::MAX),
        }
    }

    #[inline(always)]
    fn block(&self, h: u64) -> usize {
        ((h >> 40) & self.block_mask) as usize * BLOCK
    }

    /// Row `i`'s (word, shift) for spread hash `h` in block `block`.
    #[inline(always)]
    fn slot(block: usize, h: u64, i: usize) -> (usize, u64) {
        let word = block + 2 * i + ((h >> (32 + i)) & 1) as usize;
        (word, ((h >> (i * 8)) & 15) * 4)
    }

    /// The estimated frequency of `hash` (0..=15).
    #[inline]
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        let h = spread(hash);
        let block = self.block(h);
        let mut min = 15u8;
        for i in 0..4 {
            let (w, shift) = Self::slot(block, h, i);
            min = min.min(((self.table[w] >> shift) & 15) as u8);
        }
        min
    }

    /// Records one occurrence of `hash`.
    #[inline]
    pub(crate) fn increment(&mut self, hash: u64) {
        self.increment_by(hash, 1);
    }

    /// Records `n` occurrences of `hash` (counters saturate at 15).
    #[inline]
    pub(crate) fn increment_by(&mut self, hash: u64, n: u8) {
        let h = spread(hash);
        let block = self.block(h);
        let mut added = 0u64;
        for i in 0..4 {
            let (w, shift) = Self::slot(block, h, i);
            let c = (self.table[w] >> shift) & 15;
            let add = (15 - c).min(u64::from(n));
            self.table[w] += add << shift;
            added = added.max(add);
        }
        if added > 0 {
            self.additions += added as u32;
            if self.additions >= self.sample_size {
                self.reset();
            }
        }
    }

    /// Halves every counter.
    fn reset(&mut self) {
        for w in &mut self.table {
            *w = (*w >> 1) & RESET_MASK;
        }
        self.additions /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ages() {
        let mut s = FrequencySketch::new(512);
        assert_eq!(s.frequency(99), 0);
        s.increment(99);
        assert_eq!(s.frequency(99), 1);
        for _ in 0..10 {
            s.increment(99);
        }
        assert_eq!(s.frequency(99), 11);
        for _ in 0..30 {
            s.increment(99);
        }
        assert_eq!(s.frequency(99), 15, "counters saturate at 15");
        s.reset();
        assert_eq!(s.frequency(99), 7);
    }

    #[test]
    fn estimates_never_undercount_before_reset() {
        let mut s = FrequencySketch::new(1024);
        for k in 0..500u64 {
            for _ in 0..(k % 5) {
                s.increment(k.wrapping_mul(0x1234_5678_9abc_def1));
            }
        }
        for k in 0..500u64 {
            let f = s.frequency(k.wrapping_mul(0x1234_5678_9abc_def1));
            assert!(u64::from(f) >= (k % 5).min(15), "key {k}: {f}");
        }
    }
}
