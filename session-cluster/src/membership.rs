//! Who is alive: SWIM (foca) over a UDP socket, every datagram signed.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    num::{NonZeroU8, NonZeroUsize},
    sync::Arc,
    time::{Duration, SystemTime},
};

use foca::{AccumulatingRuntime, Config, Foca, Identity, PeriodicParams, PostcardCodec, Timer};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
};

use crate::{
    link::{is_blocked, Blocked},
    placement::{Member, View},
    sign::{Signer, TAG_LEN},
};

/// A node as SWIM knows it. SWIM tells identities apart by address: a node
/// that restarts on its address (a new generation) replaces its old self.
/// One that comes back on another address is a new member until its old
/// self is declared dead; placement counts each name once, the newest.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub(crate) struct Ident {
    name: String,
    addr: SocketAddr,
    generation: u64,
}

impl Ident {
    /// `now` is the node's wall clock when it starts.
    pub(crate) fn new(name: &str, addr: SocketAddr, now: SystemTime) -> Self {
        // A restart must win over the identity it replaces: start from the
        // clock, which moves forward between two runs of a process.
        let generation = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self {
            name: name.to_owned(),
            addr,
            generation,
        }
    }

    fn seed(addr: SocketAddr) -> Self {
        // Only the address of an announce's destination is used.
        Self {
            name: String::new(),
            addr,
            generation: 0,
        }
    }
}

impl Identity for Ident {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, other: &Self) -> bool {
        self.generation > other.generation
    }
}

/// The names of the members SWIM suspects now (alive until declared dead,
/// but not to be vouched for: see [`crate::lease`]).
pub(crate) type Suspects = Arc<std::sync::RwLock<Vec<Arc<str>>>>;

/// Requests to the membership task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Tell the others this node is leaving, then stop.
    Leave(oneshot::Sender<()>),
}

/// The SWIM settings derived from the store's config.
pub(crate) fn swim_config(
    probe_period: Duration,
    suspect_timeout: Duration,
    expected: usize,
) -> Config {
    let mut config = Config::simple();
    config.probe_period = probe_period;
    config.probe_rtt = (probe_period * 2 / 5).max(Duration::from_millis(5));
    config.suspect_to_down_after = suspect_timeout;
    config.num_indirect_probes = NonZeroUsize::new(2).expect("2 is not zero");
    // Enough retransmissions that an update reaches every member of a cluster
    // of this size with high probability (SWIM's lambda * log(n)).
    let rounds = 4 + (usize::BITS - expected.max(2).leading_zeros());
    config.max_transmissions =
        NonZeroU8::new(u8::try_from(rounds).unwrap_or(u8::MAX)).expect("rounds > 0");
    config.remove_down_after = Duration::from_secs(30);
    config.max_packet_size = NonZeroUsize::new(1400 - TAG_LEN).expect("not zero");
    config.notify_down_members = true;
    config.periodic_gossip = Some(PeriodicParams {
        frequency: (probe_period / 2).max(Duration::from_millis(5)),
        num_members: NonZeroUsize::new(3).expect("3 is not zero"),
    });
    config.periodic_announce = Some(PeriodicParams {
        frequency: Duration::from_secs(5),
        num_members: NonZeroUsize::new(1).expect("1 is not zero"),
    });
    // How the two sides of a healed partition find each other again.
    config.periodic_announce_to_down_members = Some(PeriodicParams {
        frequency: Duration::from_secs(1),
        num_members: NonZeroUsize::new(2).expect("2 is not zero"),
    });
    config
}

/// A datagram socket: what SWIM sends and receives on. Tokio's
/// [`UdpSocket`] in production; with the `simulation` feature, a socket of
/// the simulated network. Generic rather than a trait object, so the
/// production build calls tokio's socket directly.
pub(crate) trait Datagrams: Send + Sync + 'static {
    /// Sends one datagram to `to`.
    fn send_to(
        &self,
        datagram: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Waits for the next datagram; cancel-safe, as `select!` needs.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
}

impl Datagrams for UdpSocket {
    fn send_to(
        &self,
        datagram: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        UdpSocket::send_to(self, datagram, to)
    }

    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        UdpSocket::recv_from(self, buf)
    }
}

/// What the membership task runs on.
pub(crate) struct Swim<S> {
    pub(crate) socket: S,
    pub(crate) me: Ident,
    pub(crate) seeds: Vec<SocketAddr>,
    pub(crate) signer: Signer,
    pub(crate) blocked: Blocked,
    /// Where the suspected members are published.
    pub(crate) suspects: Suspects,
    pub(crate) config: Config,
    /// The cluster size: below it, keep announcing to the seeds.
    pub(crate) expected: usize,
    /// SWIM's random choices (whom to probe, gossip to): from the operating
    /// system in production, from the seed in a simulation.
    pub(crate) rng: StdRng,
}

/// Runs SWIM until a [`Command::Leave`] or until the task is aborted,
/// publishing every change of the live members on `views`.
pub(crate) async fn run<S: Datagrams>(
    swim: Swim<S>,
    views: watch::Sender<Arc<View>>,
    mut commands: mpsc::Receiver<Command>,
) {
    let Swim {
        socket,
        me,
        seeds,
        signer,
        blocked,
        suspects,
        config,
        expected,
        rng,
    } = swim;
    let seeds: Vec<SocketAddr> = seeds.into_iter().filter(|s| *s != me.addr).collect();
    let mut foca = Foca::new(me.clone(), config, rng, PostcardCodec);
    let mut runtime = AccumulatingRuntime::new();
    // Bounded: a timer task that finds the queue full waits, and SWIM's
    // timers tolerate being late.
    let (timer_tx, mut timer_rx) = mpsc::channel::<Timer<Ident>>(4096);
    let mut announce = tokio::time::interval(Duration::from_secs(1));
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 64 * 1024];
    let mut epoch = views.borrow().epoch;
    loop {
        // Biased, in a fixed order, rather than tokio's random one: a
        // seeded simulation then replays exactly, and timers come before
        // datagrams, so a flood of datagrams cannot hold back the probes.
        tokio::select! {
            biased;
            command = commands.recv() => {
                match command {
                    Some(Command::Leave(done)) => {
                        let _ = foca.leave_cluster(&mut runtime);
                        drain(&mut runtime, &socket, &signer, &blocked, &timer_tx).await;
                        let _ = done.send(());
                    }
                    None => {}
                }
                return;
            }
            Some(timer) = timer_rx.recv() => {
                let _ = foca.handle_timer(timer, &mut runtime);
            }
            _ = announce.tick() => {
                // Until the cluster is whole, keep knocking on the seeds:
                // this is how a node joins, and how it rejoins after a
                // partition or a restart of the others.
                if foca.num_members() + 1 < expected {
                    for seed in &seeds {
                        let _ = foca.announce(Ident::seed(*seed), &mut runtime);
                    }
                }
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                if is_blocked(&blocked, &from) {
                    continue;
                }
                match open(&signer, &buf[..len]) {
                    Some(payload) => {
                        if let Err(err) = foca.handle_data(payload, &mut runtime) {
                            tracing::debug!(%from, error = %err, "membership datagram not handled");
                        }
                    }
                    None => tracing::debug!(%from, "dropped a membership datagram without the cluster's signature"),
                }
            }
        }
        drain(&mut runtime, &socket, &signer, &blocked, &timer_tx).await;
        publish_suspects(foca.iter_members(), &suspects);
        let mut known: Vec<&Ident> = foca.iter_members().map(foca::Member::id).collect();
        known.push(&me);
        // Newest generation first: `View::new` keeps the first of each name.
        known.sort_by_key(|id| std::cmp::Reverse(id.generation));
        let members: Vec<Member> = known
            .iter()
            .map(|id| Member::new(&id.name, id.addr))
            .collect();
        if !views.borrow().same_members(&members) {
            epoch += 1;
            tracing::info!(members = members.len(), epoch, "cluster membership changed");
            let _ = views.send(Arc::new(View::new(members, epoch)));
        }
    }
}

/// Publishes the members SWIM suspects, when they changed.
fn publish_suspects<'m>(
    members: impl Iterator<Item = &'m foca::Member<Ident>>,
    suspects: &Suspects,
) {
    let now: Vec<Arc<str>> = members
        .filter(|member| member.state() == foca::State::Suspect)
        .map(|member| Arc::from(member.id().name.as_str()))
        .collect();
    let unchanged = {
        let current = suspects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current == now
    };
    if !unchanged {
        *suspects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
    }
}

async fn drain<S: Datagrams>(
    runtime: &mut AccumulatingRuntime<Ident>,
    socket: &S,
    signer: &Signer,
    blocked: &Blocked,
    timers: &mpsc::Sender<Timer<Ident>>,
) {
    while let Some((to, data)) = runtime.to_send() {
        if is_blocked(blocked, &to.addr) {
            continue;
        }
        // Fire and forget, as UDP is: SWIM retries what gets lost.
        let _ = socket.send_to(&seal(signer, &data), to.addr).await;
    }
    while let Some((after, timer)) = runtime.to_schedule() {
        let timers = timers.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = timers.send(timer).await;
        });
    }
    // Notifications are not needed: the view is recomputed from the members.
    while runtime.to_notify().is_some() {}
}

fn seal(signer: &Signer, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + TAG_LEN);
    out.extend_from_slice(payload);
    out.extend_from_slice(&signer.tag(&[b"gossip", payload]));
    out
}

fn open<'a>(signer: &Signer, packet: &'a [u8]) -> Option<&'a [u8]> {
    let split = packet.len().checked_sub(TAG_LEN)?;
    let (payload, tag) = packet.split_at(split);
    signer.verify(&[b"gossip", payload], tag).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_open_only_under_the_same_key() {
        let signer = Signer::derive(&[3; 32], "gossip");
        let packet = seal(&signer, b"hello");
        assert_eq!(open(&signer, &packet), Some(&b"hello"[..]));
        assert_eq!(open(&Signer::derive(&[4; 32], "gossip"), &packet), None);
        assert_eq!(open(&signer, &packet[..10]), None);
        assert_eq!(open(&signer, b""), None);
    }
}
