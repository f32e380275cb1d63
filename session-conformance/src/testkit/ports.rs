//! Free loopback ports.
//!
//! A port found free may be taken by someone else before the server binds
//! it; the servers notice ("Address already in use") and retry on a new one.

use std::net::{Ipv4Addr, TcpListener};

/// A Redis cluster node also listens on port + 10000, its cluster bus.
const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// How many ports [`free_port_with_bus`] looks at before giving up.
const BUS_ATTEMPTS: usize = 100;

/// A loopback port that nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    port_of(&bind_any_port())
}

/// A free port whose cluster bus port, port + 10000, is free as well.
pub(crate) fn free_port_with_bus() -> u16 {
    (0..BUS_ATTEMPTS)
        .find_map(|_| {
            // Held while the bus port is tried, so the pair is checked together.
            let listener = bind_any_port();
            let port = port_of(&listener);
            let bus = port.checked_add(CLUSTER_BUS_OFFSET)?;
            TcpListener::bind((Ipv4Addr::LOCALHOST, bus))
                .is_ok()
                .then_some(port)
        })
        .unwrap_or_else(|| {
            panic!("no free loopback port with a free cluster bus port in {BUS_ATTEMPTS} tries")
        })
}

fn bind_any_port() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|err| panic!("cannot bind a loopback port: {err}"))
}

fn port_of(listener: &TcpListener) -> u16 {
    listener
        .local_addr()
        .unwrap_or_else(|err| panic!("a bound listener has no address: {err}"))
        .port()
}
