//! AF_PACKET captures of one interface: the frames that crossed it, byte for byte, both directions,
//! as the kernel's packet taps see them (on receive: after a native XDP program, before tc).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::outcome::{CaseResult, OrError};
use crate::packet::{ETH_HLEN, ETH_P_IP, IPPROTO_UDP};

/// One captured frame.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Sent by this host (`PACKET_OUTGOING`), rather than received.
    pub outgoing: bool,
    /// From the Ethernet header on.
    pub bytes: Vec<u8>,
}

impl Frame {
    /// The UDP header of an Ethernet/IPv4/UDP frame.
    fn udp(&self) -> Option<&[u8]> {
        if self.bytes.get(12..14)? != ETH_P_IP.to_be_bytes() {
            return None;
        }
        let ip = self.bytes.get(ETH_HLEN..)?;
        if ip.len() < 20 || ip[9] != IPPROTO_UDP {
            return None;
        }
        ip.get(usize::from(ip[0] & 0x0f) * 4..)?.get(..8)
    }

    /// The UDP source port, 0 for other frames.
    pub fn sport(&self) -> u16 {
        self.udp().map_or(0, |u| u16::from_be_bytes([u[0], u[1]]))
    }

    /// The UDP destination port, 0 for other frames.
    pub fn dport(&self) -> u16 {
        self.udp().map_or(0, |u| u16::from_be_bytes([u[2], u[3]]))
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
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).or_error("opening an AF_PACKET socket");
        }
        // SAFETY: `raw` is a fresh, valid fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: a valid socket and a sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).or_error("binding the AF_PACKET socket");
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: a valid socket and a timeval of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).or_error("setting SO_RCVTIMEO");
        }
        Ok(Capture { fd, ifindex })
    }

    /// The next frame captured within `wait` (`None` when none came), for
    /// [`crate::observe::until_sentinel`].
    pub fn next(&self, wait: Duration) -> CaseResult<Option<Frame>> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let mut buf = [0u8; 2048];
            // SAFETY: sockaddr_ll is plain data.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: a valid socket, a buffer and an address of the sizes passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    continue;
                }
                return Err(e).or_error("reading the AF_PACKET socket");
            }
            if from.sll_ifindex as u32 != self.ifindex {
                continue;
            }
            return Ok(Some(Frame {
                outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
                bytes: buf[..n as usize].to_vec(),
            }));
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

/// Bytes as lowercase hex, for comparing and recording frames.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
