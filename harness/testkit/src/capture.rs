//! An AF_PACKET capture of one interface: every frame it sends and receives, byte for byte.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, SockaddrLike, bind, recvfrom,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

use crate::outcome::{CaseResult, OrError};
use crate::packet::{ETH_HLEN, ETH_P_IP, IPPROTO_UDP};

/// One frame seen by the capture.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Sent by this host (`PACKET_OUTGOING`), rather than received.
    pub outgoing: bool,
    /// From the Ethernet header on.
    pub bytes: Vec<u8>,
}

impl Frame {
    /// The UDP source port of an Ethernet/IPv4/UDP frame, 0 for other frames.
    pub fn sport(&self) -> u16 {
        self.udp_port(0).unwrap_or(0)
    }

    /// The UDP destination port of an Ethernet/IPv4/UDP frame, 0 for other frames.
    pub fn dport(&self) -> u16 {
        self.udp_port(2).unwrap_or(0)
    }

    fn udp_port(&self, at: usize) -> Option<u16> {
        if self.bytes.get(12..14)? != ETH_P_IP.to_be_bytes() {
            return None;
        }
        let ip = self.bytes.get(ETH_HLEN..)?;
        if ip.len() < 20 || ip[9] != IPPROTO_UDP {
            return None;
        }
        let udp = usize::from(ip[0] & 0x0f) * 4;
        Some(u16::from_be_bytes([
            *ip.get(udp + at)?,
            *ip.get(udp + at + 1)?,
        ]))
    }
}

/// An AF_PACKET socket taking every frame of one interface, both directions.
pub struct Capture {
    fd: OwnedFd,
    ifindex: u32,
}

impl Capture {
    /// Opens the capture on `ifindex`; the calling thread must be in the interface's namespace.
    pub fn open(ifindex: u32) -> CaseResult<Self> {
        // ETH_P_ALL: a socket of one protocol sees only received frames, not sent ones.
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )
        .or_error("opening an AF_PACKET socket")?;
        // SAFETY: sockaddr_ll is plain data.
        let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        ll.sll_ifindex = ifindex as i32;
        let len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: a sockaddr_ll of the length passed.
        let addr = unsafe { LinkAddr::from_raw((&raw const ll).cast(), Some(len)) }
            .expect("a sockaddr_ll is a link address");
        bind(fd.as_raw_fd(), &addr).or_error("binding the AF_PACKET socket")?;
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 50_000))
            .or_error("setting SO_RCVTIMEO")?;
        Ok(Capture { fd, ifindex })
    }

    /// The next frame captured within `wait` (`None` when none came).
    pub fn next(&self, wait: Duration) -> CaseResult<Option<Frame>> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let mut buf = [0u8; 2048];
            let (n, from) = match recvfrom::<LinkAddr>(self.fd.as_raw_fd(), &mut buf) {
                Ok(got) => got,
                Err(Errno::EAGAIN) => continue,
                Err(e) => return Err(e).or_error("reading the AF_PACKET socket"),
            };
            match from {
                Some(from) if from.ifindex() == self.ifindex as usize => {
                    return Ok(Some(Frame {
                        outgoing: from.pkttype() == libc::PACKET_OUTGOING,
                        bytes: buf[..n].to_vec(),
                    }));
                }
                _ => continue,
            }
        }
        Ok(None)
    }
}

/// The hardware address of interface `dev` (SIOCGIFHWADDR); the calling thread must be in its
/// namespace.
pub fn hwaddr(dev: &str) -> CaseResult<[u8; 6]> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").or_error("opening a socket for ioctl")?;
    // SAFETY: ifreq is plain data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(dev.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: a valid socket and an ifreq naming the interface.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).or_error(&format!("SIOCGIFHWADDR {dev}"));
    }
    // SAFETY: SIOCGIFHWADDR filled in the sockaddr member.
    let data = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(std::array::from_fn(|i| data[i] as u8))
}
