//! Which server holds a key: rendezvous hashing over the configured list.

use memcache::exp::Router;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Rendezvous (highest random weight) hashing on XXH3.
///
/// The memcache crate's default router scores with std's `DefaultHasher`,
/// whose algorithm Rust may change in any release. Two app servers built by
/// different toolchains could then send one session to two different
/// Memcacheds, and a user would be logged out mid-deploy. XXH3 is specified,
/// so every build agrees.
///
/// Routing is over the configured servers, never the live ones: when a
/// server dies its keys fail with `Unavailable` instead of quietly moving
/// to a server that has no copy, where they would read as new sessions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StableRendezvous;

impl StableRendezvous {
    /// The weight of `server` for `key`; the highest weight wins.
    fn weight(key: &[u8], server: &str) -> u64 {
        xxh3_64_with_seed(key, xxh3_64(server.as_bytes()))
    }
}

impl Router for StableRendezvous {
    fn route(&self, key: &[u8], servers: &[String]) -> usize {
        servers
            .iter()
            .enumerate()
            // Ties (astronomically rare) go to the first listed.
            .max_by_key(|(index, server)| (Self::weight(key, server), std::cmp::Reverse(*index)))
            .map_or(0, |(index, _)| index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:11211")).collect()
    }

    #[test]
    fn routing_is_fixed_by_the_spec_not_the_toolchain() {
        // Pinned values: if these change, deployed app servers built before
        // and after the change would disagree about where sessions live.
        let three = servers(3);
        let routes: Vec<usize> = ["session:a", "session:b", "session:c", "session:d"]
            .iter()
            .map(|key| StableRendezvous.route(key.as_bytes(), &three))
            .collect();
        assert_eq!(routes, ROUTES);
    }

    const ROUTES: [usize; 4] = [0, 2, 1, 2];

    #[test]
    fn the_hash_is_xxh3_as_specified() {
        // The reference implementation's value for empty input.
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
    }

    #[test]
    fn the_list_order_does_not_matter() {
        let forward = servers(4);
        let mut backward = forward.clone();
        backward.reverse();
        for i in 0..1000 {
            let key = format!("session:{i}");
            let a = &forward[StableRendezvous.route(key.as_bytes(), &forward)];
            let b = &backward[StableRendezvous.route(key.as_bytes(), &backward)];
            assert_eq!(a, b);
        }
    }

    #[test]
    fn keys_spread_evenly_and_a_removed_server_moves_only_its_own() {
        let four = servers(4);
        let three: Vec<String> = four.iter().filter(|s| *s != &four[1]).cloned().collect();
        let mut counts = [0usize; 4];
        for i in 0..8000 {
            let key = format!("session:{i}");
            let before = &four[StableRendezvous.route(key.as_bytes(), &four)];
            counts[four.iter().position(|s| s == before).unwrap()] += 1;
            let after = &three[StableRendezvous.route(key.as_bytes(), &three)];
            if before != &four[1] {
                assert_eq!(before, after, "{key} moved although its server stayed");
            }
        }
        for count in counts {
            assert!((1700..2300).contains(&count), "unbalanced: {counts:?}");
        }
    }
}
