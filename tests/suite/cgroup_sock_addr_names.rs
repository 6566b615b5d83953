//! cgroup_sock_addr, the names a cgroup's sockets are shown (`programs/src/bpf/
//! cgroup_sock_addr_names.bpf.c`): a virtual service address (TEST-NET, unroutable in the case's
//! namespace) that connect/sendmsg send to a loopback service, and that getpeername (5.8+) and
//! recvmsg (5.2+) show in place of the service; getsockname (5.8+) shows one local address as
//! another.
//!
//! Each case runs in a fresh network namespace (only `lo`) and a fresh cgroup v2 child; the test
//! binds the service sockets (port 0) and hands their ports to the program through .rodata; a
//! child forked into the cgroup and the namespace makes the socket calls and reports what the
//! kernel said, exactly:
//! - `names4_show_virtual_service` / `names6_…`: a TCP socket bound to [`LOCAL_PORT`] connects to
//!   the virtual address; the service accepts it (and sees the real local address), the child's
//!   `getpeername` shows the virtual address and `getsockname` the alias. A second connection from
//!   [`OTHER_LOCAL_PORT`] to another listener shows both real addresses. From outside the cgroup
//!   the virtual address is unreachable (ENETUNREACH).
//! - `recvmsg4_shows_virtual_source` / `recvmsg6_…`: an unconnected UDP `sendto` to the virtual
//!   address reaches the service, and the child's `recvfrom` of the service's answer names the
//!   virtual address as its source; a datagram exchange with another socket names that socket.
//!   From outside the cgroup a datagram to the virtual address is unroutable (ENETUNREACH).
//!
//! The program's counters must hold exactly the rewrites each case provokes.

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{Link, ProgramAttachType, ProgramMut, ProgramType};
use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, socket};
use programs::cgroup_sock_addr_names::{CgroupSockAddrNamesSkel, CgroupSockAddrNamesSkelBuilder};
use testkit::child::{ARRIVAL, TIMEOUT as WAIT, Text, succeeded};
use testkit::sock_addr::{inside, probe_attach_type, serve_once};
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, OrError, child};

/// The virtual service port.
const VIRTUAL_PORT: u16 = 8080;
/// The child's local port that getsockname shows as [`ALIAS_PORT`] (the namespace is the case's
/// own: fixed ports cannot collide).
const LOCAL_PORT: u16 = 6101;
const ALIAS_PORT: u16 = 6102;
/// The local port of the control connection.
const OTHER_LOCAL_PORT: u16 = 6103;

/// One address family's addresses.
#[derive(Clone, Copy)]
struct Family {
    loopback: IpAddr,
    /// The virtual service address (TEST-NET-1, 2001:db8::1).
    virtual_ip: IpAddr,
    /// What getsockname shows for the local address (TEST-NET-1 .2, 2001:db8::2).
    alias_ip: IpAddr,
}

const V4: Family = Family {
    loopback: IpAddr::V4(Ipv4Addr::LOCALHOST),
    virtual_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    alias_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
};

const V6: Family = Family {
    loopback: IpAddr::V6(Ipv6Addr::LOCALHOST),
    virtual_ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    alias_ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
};

impl Family {
    fn virtual_addr(self) -> SocketAddr {
        SocketAddr::new(self.virtual_ip, VIRTUAL_PORT)
    }

    fn is_v4(self) -> bool {
        self.loopback.is_ipv4()
    }
}

/// An IPv4 address in host order, an IPv6 one as network-order words (the .rodata layouts).
fn ip4(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(ip) => ip.to_bits(),
        IpAddr::V6(_) => 0,
    }
}

fn ip6(ip: IpAddr) -> [u32; 4] {
    match ip {
        IpAddr::V6(ip) => {
            let o = ip.octets();
            std::array::from_fn(|i| u32::from_ne_bytes(o[4 * i..4 * i + 4].try_into().unwrap()))
        }
        IpAddr::V4(_) => [0; 4],
    }
}

/// Probes every attach type of the object (the skeleton loads all its programs), opens it with
/// the service port and the family's addresses, loads it (recorded and snapshotted).
fn load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    f: Family,
    service_port: u16,
) -> CaseResult<CgroupSockAddrNamesSkel<'obj>> {
    use ProgramAttachType::*;
    for (id, attach) in [
        ("attach_type.cgroup_inet_connect", CgroupInet4Connect),
        ("attach_type.cgroup_inet_connect", CgroupInet6Connect),
        ("attach_type.cgroup_udp4_sendmsg", CgroupUdp4Sendmsg),
        ("attach_type.cgroup_udp6_sendmsg", CgroupUdp6Sendmsg),
        ("attach_type.cgroup_udp4_recvmsg", CgroupUdp4Recvmsg),
        ("attach_type.cgroup_udp6_recvmsg", CgroupUdp6Recvmsg),
        (
            "attach_type.cgroup_inet4_getpeername",
            CgroupInet4Getpeername,
        ),
        (
            "attach_type.cgroup_inet6_getpeername",
            CgroupInet6Getpeername,
        ),
        (
            "attach_type.cgroup_inet4_getsockname",
            CgroupInet4Getsockname,
        ),
        (
            "attach_type.cgroup_inet6_getsockname",
            CgroupInet6Getsockname,
        ),
    ] {
        probe_attach_type(id, attach)?;
    }
    case.open_load(CgroupSockAddrNamesSkelBuilder::default(), object, |open| {
        let r = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        r.virtual_port = VIRTUAL_PORT;
        r.service_port = service_port;
        r.local_port = LOCAL_PORT;
        r.alias_port = ALIAS_PORT;
        if f.is_v4() {
            r.virtual_ip4 = ip4(f.virtual_ip);
            r.alias_ip4 = ip4(f.alias_ip);
        } else {
            r.virtual_ip6 = ip6(f.virtual_ip);
            r.alias_ip6 = ip6(f.alias_ip);
        }
    })
}

/// Attaches `progs` to `cg`.
fn attach_all(progs: &[&ProgramMut<'_>], cg: &Cgroup) -> CaseResult<Vec<Link>> {
    progs
        .iter()
        .map(|p| Ok(p.attach_cgroup(cg.as_fd().as_raw_fd())?))
        .collect()
}

/// The counters: redirected, shown, aliased.
fn counters(skel: &CgroupSockAddrNamesSkel<'_>) -> (u64, u64, u64) {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    (bss.redirected, bss.shown, bss.aliased)
}

/// What the child's TCP connection saw: `getpeername`, `getsockname`, the answer.
#[derive(Clone, Copy, Debug)]
struct Connected {
    peer: SocketAddr,
    local: SocketAddr,
    reply: Text,
}

/// In the child: a TCP socket bound to `local` connects to `to`, sends "hello", reads the answer;
/// then `getpeername` and `getsockname`, once each.
fn tcp_from(local: SocketAddr, to: SocketAddr) -> Result<Connected, Errno> {
    let family = if to.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(local))?;
    connect(fd.as_raw_fd(), &SockaddrStorage::from(to))?;
    let mut s = TcpStream::from(fd);
    child::errno(s.set_read_timeout(Some(ARRIVAL)))?;
    child::errno(s.write_all(b"hello"))?;
    let reply = Text::read(|buf| s.read(buf))?;
    Ok(Connected {
        peer: child::errno(s.peer_addr())?,
        local: child::errno(s.local_addr())?,
        reply,
    })
}

/// The connect cases: see the module doc.
fn names_show_virtual(case: &mut Case, f: Family) -> CaseResult {
    let ns = NetNs::new()?;
    let (service, other) = inside(&ns, || {
        Ok((
            TcpListener::bind((f.loopback, 0))?,
            TcpListener::bind((f.loopback, 0))?,
        ))
    })?;
    let service_addr = service.local_addr().or_error("local_addr")?;
    let other_addr = other.local_addr().or_error("local_addr")?;
    case.detail("service", service_addr.to_string());
    case.detail("other", other_addr.to_string());

    let mut object = MaybeUninit::uninit();
    let skel = load(case, &mut object, f, service_addr.port())?;
    let cg = Cgroup::new()?;
    let p = &skel.progs;
    let _links = if f.is_v4() {
        attach_all(
            &[
                &p.connect4_to_service,
                &p.getpeername4_virtual,
                &p.getsockname4_alias,
            ],
            &cg,
        )?
    } else {
        attach_all(
            &[
                &p.connect6_to_service,
                &p.getpeername6_virtual,
                &p.getsockname6_alias,
            ],
            &cg,
        )?
    };

    let local = SocketAddr::new(f.loopback, LOCAL_PORT);
    let other_local = SocketAddr::new(f.loopback, OTHER_LOCAL_PORT);
    let served = serve_once(service, "service".into());
    let served_other = serve_once(other, "other".into());
    let seen = child::in_cgroup(&cg).netns(&ns).run(|| {
        (
            tcp_from(local, f.virtual_addr()),
            tcp_from(other_local, other_addr),
        )
    })?;
    case.detail("child", format!("{seen:?}"));
    let join = |h: std::thread::JoinHandle<std::io::Result<Option<(SocketAddr, String)>>>| {
        h.join()
            .map_err(|_| CaseError::Error(anyhow::anyhow!("a server thread panicked")))?
            .or_error("serving a listener")
    };
    let (served, served_other) = (join(served)?, join(served_other)?);

    let connected = succeeded("connecting to the virtual address", seen.0)?;
    assert_eq!(
        connected.peer,
        f.virtual_addr(),
        "getpeername of the service connection"
    );
    assert_eq!(
        connected.local,
        SocketAddr::new(f.alias_ip, ALIAS_PORT),
        "getsockname of the socket bound to {local}"
    );
    assert_eq!(
        connected.reply.as_str(),
        "service",
        "the answer the child got"
    );
    let (peer, greeting) = served.expect("the service accepted no connection");
    assert_eq!(
        (peer, greeting.as_str()),
        (local, "hello"),
        "what the service saw"
    );

    let control = succeeded("connecting to the other listener", seen.1)?;
    assert_eq!(
        (control.peer, control.local, &*control.reply.as_str()),
        (other_addr, other_local, "other"),
        "the control connection's getpeername, getsockname and answer"
    );
    let (peer, greeting) = served_other.expect("the other listener accepted no connection");
    assert_eq!(
        (peer, greeting.as_str()),
        (other_local, "hello"),
        "what the other listener saw"
    );

    let unreachable = inside(&ns, || {
        Ok(TcpStream::connect(f.virtual_addr())
            .map(|_| ())
            .map_err(|e| e.raw_os_error()))
    })?;
    assert_eq!(
        unreachable,
        Err(Some(libc::ENETUNREACH)),
        "a connect to the virtual address from outside the cgroup"
    );

    assert_eq!(
        counters(&skel),
        (1, 1, 1),
        "the program's counters (redirected, shown, aliased)"
    );
    Ok(())
}

#[test]
fn names4_show_virtual_service() {
    Case::run(ProgramType::CgroupSockAddr, |case| {
        names_show_virtual(case, V4)
    });
}

#[test]
fn names6_show_virtual_service() {
    Case::run(ProgramType::CgroupSockAddr, |case| {
        names_show_virtual(case, V6)
    });
}

/// What the child's UDP exchange saw: the answer and the source `recvfrom` named.
#[derive(Clone, Copy, Debug)]
struct Answered {
    reply: Text,
    from: SocketAddr,
}

/// In the child: one unconnected `sendto` of "hello" to `to` from `s`, then the answer.
fn udp_exchange(s: &UdpSocket, to: SocketAddr) -> Result<Answered, Errno> {
    child::errno(s.send_to(b"hello", to))?;
    let mut from = to;
    let reply = Text::read(|buf| {
        let (n, source) = s.recv_from(buf)?;
        from = source;
        Ok(n)
    })?;
    Ok(Answered { reply, from })
}

/// Answers one datagram on `socket` with `reply`; the sender and the payload.
fn answer_once(
    socket: UdpSocket,
    reply: &'static str,
) -> std::thread::JoinHandle<std::io::Result<(SocketAddr, String)>> {
    std::thread::spawn(move || {
        socket.set_read_timeout(Some(WAIT))?;
        let mut buf = [0u8; 100];
        let (n, from) = socket.recv_from(&mut buf)?;
        socket.send_to(reply.as_bytes(), from)?;
        Ok((from, String::from_utf8_lossy(&buf[..n]).into_owned()))
    })
}

/// The recvmsg cases: see the module doc.
fn recvmsg_shows_virtual(case: &mut Case, f: Family) -> CaseResult {
    let ns = NetNs::new()?;
    let (service, other) = inside(&ns, || {
        Ok((
            UdpSocket::bind((f.loopback, 0))?,
            UdpSocket::bind((f.loopback, 0))?,
        ))
    })?;
    let service_addr = service.local_addr().or_error("local_addr")?;
    let other_addr = other.local_addr().or_error("local_addr")?;
    case.detail("service", service_addr.to_string());
    case.detail("other", other_addr.to_string());

    let mut object = MaybeUninit::uninit();
    let skel = load(case, &mut object, f, service_addr.port())?;
    let cg = Cgroup::new()?;
    let p = &skel.progs;
    let _links = if f.is_v4() {
        attach_all(&[&p.sendmsg4_to_service, &p.recvmsg4_virtual], &cg)?
    } else {
        attach_all(&[&p.sendmsg6_to_service, &p.recvmsg6_virtual], &cg)?
    };

    let served = answer_once(service, "service");
    let served_other = answer_once(other, "other");
    let seen = child::in_cgroup(&cg).netns(&ns).run(|| {
        let s = child::errno(UdpSocket::bind((f.loopback, 0)))?;
        child::errno(s.set_read_timeout(Some(ARRIVAL)))?;
        Ok::<_, Errno>((
            child::errno(s.local_addr())?,
            udp_exchange(&s, f.virtual_addr()),
            udp_exchange(&s, other_addr),
        ))
    })?;
    case.detail("child", format!("{seen:?}"));
    let join = |h: std::thread::JoinHandle<std::io::Result<(SocketAddr, String)>>, what: &str| {
        h.join()
            .map_err(|_| CaseError::Error(anyhow::anyhow!("the thread of {what} panicked")))?
            .map_err(|e| {
                CaseError::Fail(anyhow::anyhow!(
                    "{what} received no datagram within {WAIT:?}: {e}"
                ))
            })
    };
    let served = join(served, "the service socket")?;
    let served_other = join(served_other, "the other socket")?;

    let (local, answered, control) = succeeded("binding a UDP socket", seen)?;
    let answered = succeeded("the exchange with the virtual address", answered)?;
    assert_eq!(
        (answered.from, &*answered.reply.as_str()),
        (f.virtual_addr(), "service"),
        "the source recvfrom named, and the answer"
    );
    assert_eq!(
        served,
        (local, "hello".into()),
        "what the service received, from whom"
    );
    let control = succeeded("the exchange with the other socket", control)?;
    assert_eq!(
        (control.from, &*control.reply.as_str()),
        (other_addr, "other"),
        "the control exchange's source and answer"
    );
    assert_eq!(
        served_other,
        (local, "hello".into()),
        "what the other socket received"
    );

    let unroutable = inside(&ns, || {
        let s = UdpSocket::bind((f.loopback, 0))?;
        Ok(s.send_to(b"outside", f.virtual_addr())
            .map(|_| ())
            .map_err(|e| e.raw_os_error()))
    })?;
    assert_eq!(
        unroutable,
        Err(Some(libc::ENETUNREACH)),
        "a datagram to the virtual address from outside the cgroup"
    );

    assert_eq!(
        counters(&skel),
        (1, 1, 0),
        "the program's counters (redirected, shown, aliased)"
    );
    Ok(())
}

#[test]
fn recvmsg4_shows_virtual_source() {
    Case::run(ProgramType::CgroupSockAddr, |case| {
        recvmsg_shows_virtual(case, V4)
    });
}

#[test]
fn recvmsg6_shows_virtual_source() {
    Case::run(ProgramType::CgroupSockAddr, |case| {
        recvmsg_shows_virtual(case, V6)
    });
}
