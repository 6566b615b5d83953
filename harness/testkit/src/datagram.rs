//! One datagram received with the IP-level control messages its socket asked for
//! (`IP_RECVTTL`, `IP_RECVTOS`, `IPV6_RECVRTHDR`): how programs that rewrite headers are seen
//! from the receiving socket.

use std::io::IoSliceMut;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};

use crate::outcome::CaseResult;

/// A datagram and the control messages that came with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Datagram {
    pub payload: Vec<u8>,
    /// `IP_TTL`, where the socket set `IP_RECVTTL`.
    pub ttl: Option<i32>,
    /// `IP_TOS`, where the socket set `IP_RECVTOS`.
    pub tos: Option<u8>,
    /// The IPv6 routing header, where the socket set `IPV6_RECVRTHDR`.
    pub ipv6_rthdr: Option<Vec<u8>>,
}

impl Datagram {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// The next datagram on `sock` within `wait` (`None` when none came), with its control messages.
pub fn receive(sock: &UdpSocket, wait: Duration) -> CaseResult<Option<Datagram>> {
    sock.set_read_timeout(Some(wait))?;
    let mut buf = vec![0u8; 65536];
    let mut cmsg = vec![0u8; 512];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = match recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    ) {
        Ok(msg) => msg,
        Err(Errno::EAGAIN) => return Ok(None),
        Err(e) => return Err(std::io::Error::from(e).into()),
    };
    let mut datagram = Datagram::default();
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4Ttl(ttl) => datagram.ttl = Some(ttl),
            ControlMessageOwned::Ipv4Tos(tos) => datagram.tos = Some(tos),
            ControlMessageOwned::Unknown(u)
                if u.cmsg_header.cmsg_level == libc::IPPROTO_IPV6
                    && u.cmsg_header.cmsg_type == libc::IPV6_RTHDR =>
            {
                datagram.ipv6_rthdr = Some(u.data_bytes)
            }
            _ => {}
        }
    }
    let len = msg.bytes;
    buf.truncate(len);
    datagram.payload = buf;
    Ok(Some(datagram))
}
