//! Loopback TCP streams for the socket-map types (sk_skb, sk_msg): connected pairs, reads with a
//! deadline and byte-string comparison.

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

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

/// Reads from `sock` until `len` bytes arrived, the peer closed, or `timeout` passed.
pub fn read_len(sock: &mut TcpStream, len: usize, timeout: Duration) -> io::Result<Vec<u8>> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while got.len() < len && Instant::now() < deadline {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// What arrives on `sock` within 300 ms (for a socket that should stay silent).
pub fn read_stray(sock: &mut TcpStream) -> io::Result<Vec<u8>> {
    read_len(sock, usize::MAX, Duration::from_millis(300))
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
