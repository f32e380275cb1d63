//! Who holds a session: rendezvous (highest-random-weight) hashing over the
//! live members.

use std::{cmp::Reverse, net::SocketAddr, sync::Arc};

use tokio::time::Instant;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// One live node, as membership reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) name: Arc<str>,
    pub(crate) addr: SocketAddr,
    /// The rendezvous seed, derived from the name alone, so a node that
    /// restarts on another address still owns the same sessions.
    seed: u64,
}

impl Member {
    pub(crate) fn new(name: &str, addr: SocketAddr) -> Self {
        Self {
            name: name.into(),
            addr,
            seed: xxh3_64(name.as_bytes()),
        }
    }
}

/// The members one node sees at one moment, itself included.
#[derive(Debug)]
pub(crate) struct View {
    /// Sorted by name, so two nodes that see the same members hold equal views.
    pub(crate) members: Vec<Member>,
    /// Bumped on every change this node observes.
    pub(crate) epoch: u64,
    /// A hash of the members' names, which is what placement depends on:
    /// equal on two nodes that place keys alike.
    pub(crate) digest: u64,
    /// On tokio's clock, as the lease's times are: a simulation pauses it,
    /// so whether a view has settled depends on simulated time only, not on
    /// how long the run takes on a busy machine.
    pub(crate) changed_at: Instant,
}

impl View {
    /// Of several members with one name, keeps the first given.
    pub(crate) fn new(mut members: Vec<Member>, epoch: u64) -> Self {
        // Stable, so "first given" survives the sort.
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members.dedup_by(|a, b| a.name == b.name);
        let mut names = Vec::new();
        for member in &members {
            // Each name ends with a byte no name holds, so ["ab", "c"] and
            // ["a", "bc"] differ.
            names.extend_from_slice(member.name.as_bytes());
            names.push(0xff);
        }
        Self {
            digest: xxh3_64(&names),
            members,
            epoch,
            changed_at: Instant::now(),
        }
    }

    /// A view of members named `names`, on loopback addresses, for tests.
    #[cfg(test)]
    pub(crate) fn of(names: &[&str], epoch: u64) -> Self {
        let members = names
            .iter()
            .zip(7000u16..)
            .map(|(name, port)| Member::new(name, SocketAddr::from(([127, 0, 0, 1], port))))
            .collect();
        Self::new(members, epoch)
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn same_members(&self, other: &[Member]) -> bool {
        let mut other = other.to_vec();
        other.sort_by(|a, b| a.name.cmp(&b.name));
        other.dedup_by(|a, b| a.name == b.name);
        self.members == other
    }

    /// Whether a member is named `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.members.iter().any(|member| *member.name == *name)
    }

    /// The member that owns `key`: [`replicas`](Self::replicas)' first,
    /// without ranking the rest. `None` only for an empty view.
    pub(crate) fn owner(&self, key: &str) -> Option<&Member> {
        self.members.iter().max_by_key(|member| rank(key, member))
    }

    /// The `copies` members that hold `key`, owner first. XXH3 has a fixed
    /// specification, so every node computes the same answer for the same
    /// members whatever build it runs.
    pub(crate) fn replicas(&self, key: &str, copies: usize) -> Vec<&Member> {
        let mut ranked: Vec<_> = self
            .members
            .iter()
            .map(|member| (rank(key, member), member))
            .collect();
        ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        ranked
            .into_iter()
            .take(copies)
            .map(|(_, member)| member)
            .collect()
    }
}

/// How high `member` ranks for holding `key`: the rendezvous weight, then
/// the name (the lower first). Ties of 64-bit weights are as good as
/// impossible; the name breaks them anyway, so the order is total.
fn rank<'a>(key: &str, member: &'a Member) -> (u64, Reverse<&'a str>) {
    (
        xxh3_64_with_seed(key.as_bytes(), member.seed),
        Reverse(&*member.name),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn view(names: &[&str]) -> View {
        View::of(names, 1)
    }

    #[test]
    fn the_owner_is_the_first_replica() {
        let view = view(&["a", "b", "c", "d", "e"]);
        for i in 0..5_000 {
            let key = format!("session:{i}");
            assert_eq!(view.owner(&key), Some(view.replicas(&key, 3)[0]));
        }
        assert_eq!(View::new(Vec::new(), 1).owner("session:0"), None);
    }

    #[test]
    fn each_node_owns_about_its_share() {
        let view = view(&["a", "b", "c", "d", "e"]);
        let mut owned: HashMap<&str, usize> = HashMap::new();
        for i in 0..50_000 {
            let key = format!("session:{i}");
            *owned.entry(&view.replicas(&key, 2)[0].name).or_default() += 1;
        }
        for (name, count) in owned {
            assert!(
                (9_000..11_000).contains(&count),
                "{name} owns {count} of 50000"
            );
        }
    }

    #[test]
    fn a_leaving_node_moves_only_its_own_sessions() {
        let before = view(&["a", "b", "c"]);
        let after = view(&["a", "b"]);
        for i in 0..5_000 {
            let key = format!("session:{i}");
            let old: Vec<_> = before
                .replicas(&key, 2)
                .iter()
                .map(|m| m.name.clone())
                .collect();
            let new: Vec<_> = after
                .replicas(&key, 2)
                .iter()
                .map(|m| m.name.clone())
                .collect();
            // Every surviving holder keeps its copy: at least R-1 overlap.
            let kept = old.iter().filter(|name| new.contains(name)).count();
            assert!(kept >= 1, "{old:?} -> {new:?}");
            if !old.iter().any(|name| &**name == "c") {
                assert_eq!(old, new);
            }
        }
    }

    #[test]
    fn replicas_are_distinct_and_capped_by_the_members() {
        let view = view(&["a", "b"]);
        let replicas = view.replicas("k", 3);
        assert_eq!(replicas.len(), 2);
        assert_ne!(replicas[0].name, replicas[1].name);
    }
}
