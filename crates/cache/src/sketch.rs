//! TinyLFU's frequency estimate: a 4-bit count-min sketch with a doorkeeper
//! bloom filter, aged by halving.
//!
//! A key maps to one 64-byte block: four `u64` words of sixteen 4-bit
//! counters (one counter per row of the count-min sketch) and four words
//! (256 bits) of doorkeeper. An increment or an estimate therefore touches
//! one cache line. The doorkeeper absorbs the first sighting of a key:
//! one-hit wonders never reach the counters. After `10 × capacity`
//! increments every counter is halved and the doorkeeper cleared, so old
//! popularity fades.

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

#[inline(always)]
fn spread(hash: u64) -> u64 {
    let h = (hash ^ (hash >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

impl FrequencySketch {
    /// A sketch for about `capacity` keys. A floor of 512 keys: tiny caches
    /// still need enough history to tell a loop's keys from noise (measured
    /// on the LIRS traces).
    pub(crate) fn new(capacity: usize) -> Self {
        let cap = capacity.clamp(512, 1 << 26).next_power_of_two();
        // 8 counters and 32 doorkeeper bits per key (8 bytes, as Caffeine).
        let blocks = (cap / 8).max(1);
        FrequencySketch {
            table: vec![0; blocks * BLOCK],
            block_mask: (blocks - 1) as u64,
            additions: 0,
            sample_size: u32::try_from(cap.saturating_mul(10)).unwrap_or(u32::MAX),
        }
    }

    #[inline(always)]
    fn block(&self, h: u64) -> usize {
        ((h >> 40) & self.block_mask) as usize * BLOCK
    }

    /// The two doorkeeper bits of `h` in its block: (word, mask) pairs.
    #[inline(always)]
    fn door(block: usize, h: u64) -> [(usize, u64); 2] {
        let d = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        let (a, b) = (d >> 56, (d >> 48) & 255);
        [
            (block + 4 + (a >> 6) as usize, 1 << (a & 63)),
            (block + 4 + (b >> 6) as usize, 1 << (b & 63)),
        ]
    }

    /// The estimated frequency of `hash` (0..=16).
    #[inline]
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        let h = spread(hash);
        let block = self.block(h);
        let mut min = 15u8;
        for i in 0..4 {
            let shift = ((h >> (i * 8)) & 15) * 4;
            let c = ((self.table[block + i] >> shift) & 15) as u8;
            min = min.min(c);
        }
        let seen = Self::door(block, h)
            .iter()
            .all(|&(w, m)| self.table[w] & m != 0);
        min + u8::from(seen)
    }

    /// Records one occurrence of `hash`.
    #[inline]
    pub(crate) fn increment(&mut self, hash: u64) {
        let h = spread(hash);
        let block = self.block(h);
        let door = Self::door(block, h);
        if door.iter().any(|&(w, m)| self.table[w] & m == 0) {
            for (w, m) in door {
                self.table[w] |= m;
            }
        } else {
            for i in 0..4 {
                let shift = ((h >> (i * 8)) & 15) * 4;
                if (self.table[block + i] >> shift) & 15 != 15 {
                    self.table[block + i] += 1 << shift;
                }
            }
        }
        self.additions += 1;
        if self.additions >= self.sample_size {
            self.reset();
        }
    }

    /// Halves every counter and clears the doorkeeper.
    fn reset(&mut self) {
        for block in self.table.chunks_exact_mut(BLOCK) {
            for w in &mut block[..4] {
                *w = (*w >> 1) & RESET_MASK;
            }
            for w in &mut block[4..] {
                *w = 0;
            }
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
        assert_eq!(s.frequency(99), 1, "doorkeeper holds the first sighting");
        for _ in 0..10 {
            s.increment(99);
        }
        assert_eq!(s.frequency(99), 11);
        for _ in 0..30 {
            s.increment(99);
        }
        assert_eq!(
            s.frequency(99),
            16,
            "counters saturate at 15 (+1 doorkeeper)"
        );
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
