//! Questions to a Redis port over raw TCP: cheaper than a `redis-cli`
//! process per poll, and they give up after a timeout.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// How long a readiness probe waits for each step.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The pid of the Redis process that answers PING on `port`, if one does.
pub(super) fn serving_pid(port: u16) -> Option<u32> {
    let mut connection = connect(port, Instant::now() + PROBE_TIMEOUT)?;
    connection
        .get_mut()
        .write_all(b"PING\r\nINFO server\r\n")
        .ok()?;
    // Anything but PONG, such as -LOADING, means not ready yet.
    if read_line(&mut connection)? != "+PONG" {
        return None;
    }
    let info = read_bulk(&mut connection)?;
    let pid = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))?;
    pid.trim().parse().ok()
}

/// Whether `port` answers PING within `timeout`, connecting included.
pub(super) fn answers_ping(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    connect(port, deadline).is_some_and(|mut connection| {
        connection.get_mut().write_all(b"PING\r\n").is_ok()
            && read_line(&mut connection).is_some_and(|line| line == "+PONG")
    })
}

/// Connects to `port` on loopback, with reads that give up at `deadline`.
fn connect(port: u16, deadline: Instant) -> Option<BufReader<TcpStream>> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&address, time_left(deadline)?).ok()?;
    stream.set_read_timeout(Some(time_left(deadline)?)).ok()?;
    stream.set_write_timeout(Some(time_left(deadline)?)).ok()?;
    Some(BufReader::new(stream))
}

/// What is left until `deadline`; `None` when nothing is, since a zero
/// timeout means "wait forever" to the socket calls.
fn time_left(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

fn read_line(connection: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    connection.read_line(&mut line).ok()?;
    Some(line.trim_end().to_owned())
}

/// Reads a RESP bulk string: `$<length>\r\n<bytes>\r\n`.
fn read_bulk(connection: &mut BufReader<TcpStream>) -> Option<String> {
    let length: usize = read_line(connection)?.strip_prefix('$')?.parse().ok()?;
    let mut body = vec![0; length + 2];
    connection.read_exact(&mut body).ok()?;
    body.truncate(length);
    String::from_utf8(body).ok()
}
