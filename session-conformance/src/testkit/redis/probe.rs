//! Questions to a Redis port over raw TCP: cheaper than a `redis-cli`
//! process per poll, and they give up after a timeout.

use std::{
    io::{BufReader, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use crate::testkit::{
    tcp::{connect, read_line},
    TlsFiles,
};

/// How long a readiness probe waits for each step.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The pid of the Redis process that answers PING on `port`, if one does.
pub(super) fn serving_pid(port: u16) -> Option<u32> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut connection = connect(port, deadline).ok()?;
    connection
        .get_mut()
        .write_all(b"PING\r\nINFO server\r\n")
        .ok()?;
    // Anything but PONG, such as -LOADING, means not ready yet.
    if read_line(&mut connection, deadline).ok()? != "+PONG" {
        return None;
    }
    let info = read_bulk(&mut connection, deadline)?;
    let pid = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))?;
    pid.trim().parse().ok()
}

/// [`serving_pid`] for a server in TLS mode, asked through `redis-cli`:
/// a process per poll costs a few milliseconds, and spares the kit a TLS
/// client of its own.
pub(super) fn serving_pid_tls(port: u16, files: &TlsFiles) -> Option<u32> {
    let options = super::tls_cli_options(port, files);
    let mut args: Vec<&str> = options.iter().map(String::as_str).collect();
    args.extend(["INFO", "server"]);
    let info = super::redis_cli(&args, PROBE_TIMEOUT).ok()?;
    let pid = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))?;
    pid.trim().parse().ok()
}

/// Whether `port` answers PING within `timeout`, connecting included.
pub(super) fn answers_ping(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    connect(port, deadline).is_ok_and(|mut connection| {
        connection.get_mut().write_all(b"PING\r\n").is_ok()
            && read_line(&mut connection, deadline).is_ok_and(|line| line == "+PONG")
    })
}

/// Reads a RESP bulk string: `$<length>\r\n<bytes>\r\n`.
fn read_bulk(connection: &mut BufReader<TcpStream>, deadline: Instant) -> Option<String> {
    let header = read_line(connection, deadline).ok()?;
    let length: usize = header.strip_prefix('$')?.parse().ok()?;
    let mut body = vec![0; length + 2];
    connection.read_exact(&mut body).ok()?;
    body.truncate(length);
    String::from_utf8(body).ok()
}
