//! The socket options (and queries) nix has no typed form for, in one place: attaching BPF
//! programs to sockets, IPv6 routing headers, `TCP_INFO`, `SIOCOUTQ`. (The others the suite uses
//! are nix's `nix::sys::socket::sockopt`: `Mark`, `KeepAlive`, `TcpKeepIdle`, `IpRecvTos`, …)

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

/// Attaches the socket filter `prog` to `sock` (`SO_ATTACH_BPF`).
pub fn attach_filter(sock: &impl AsFd, prog: &impl AsFd) -> nix::Result<()> {
    set_fd(sock, libc::SO_ATTACH_BPF, prog)
}

/// Attaches the `sk_reuseport` program `prog` to the reuseport group of `sock`
/// (`SO_ATTACH_REUSEPORT_EBPF`).
pub fn attach_reuseport(sock: &impl AsFd, prog: &impl AsFd) -> nix::Result<()> {
    set_fd(sock, libc::SO_ATTACH_REUSEPORT_EBPF, prog)
}

/// Makes the UDP socket `sock` send without checksums (`SO_NO_CHECK`): a frame redirected by XDP
/// leaves as an `xdp_frame` without the checksum-offload state of the skb it was, so a partial
/// checksum would reach the receiver unfinished and be dropped there.
pub fn no_udp_checksum(sock: &impl AsFd) -> nix::Result<()> {
    let on: libc::c_int = 1;
    set(sock, libc::SOL_SOCKET, libc::SO_NO_CHECK, &on.to_ne_bytes())
}

/// Makes every later datagram of `sock` carry the IPv6 routing header `header` (`IPV6_RTHDR`).
pub fn ipv6_rthdr(sock: &impl AsFd, header: &[u8]) -> nix::Result<()> {
    set(sock, libc::IPPROTO_IPV6, libc::IPV6_RTHDR, header)
}

/// Asks for the routing header of each datagram `sock` receives, as a control message
/// (`IPV6_RECVRTHDR`).
pub fn ipv6_recv_rthdr(sock: &impl AsFd) -> nix::Result<()> {
    let on: libc::c_int = 1;
    set(
        sock,
        libc::IPPROTO_IPV6,
        libc::IPV6_RECVRTHDR,
        &on.to_ne_bytes(),
    )
}

/// The kernel's `struct tcp_info` of `sock` (`TCP_INFO`).
pub fn tcp_info(sock: &impl AsFd) -> nix::Result<libc::tcp_info> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is valid for writes of `len` bytes; the kernel writes at most that.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    Errno::result(rc)?;
    // SAFETY: zeroed (a valid tcp_info: plain integers), then partly written by the kernel.
    Ok(unsafe { info.assume_init() })
}

nix::ioctl_read_bad!(siocoutq, libc::TIOCOUTQ, libc::c_int);

/// The bytes written to the TCP socket `sock` that its peer has not acknowledged yet
/// (`SIOCOUTQ`).
pub fn unacked(sock: &impl AsFd) -> nix::Result<libc::c_int> {
    let mut n = 0;
    // SAFETY: SIOCOUTQ writes one int to `n`.
    unsafe { siocoutq(sock.as_fd().as_raw_fd(), &mut n) }?;
    Ok(n)
}

/// A `SOL_SOCKET` option whose value is a file descriptor (an int).
fn set_fd(sock: &impl AsFd, name: i32, fd: &impl AsFd) -> nix::Result<()> {
    let fd: libc::c_int = fd.as_fd().as_raw_fd();
    set(sock, libc::SOL_SOCKET, name, &fd.to_ne_bytes())
}

fn set(sock: &impl AsFd, level: i32, name: i32, value: &[u8]) -> nix::Result<()> {
    // SAFETY: a valid socket and a buffer of the length passed, read during the call only.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_fd().as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    Errno::result(rc).map(drop)
}
