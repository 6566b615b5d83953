//! cgroup_bind (`programs/src/bpf/cgroup_bind.bpf.c`): the bind(2) hooks of the test's own cgroup
//! v2 child that `cgroup_sock_addr` (an IPv4 port rewrite, BPF_CGROUP_INET4_BIND) leaves out.
//! Each case runs in a fresh network namespace (fixed ports cannot collide) with one program
//! attached; a child forked into the cgroup and the namespace binds UDP sockets and reports what
//! bind(2) answered and the address getsockname(2) names; the test then binds from outside the
//! cgroup in the same namespace.
//!
//! - `bind6_rewrites_address_and_port` (BPF_CGROUP_INET6_BIND, before the bind): a bind to
//!   `[::]:`[`FROM`] ends up on `[::1]:`[`TO`], a bind to [`DENY`] fails with EPERM, one to
//!   [`OTHER`] binds as asked; outside the cgroup `[::]:`[`FROM`] binds as asked.
//! - `post_bind_refuses_bound_port::{v4,v6}` (BPF_CGROUP_INET{4,6}_POST_BIND, after the port is
//!   taken): a bind to [`DENY`] fails with EPERM and gives the port back: a second socket's bind
//!   to it reaches the program again (EPERM, not EADDRINUSE), and the first socket then binds to
//!   port 0: it succeeds and the program saw the address and the port the kernel chose, which
//!   getsockname names; outside the cgroup [`DENY`] binds and the program does not run. Before
//!   5.17 (`attach_type.cgroup_post_bind_puts_port`) the refused bind kept its port: the second
//!   socket's bind fails with EADDRINUSE before the program runs, the first socket's second bind
//!   with EINVAL.
//!
//! The program's counters are exact.

use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::ProgramType;
use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, bind, socket};
use programs::cgroup_bind::{CgroupBindSkel, CgroupBindSkelBuilder};
use rstest::rstest;
use testkit::observe::volatile;
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, attach_type, child, floors, probe};

const BIND6: &str = "attach_type.cgroup_inet6_bind";
const POST_BIND4: &str = "attach_type.cgroup_inet4_post_bind";
const POST_BIND6: &str = "attach_type.cgroup_inet6_post_bind";
/// From this release a refused bind gives its port back.
const PUTS_PORT: &str = "attach_type.cgroup_post_bind_puts_port";

/// bind6: a bind to this port is rewritten to [::1]:[`TO`].
const FROM: u16 = 7101;
const TO: u16 = 7102;
/// Refused by every program.
const DENY: u16 = 7103;
/// Bound as asked.
const OTHER: u16 = 7104;

/// Opens and loads the object with the ports set (each case attaches one of its programs).
fn load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<CgroupBindSkel<'obj>> {
    probe::prog_type(ProgramType::CgroupSockAddr)?;
    probe::prog_type(ProgramType::CgroupSock)?;
    case.open_load(CgroupBindSkelBuilder::default(), object, |open| {
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.from_port = FROM;
        rodata.to_port = TO;
        rodata.deny_port = DENY;
    })
}

/// Binds a UDP socket to `addr`: the address getsockname then names, or bind's errno.
fn bind_udp(addr: SocketAddr) -> Result<SocketAddr, Errno> {
    child::errno(UdpSocket::bind(addr).and_then(|s| s.local_addr()))
}

/// What a bind to [`DENY`] answered, the port getsockname then names, what a second socket's bind
/// to [`DENY`] answered, and what a bind to port 0 of the first socket then bound.
#[derive(Clone, Copy, Debug)]
struct Rebound {
    denied: Result<(), Errno>,
    port_after: Result<u16, Errno>,
    other: Result<(), Errno>,
    then: Result<SocketAddr, Errno>,
}

/// In the child: a UDP socket bound to `ip`:[`DENY`], a second one too, then the first to `ip`:0.
fn deny_then_ephemeral(ip: IpAddr) -> Result<Rebound, Errno> {
    let family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    let to = |port| SockaddrStorage::from(SocketAddr::new(ip, port));
    let denied = bind(fd.as_raw_fd(), &to(DENY));
    let sock = UdpSocket::from(fd);
    let port_after = child::errno(sock.local_addr()).map(|a| a.port());
    let second = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    let other = bind(second.as_raw_fd(), &to(DENY));
    let then = bind(sock.as_raw_fd(), &to(0)).and_then(|()| child::errno(sock.local_addr()));
    Ok(Rebound {
        denied,
        port_after,
        other,
        then,
    })
}

#[test]
fn bind6_rewrites_address_and_port() {
    Case::run(ProgramType::CgroupSockAddr, |case| {
        let ns = NetNs::new()?;
        let mut object = MaybeUninit::uninit();
        let skel = load(case, &mut object)?;
        let cg = Cgroup::new()?;
        let _link = attach_type::libbpf(BIND6, "attaching cgroup/bind6", || {
            skel.progs
                .bind6_rewrite
                .attach_cgroup(cg.as_fd().as_raw_fd())
        })?;

        let any = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        let lo = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let asked = [
            SocketAddr::new(any, FROM),
            SocketAddr::new(lo, DENY),
            SocketAddr::new(lo, OTHER),
        ];
        let bound = child::in_cgroup(&cg)
            .netns(&ns)
            .run(|| asked.map(bind_udp))?;
        case.detail("child", format!("{bound:?}"));
        assert_eq!(
            bound,
            [Ok(SocketAddr::new(lo, TO)), Err(Errno::EPERM), Ok(asked[2])],
            "getsockname (or bind's errno) after binding {asked:?} inside the cgroup"
        );

        let outside = {
            let _inside = ns.enter()?;
            bind_udp(asked[0])
        };
        case.detail("outside", format!("{outside:?}"));
        assert_eq!(
            outside,
            Ok(asked[0]),
            "binding {} outside the cgroup",
            asked[0]
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        assert_eq!(
            (volatile(&bss.bind6_rewritten), volatile(&bss.bind6_denied)),
            (1, 1),
            "the program's counters (rewritten, denied)"
        );
        Ok(())
    });
}

#[rstest]
#[case::v4(IpAddr::V4(Ipv4Addr::LOCALHOST))]
#[case::v6(IpAddr::V6(Ipv6Addr::LOCALHOST))]
fn post_bind_refuses_bound_port(#[case] ip: IpAddr) {
    Case::run(ProgramType::CgroupSock, |case| {
        let ns = NetNs::new()?;
        let mut object = MaybeUninit::uninit();
        let skel = load(case, &mut object)?;
        let cg = Cgroup::new()?;
        let (prog, id) = if ip.is_ipv4() {
            (&skel.progs.post_bind4_check, POST_BIND4)
        } else {
            (&skel.progs.post_bind6_check, POST_BIND6)
        };
        let _link = attach_type::libbpf(id, "attaching the post-bind program", || {
            prog.attach_cgroup(cg.as_fd().as_raw_fd())
        })?;

        let rebound = child::in_cgroup(&cg)
            .netns(&ns)
            .run(|| deny_then_ephemeral(ip))?;
        case.detail("child", format!("{rebound:?}"));
        let rebound = rebound.map_err(|e| {
            CaseError::Fail(anyhow::anyhow!("creating a UDP socket in the cgroup: {e}"))
        })?;
        assert_eq!(
            rebound.denied,
            Err(Errno::EPERM),
            "binding {ip}:{DENY} inside the cgroup"
        );
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let seen = if ip.is_ipv4() {
            (
                IpAddr::V4(Ipv4Addr::from(u32::from_be(volatile(&bss.post_bind4_ip)))),
                volatile(&bss.post_bind4_port),
            )
        } else {
            let words = volatile(&bss.post_bind6_ip);
            let mut octets = [0u8; 16];
            for (chunk, word) in octets.chunks_mut(4).zip(words) {
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            (
                IpAddr::V6(Ipv6Addr::from(octets)),
                volatile(&bss.post_bind6_port),
            )
        };
        let outside = {
            let _inside = ns.enter()?;
            bind_udp(SocketAddr::new(ip, DENY))
        };
        let counters = (
            volatile(&bss.post_bind_refused),
            volatile(&bss.post_bind_allowed),
        );
        case.detail("program_saw", format!("{seen:?}"));
        case.detail("outside", format!("{outside:?}"));

        // getsockname reports the port only once the bind completed.
        assert_eq!(
            rebound.port_after,
            Ok(0),
            "the socket's port after the refused bind"
        );
        if !floors::reached(PUTS_PORT) {
            // The refused bind kept its port: a second socket's bind fails before the program
            // runs, and the first socket is bound.
            assert_eq!(
                (rebound.other, rebound.then, seen, counters),
                (
                    Err(Errno::EADDRINUSE),
                    Err(Errno::EINVAL),
                    (ip, u32::from(DENY)),
                    (1, 0)
                ),
                "before {} (the port kept): a second socket's bind of {ip}:{DENY}, a second bind \
                 of the first to port 0, what the program saw, the counters (refused, allowed)",
                floors::since(PUTS_PORT).unwrap_or("?")
            );
            assert_eq!(
                outside,
                Ok(SocketAddr::new(ip, DENY)),
                "binding {ip}:{DENY} outside"
            );
            return Ok(());
        }
        assert_eq!(
            rebound.other,
            Err(Errno::EPERM),
            "a second socket's bind of {ip}:{DENY} (the port free again, the program refuses)"
        );
        let chosen = rebound.then.map_err(|e| {
            CaseError::Fail(anyhow::anyhow!(
                "binding the same socket to {ip}:0 after the refusal: {e}"
            ))
        })?;
        assert_eq!(chosen.ip(), ip, "the address bound to port 0");
        assert_eq!(
            seen,
            (ip, u32::from(chosen.port())),
            "the address and port the program saw last (the kernel's choice for port 0)"
        );
        assert_eq!(
            outside,
            Ok(SocketAddr::new(ip, DENY)),
            "binding {ip}:{DENY} outside"
        );
        assert_eq!(
            counters,
            (2, 1),
            "the program's counters (refused, allowed)"
        );
        Ok(())
    });
}
