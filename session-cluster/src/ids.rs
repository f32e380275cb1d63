//! Hashing for maps keyed by a `u64` that is already random or a counter:
//! the link's request ids and the nonces it has served.
//!
//! The standard library's SipHash guards a map against keys chosen to
//! collide, which costs more than the rest of a lookup. These keys are not
//! chosen by strangers: request ids are counted by this node, and only
//! nonces of requests whose signed head verified are kept, so only a member
//! (which holds the cluster secret anyway) could choose them. One multiply
//! spreads a counter over both the bucket bits and the tag bits.

use std::hash::{BuildHasherDefault, Hasher};

/// A [`std::hash::BuildHasher`] for [`u64`] keys that are counters or random.
pub(crate) type IdHash = BuildHasherDefault<IdHasher>;

/// Hashes one `u64` by a multiply; see the [module](self) for why that is
/// enough here.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys use this hasher; bytes would be a misuse, so they
        // are folded in rather than ignored.
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // The 64-bit golden ratio: odd, so the low bits (the bucket) of
        // distinct counters differ, and the high bits (hashbrown's tag) mix.
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher as _;

    use super::*;

    #[test]
    fn counters_spread_over_buckets_and_tags() {
        let hash = |n: u64| IdHash::default().hash_one(n);
        let buckets: std::collections::HashSet<u64> = (0..1024).map(|n| hash(n) & 1023).collect();
        assert_eq!(buckets.len(), 1024, "consecutive ids share no bucket");
        let tags: std::collections::HashSet<u64> = (0..1024).map(|n| hash(n) >> 57).collect();
        assert!(tags.len() > 64, "the top seven bits vary: {}", tags.len());
    }
}
