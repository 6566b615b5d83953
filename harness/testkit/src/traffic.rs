//! Traffic a test makes from wherever it runs (a forked child in a cgroup or namespace, see
//! [`crate::child`]): plain std::net calls, no allocation, results as plain data.

use std::net::UdpSocket;
use std::time::Duration;

use nix::errno::Errno;

use crate::errno::io as errno;

/// How long a datagram sent over loopback may take to be received.
const ARRIVAL: Duration = Duration::from_secs(10);

/// Sends `count` datagrams of `len` bytes (at most 1024) from one new UDP socket to another over
/// 127.0.0.1 (the namespace's loopback must be up) and receives each: the sending socket makes
/// exactly `count` packets of `len` + 28 bytes (IPv4 and UDP headers) on egress.
pub fn udp_to_self(count: usize, len: usize) -> Result<(), Errno> {
    let rx = errno(UdpSocket::bind("127.0.0.1:0"))?;
    let tx = errno(UdpSocket::bind("127.0.0.1:0"))?;
    errno(rx.set_read_timeout(Some(ARRIVAL)))?;
    let to = errno(rx.local_addr())?;
    let mut buf = [0u8; 1024];
    for _ in 0..count {
        errno(tx.send_to(&buf[..len], to))?;
        errno(rx.recv(&mut buf))?;
    }
    Ok(())
}
