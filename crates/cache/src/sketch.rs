//! TinyLFU's frequency estimate: a 4-bit count-min sketch behind a
//! doorkeeper bloom filter, aged by halving.
//!
//! Each key's four counters live in one 64-byte block (eight `u64` words of
//! sixteen 4-bit counters), so an increment or estimate touches one cache
//! line. The doorkeeper absorbs the first sighting of a key: one-hit wonders
//! never reach the counters. After `sample_size` increments every counter is
//! halved and the doorkeeper cleared, so old popularity fades.

/// A frequency sketch sized for about `capacity` distinct keys.
#[derive(Debug, Clone)]
pub(crate) struct FrequencySketch {
    table: Vec<u64>,
    block_mask: u64,
    door: Vec<u64>,
    door_mask: u64,
    additions: u32,
    sample_size: u32,
}

const RESET_MASK: u64 = 0x7777_7777_7777_7777;

#[inline(always)]
fn spread(hash: u64) -> u64 {
    let h = (hash ^ (hash >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

impl FrequencySketch {
    /// A sketch for about `capacity` keys (at least 16).
    pub(crate) fn new(capacity: usize) -> Self {
        // A floor of 512 keys: tiny caches still need enough history to tell
        // a loop's keys apart from noise (measured on the LIRS traces).
        let cap = capacity.clamp(512, 1 << 26).next_power_of_two();
        // One 64-bit word per key on average: 16 counters of 4 bits.
        let blocks = (cap / 8).max(1);
        let door_words = (cap / 16).max(1).next_power_of_two();
        FrequencySketch {
            table: vec![0; blocks * 8],
            block_mask: (blocks - 1) as u64,
            door: vec![0; door_words],
            door_mask: (door_words * 64 - 1) as u64,
            additions: 0,
            sample_size: u32::try_from(cap.saturating_mul(10)).unwrap_or(u32::MAX),
        }
    }

    #[inline(always)]
    fn door_bits(&self, h: u64) -> (usize, u64, usize, u64) {
        let a = h & self.door_mask;
        let b = (h >> 32) & self.door_mask;
        (
            (a >> 6) as usize,
            1 << (a & 63),
            (b >> 6) as usize,
            1 << (b & 63),
        )
    }

    #[inline(always)]
    fn door_contains(&self, h: u64) -> bool {
        let (wa, ba, wb, bb) = self.door_bits(h);
        self.door[wa] & ba != 0 && self.door[wb] & bb != 0
    }

    /// The estimated frequency of `hash` (0..=16).
    #[inline]
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        let h = spread(hash);
        let block = ((h >> 40) & self.block_mask) as usize * 8;
        let mut min = 15u8;
        for i in 0..4 {
            let sel = h >> (i * 8);
            let word = block + i * 2 + ((sel >> 4) & 1) as usize;
            let shift = (sel & 15) * 4;
            let c = ((self.table[word] >> shift) & 15) as u8;
            min = min.min(c);
        }
        min + u8::from(self.door_contains(h))
    }

    /// Records one occurrence of `hash`.
    #[inline]
    pub(crate) fn increment(&mut self, hash: u64) {
        let h = spread(hash);
        let (wa, ba, wb, bb) = self.door_bits(h);
        if self.door[wa] & ba == 0 || self.door[wb] & bb == 0 {
            self.door[wa] |= ba;
            self.door[wb] |= bb;
        } else {
            let block = ((h >> 40) & self.block_mask) as usize * 8;
            for i in 0..4 {
                let sel = h >> (i * 8);
                let word = block + i * 2 + ((sel >> 4) & 1) as usize;
                let shift = (sel & 15) * 4;
                if (self.table[word] >> shift) & 15 != 15 {
                    self.table[word] += 1 << shift;
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
        for w in &mut self.table {
            *w = (*w >> 1) & RESET_MASK;
        }
        self.door.iter_mut().for_each(|w| *w = 0);
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
