//! Loopback TCP streams for the socket-map types (sk_skb, sk_msg): connected pairs, reads up to a
//! sentinel and byte-string comparison.
//!
//! "Nothing else arrived" is shown by order, not by waiting: the test sends a sentinel last on the
//! path it checks, and a TCP stream keeps its order, so what a socket received before the sentinel
//! is everything the earlier sends put on that path.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// A connected loopback pair on `listener`: (the client, the listener's accepted end).
pub fn tcp_pair(listener: &TcpListener) -> io::Result<(TcpStream, TcpStream)> {
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, peer) = listener.accept()?;
    if peer != client.local_addr()? {
        return Err(io::Error::other(format!(
            "accepted {peer}, not the client {}",
            client.local_addr()?
        )));
    }
    Ok((client, server))
}

/// A TCP connection from `local` (a chosen source address and port) to `to`, the connect bounded
/// to 2 s (SO_SNDTIMEO).
pub fn connect_from(local: SocketAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let family = if local.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = nix::sys::socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    nix::sys::socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(local))?;
    setsockopt(&fd, sockopt::SendTimeout, &TimeVal::new(2, 0))?;
    nix::sys::socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(to))?;
    Ok(TcpStream::from(fd))
}

/// What `sock` holds now, read without waiting: for a socket whose path a sentinel on another
/// socket has shown to be settled.
pub fn read_queued(sock: &mut TcpStream) -> io::Result<Vec<u8>> {
    sock.set_nonblocking(true)?;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let result = loop {
        match sock.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    sock.set_nonblocking(false)?;
    result.map(|()| got)
}

/// Reads `sock` until `sentinel` arrived and returns the bytes before it. `timeout` is for the
/// sentinel, which must arrive: its expiry, the peer closing first and bytes behind the sentinel
/// (nothing is sent after it) are errors naming `what` (the sentinel and its path).
pub fn read_to_sentinel(
    sock: &mut TcpStream,
    sentinel: &[u8],
    what: &str,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    assert!(!sentinel.is_empty(), "an empty sentinel");
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{what} did not arrive within {timeout:?} ({} bytes came before)",
                    got.len()
                ),
            ));
        }
        sock.set_read_timeout(Some(left))?;
        let n = match sock.read(&mut buf) {
            Ok(0) => {
                return Err(io::Error::other(format!(
                    "the peer closed before {what} arrived ({} bytes came)",
                    got.len()
                )));
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        // The sentinel may straddle the previous read.
        let from = got.len().saturating_sub(sentinel.len() - 1);
        got.extend_from_slice(&buf[..n]);
        if let Some(at) = got[from..]
            .windows(sentinel.len())
            .position(|w| w == sentinel)
        {
            let at = from + at;
            let behind = got.len() - at - sentinel.len();
            if behind > 0 {
                return Err(io::Error::other(format!(
                    "{behind} bytes arrived behind {what}"
                )));
            }
            got.truncate(at);
            return Ok(got);
        }
    }
}

/// Asserts equal byte strings, reported by length and first difference (not by dumping them).
pub fn assert_bytes_eq(got: &[u8], expected: &[u8], what: &str) {
    let first_diff = got.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        got.len() == expected.len() && first_diff.is_none(),
        "{what}: got {} bytes, expected {}; first difference at {:?}",
        got.len(),
        expected.len(),
        first_diff
    );
}
