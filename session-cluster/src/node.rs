//! A running node: its state (`Inner`), how it starts, and the small helpers
//! every role uses (the view, the quorum check, the per-key locks).

use std::{
    io,
    net::SocketAddr,
    sync::{atomic::AtomicU64, Arc, Weak},
    time::Duration,
};

use rand::{rngs::StdRng, SeedableRng};
use session_core::{ConfigError, ErrorKind, StoreError};
use tokio::{
    net::{TcpListener, UdpSocket},
    sync::{mpsc, watch},
    task::AbortHandle,
    time::Instant,
};
use xxhash_rust::xxh3::xxh3_64;

#[cfg(feature = "fault-injection")]
use crate::transport::Partitioned;
use crate::{
    clock::Clock,
    lease::{lease_loop, Lease},
    link::{Blocked, Counters, Handler, Link},
    local::Local,
    membership::{self, Command, Datagrams, Ident, Suspects},
    placement::{Member, View},
    rebalance::rebalance_loop,
    settle::{Handovers, Intake},
    sign::Signer,
    store::ClusterStore,
    transport::{Peers, Transport},
    ClusterConfig,
};

/// Why a [`ClusterStore`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A setting is out of range; the error names it.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The peer link (TCP) or membership (UDP) socket could not be bound.
    #[error("cannot listen on {addr} (TCP and UDP): {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// Not called from inside a tokio runtime, which the node's tasks need.
    #[error("ClusterStore::start must be called inside a tokio runtime")]
    NoRuntime,
}

pub(crate) struct Tasks {
    pub(crate) handles: Vec<AbortHandle>,
    pub(crate) commands: mpsc::Sender<Command>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.abort();
        }
    }
}

pub(crate) struct Inner {
    pub(crate) me: Arc<str>,
    pub(crate) addr: SocketAddr,
    pub(crate) copies: usize,
    pub(crate) expected: usize,
    pub(crate) quorum: usize,
    pub(crate) operation_timeout: Duration,
    pub(crate) settle_time: Duration,
    pub(crate) local: Local,
    pub(crate) link: Peers,
    pub(crate) views: watch::Receiver<Arc<View>>,
    pub(crate) locks: Box<[tokio::sync::Mutex<()>]>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rebalances: AtomicU64,
    pub(crate) suspect_timeout: Duration,
    /// This node's read lease; see [`crate::lease`].
    pub(crate) lease: Arc<Lease>,
    /// Hand-overs given and owed; see [`crate::settle`].
    pub(crate) handovers: Handovers,
    /// This run of the node: its start time in nanoseconds, part of its
    /// [`Intake`].
    pub(crate) process: u64,
    /// The members this node's membership suspects (and has not declared
    /// dead yet): they get no lease confirmation from it.
    pub(crate) suspects: Suspects,
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub(crate) blocked: Blocked,
    /// The wall clock expiry is measured against (see `clock`).
    pub(crate) clock: Clock,
}

impl ClusterStore {
    /// Starts this node: binds `listen` (TCP for the peer link, UDP for
    /// membership, the same port), joins the seeds in the background and
    /// returns at once. Requests fail with `Unavailable` until the node sees
    /// a [quorum](ClusterConfig::quorum) of members; see
    /// [`wait_for_members`](Self::wait_for_members).
    ///
    /// # Errors
    /// A setting out of range, a port that cannot be bound, or no tokio
    /// runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use session_cluster::{ClusterConfig, ClusterStore};
    /// use session_core::store::SessionStore;
    ///
    /// // A one-node cluster on a free port: a majority of one is itself.
    /// let config = ClusterConfig::new("solo", "127.0.0.1:0".parse().unwrap(), [7u8; 32]).with_cluster_size(1);
    /// let store = ClusterStore::start(config).await.unwrap();
    /// assert!(store.wait_for_members(1, Duration::from_secs(5)).await);
    /// store.health().await.unwrap();
    /// # }
    /// ```
    pub async fn start(mut config: ClusterConfig) -> Result<Self, ClusterError> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ClusterError::NoRuntime);
        }
        config.read_secret_file()?;
        config.resolve_seed_hosts().await?;
        let (listener, socket) = bind(config.listen).await?;
        let bound = listener.local_addr().map_err(|source| ClusterError::Bind {
            addr: config.listen,
            source,
        })?;
        // `validate` refused a wildcard `listen` without `advertise`.
        let addr = config.advertise.unwrap_or(bound);
        let counters = Arc::new(Counters::default());
        let link: Arc<dyn Transport> = Arc::new(Link::new(
            listener,
            Signer::derive(&config.secret, "link"),
            config.node_id.as_str().into(),
            config.max_in_flight_per_peer,
            config.connect_timeout,
            config.operation_timeout,
            Arc::clone(&counters),
        ));
        let network = Network {
            addr,
            link,
            socket,
            counters,
            rng: StdRng::from_os_rng(),
            clock: Clock::default(),
        };
        Ok(Self::launch(&config, network))
    }

    /// Starts the node's tasks on a bound network: the production sockets,
    /// or a simulated network's.
    pub(crate) fn launch<S: Datagrams>(config: &ClusterConfig, network: Network<S>) -> Self {
        let Network {
            addr,
            link,
            socket,
            counters,
            rng,
            clock,
        } = network;
        let me: Arc<str> = config.node_id.as_str().into();
        let expected = config.expected_cluster_size();
        let blocked = Blocked::default();
        // Only a test build can cut the network; a production build's calls
        // go straight to the link.
        #[cfg(feature = "fault-injection")]
        let link: Arc<dyn Transport> = Arc::new(Partitioned::new(link, Arc::clone(&blocked)));
        let (view_tx, views) = watch::channel(Arc::new(View::new(vec![Member::new(&me, addr)], 0)));
        let started = clock.now();
        let inner = Arc::new(Inner {
            me: Arc::clone(&me),
            addr,
            copies: config.replication_factor,
            expected,
            quorum: config.quorum(),
            operation_timeout: config.operation_timeout,
            settle_time: config.settle_time,
            local: Local::new(config.max_capacity, clock.clone()),
            blocked: Arc::clone(&blocked),
            link: Peers::new(link, Arc::clone(&counters)),
            views,
            locks: (0..1024).map(|_| tokio::sync::Mutex::new(())).collect(),
            counters,
            rebalances: AtomicU64::new(0),
            suspect_timeout: config.suspect_timeout,
            lease: Arc::new(Lease::new(config.quorum(), config.suspect_timeout)),
            handovers: Handovers::default(),
            process: started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            suspects: Suspects::default(),
            clock: clock.clone(),
        });
        let handler: Weak<dyn Handler> = Arc::downgrade(&inner) as Weak<dyn Handler>;
        let server = inner.link.serve(handler);
        let (commands, command_rx) = mpsc::channel(1);
        let membership = tokio::spawn(membership::run(
            membership::Swim {
                socket,
                me: Ident::new(&me, addr, started),
                seeds: config.seeds.clone(),
                signer: Signer::derive(&config.secret, "gossip"),
                blocked,
                suspects: Arc::clone(&inner.suspects),
                config: membership::swim_config(
                    config.probe_period,
                    config.suspect_timeout,
                    expected,
                ),
                expected,
                rng,
            },
            view_tx,
            command_rx,
        ));
        let rebalancer = tokio::spawn(rebalance_loop(
            Arc::downgrade(&inner),
            inner.views.clone(),
            Arc::clone(&inner.handovers.wake),
            config.anti_entropy_interval,
            config.probe_period,
        ));
        let leases = tokio::spawn(lease_loop(
            Arc::downgrade(&inner),
            Arc::clone(&inner.lease),
            inner.views.clone(),
        ));
        Self {
            inner,
            _tasks: Arc::new(Tasks {
                handles: vec![
                    server,
                    membership.abort_handle(),
                    rebalancer.abort_handle(),
                    leases.abort_handle(),
                ],
                commands,
            }),
            prefix: config.key_prefix.as_str().into(),
        }
    }
}

/// What a node runs on: its address, its peer transport, its membership
/// socket, and the sources of chance and time. [`ClusterStore::start`] binds
/// real sockets; a simulation hands in its own.
pub(crate) struct Network<S> {
    pub(crate) addr: SocketAddr,
    pub(crate) link: Arc<dyn Transport>,
    pub(crate) socket: S,
    pub(crate) counters: Arc<Counters>,
    /// SWIM's random choices.
    pub(crate) rng: StdRng,
    pub(crate) clock: Clock,
}

/// Binds TCP and UDP on one port. Port 0 picks a port free for both.
pub(crate) async fn bind(listen: SocketAddr) -> Result<(TcpListener, UdpSocket), ClusterError> {
    let mut last = None;
    for _ in 0..if listen.port() == 0 { 20 } else { 1 } {
        let listener = match TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(source) => {
                return Err(ClusterError::Bind {
                    addr: listen,
                    source,
                })
            }
        };
        let tcp = listener.local_addr().map_err(|source| ClusterError::Bind {
            addr: listen,
            source,
        })?;
        match UdpSocket::bind(tcp).await {
            Ok(socket) => return Ok((listener, socket)),
            Err(err) => last = Some(err),
        }
    }
    Err(ClusterError::Bind {
        addr: listen,
        source: last.unwrap_or_else(|| io::Error::other("no port free for both TCP and UDP")),
    })
}

impl Inner {
    pub(crate) fn view(&self) -> Arc<View> {
        Arc::clone(&self.views.borrow())
    }

    pub(crate) fn check_quorum(
        &self,
        view: &View,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        if view.len() >= self.quorum {
            return Ok(());
        }
        Err(
            StoreError::new(ErrorKind::Unavailable, operation).with_source(format!(
            "this node sees {} of {} cluster nodes, fewer than the majority of {}: it is on the \
             minority side of a partition, or the cluster has not formed yet, so it serves nothing \
             rather than diverge",
            view.len(),
            self.expected,
            self.quorum
        )),
        )
    }

    /// [`check_quorum`](Self::check_quorum), and then the lease: what a
    /// node checks before it serves anything from its own copies. Waits
    /// (until `deadline`) for a lease renewal when the lease has lapsed,
    /// and returns the view to serve by: the one current once the lease
    /// holds, not the one before the wait. A node coming back from a
    /// partition learns its members one by one, and its lease returns only
    /// once it sees every member the confirming members see; a request
    /// that waited for that lease with the partial view it began with
    /// would place keys by that view, ask only the members it holds for a
    /// newer copy, and serve a copy the majority has superseded.
    pub(crate) async fn serving(
        &self,
        operation: &'static str,
        deadline: Instant,
    ) -> Result<Arc<View>, StoreError> {
        self.check_quorum(&self.view(), operation)?;
        self.lease.wait(deadline, operation).await?;
        let view = self.view();
        self.check_quorum(&view, operation)?;
        Ok(view)
    }

    /// This node's current [`Intake`]: which of its changes a hand-over
    /// to it must come after.
    pub(crate) fn intake(&self, view: &View) -> Intake {
        Intake {
            process: self.process,
            view: view.epoch,
            lease: self.lease.regains(),
        }
    }

    /// Whether this node's membership suspects the member named `name`.
    pub(crate) fn is_suspected(&self, name: &str) -> bool {
        self.suspects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|suspect| **suspect == *name)
    }

    pub(crate) fn others<'v>(
        &self,
        members: impl IntoIterator<Item = &'v Member>,
    ) -> Vec<&'v Member> {
        members
            .into_iter()
            .filter(|m| *m.name != *self.me)
            .collect()
    }

    #[cfg(feature = "fault-injection")]
    pub(crate) fn placement(&self, key: &str) -> Vec<String> {
        self.view()
            .replicas(key, self.copies)
            .iter()
            .map(|m| m.name.to_string())
            .collect()
    }

    pub(crate) fn lock(&self, key: &str) -> &tokio::sync::Mutex<()> {
        let stripe =
            usize::try_from(xxh3_64(key.as_bytes()) % self.locks.len() as u64).unwrap_or(0);
        &self.locks[stripe]
    }
}
