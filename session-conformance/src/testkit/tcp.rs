//! Raw TCP to a server on a loopback port: cheaper than a client process per
//! poll, and every step gives up at a deadline, so a paused server costs a
//! timeout, never a hang.

use std::{
    io::{self, BufRead, BufReader, ErrorKind},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// Connects to `port` on `127.0.0.1`, with writes that give up at
/// `deadline`; reads get theirs from [`read_line`].
pub(crate) fn connect(port: u16, deadline: Instant) -> io::Result<BufReader<TcpStream>> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&address, time_left(deadline)?)?;
    stream.set_read_timeout(Some(time_left(deadline)?))?;
    stream.set_write_timeout(Some(time_left(deadline)?))?;
    Ok(BufReader::new(stream))
}

/// Reads one line, without its `\r\n`, by `deadline`. The end of the stream
/// is an error, so that a reader looping over lines cannot spin on it.
pub(crate) fn read_line(
    connection: &mut BufReader<TcpStream>,
    deadline: Instant,
) -> io::Result<String> {
    // Renewed for each line, so a long reply is bounded as a whole.
    connection
        .get_ref()
        .set_read_timeout(Some(time_left(deadline)?))?;
    let mut line = String::new();
    if connection.read_line(&mut line)? == 0 {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end().to_owned())
}

/// Whether `error` is a socket timeout: Linux reports an expired read
/// timeout as `WouldBlock`.
pub(crate) fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// What is left until `deadline`; an error when nothing is, since a zero
/// timeout means "wait forever" to the socket calls.
fn time_left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}
