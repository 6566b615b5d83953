//! cgroup_sock_addr on AF_UNIX sockets (`programs/src/bpf/cgroup_sock_addr_unix.bpf.c`, Linux
//! 6.7+): a virtual abstract name that connect/sendmsg send to the real service's name, and that
//! getpeername and recvmsg show in place of the service's; getsockname shows one local name as
//! another.
//!
//! Each case runs in a fresh network namespace (abstract names are per namespace, so fixed names
//! cannot collide) and a fresh cgroup v2 child; the test binds the service sockets, a child forked
//! into the cgroup and the namespace makes the socket calls and reports the names the kernel gave
//! it, byte for byte:
//! - `connect_unix_reaches_service`: a stream socket bound to [`LOCAL`] connects to [`VIRTUAL`]
//!   (where nothing listens); the [`SERVICE`] listener accepts it and sees [`LOCAL`], the child's
//!   `getpeername` shows [`VIRTUAL`] and its `getsockname` [`ALIAS`]. A second connection, from
//!   [`OTHER_LOCAL`] to the [`OTHER`] listener, shows both real names. From outside the cgroup a
//!   connect to [`VIRTUAL`] is refused (ECONNREFUSED).
//! - `sendmsg_unix_and_recvmsg_unix_use_virtual_name`: a datagram socket bound to [`LOCAL`] sends
//!   to [`VIRTUAL`]; the [`SERVICE`] socket receives it from [`LOCAL`] and answers, and the child's
//!   `recvfrom` names [`VIRTUAL`] as the sender; an exchange with the [`OTHER`] socket names it.
//!   From outside the cgroup a datagram to [`VIRTUAL`] is refused (ECONNREFUSED).
//!
//! The program's counters must hold exactly the rewrites each case provokes.

use std::fmt;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::thread::JoinHandle;

use libbpf_rs::{Link, ProgramAttachType, ProgramMut, ProgramType};
use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, connect, socket};
use programs::cgroup_sock_addr_unix::{CgroupSockAddrUnixSkel, CgroupSockAddrUnixSkelBuilder};
use testkit::child::{ARRIVAL, TIMEOUT as WAIT, Text, succeeded};
use testkit::sock_addr::{inside, probe_attach_type};
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, OrError, child, observe, probe};

/// The abstract names (without their leading NUL), as the program spells them.
const VIRTUAL: &[u8] = b"bpfconf-virtual";
const SERVICE: &[u8] = b"bpfconf-service";
const LOCAL: &[u8] = b"bpfconf-localnm";
const ALIAS: &[u8] = b"bpfconf-aliased";
/// The control connection's names, which the program leaves alone.
const OTHER: &[u8] = b"bpfconf-othersv";
const OTHER_LOCAL: &[u8] = b"bpfconf-otherlc";

/// A socket name as plain data: abstract (its bytes after the NUL) or not.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Name {
    is_abstract: bool,
    len: usize,
    bytes: [u8; 32],
}

impl Name {
    fn of(addr: &SocketAddr) -> Self {
        let mut name = Name {
            is_abstract: false,
            len: 0,
            bytes: [0; 32],
        };
        if let Some(bytes) = addr.as_abstract_name() {
            name.is_abstract = true;
            name.len = bytes.len().min(32);
            name.bytes[..name.len].copy_from_slice(&bytes[..name.len]);
        }
        name
    }

    fn is(&self, name: &[u8]) -> bool {
        self.is_abstract && &self.bytes[..self.len] == name
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_abstract {
            write!(f, "@{}", String::from_utf8_lossy(&self.bytes[..self.len]))
        } else {
            write!(f, "(not abstract)")
        }
    }
}

fn abstract_addr(name: &[u8]) -> CaseResult<SocketAddr> {
    SocketAddr::from_abstract_name(name).or_error("an abstract socket address")
}

/// Probes the unix attach types and the kernel BTF the kfuncs need, then loads the object.
fn load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<CgroupSockAddrUnixSkel<'obj>> {
    use ProgramAttachType::*;
    for (id, attach) in [
        ("attach_type.cgroup_unix_connect", CgroupUnixConnect),
        ("attach_type.cgroup_unix_sendmsg", CgroupUnixSendmsg),
        ("attach_type.cgroup_unix_recvmsg", CgroupUnixRecvmsg),
        ("attach_type.cgroup_unix_getpeername", CgroupUnixGetpeername),
        ("attach_type.cgroup_unix_getsockname", CgroupUnixGetsockname),
    ] {
        probe_attach_type(id, attach)?;
    }
    probe::path("object.kernel_btf", Path::new("/sys/kernel/btf/vmlinux"))?;
    case.open_load(CgroupSockAddrUnixSkelBuilder::default(), object, |_| {})
}

/// Attaches `progs` to `cg`.
fn attach_all(progs: &[&ProgramMut<'_>], cg: &Cgroup) -> CaseResult<Vec<Link>> {
    progs
        .iter()
        .map(|p| Ok(p.attach_cgroup(cg.as_fd().as_raw_fd())?))
        .collect()
}

/// The counters: redirected, shown, aliased.
fn counters(skel: &CgroupSockAddrUnixSkel<'_>) -> (u64, u64, u64) {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    (bss.redirected, bss.shown, bss.aliased)
}

/// What the child's stream connection saw: `getpeername`, `getsockname`, the answer.
#[derive(Clone, Copy, Debug)]
struct Connected {
    peer: Name,
    local: Name,
    reply: Text,
}

/// In the child: a stream socket bound to `local` connects to `to`, sends "hello", reads the
/// answer; then `getpeername` and `getsockname`, once each.
fn stream_from(local: &[u8], to: &[u8]) -> Result<Connected, Errno> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(fd.as_raw_fd(), &UnixAddr::new_abstract(local)?)?;
    connect(fd.as_raw_fd(), &UnixAddr::new_abstract(to)?)?;
    let mut s = UnixStream::from(fd);
    child::errno(s.set_read_timeout(Some(ARRIVAL)))?;
    child::errno(s.write_all(b"hello"))?;
    let reply = Text::read(|buf| s.read(buf))?;
    Ok(Connected {
        peer: Name::of(&child::errno(s.peer_addr())?),
        local: Name::of(&child::errno(s.local_addr())?),
        reply,
    })
}

/// Accepts one connection on `listener` within [`WAIT`], reads the greeting, answers `reply`;
/// the peer's name and the greeting, or `None` when nobody connected.
fn serve_once(
    listener: UnixListener,
    reply: &'static str,
) -> JoinHandle<std::io::Result<Option<(Name, String)>>> {
    std::thread::spawn(move || {
        if !observe::readable(&listener, WAIT)? {
            return Ok(None);
        }
        let (mut stream, peer) = listener.accept()?;
        stream.set_read_timeout(Some(WAIT))?;
        let mut buf = [0u8; 100];
        let n = stream.read(&mut buf)?;
        stream.write_all(reply.as_bytes())?;
        Ok(Some((
            Name::of(&peer),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        )))
    })
}

/// What the server thread of `what` got; nothing within [`WAIT`] is the case's failure.
fn joined<T>(handle: JoinHandle<std::io::Result<T>>, what: &str) -> CaseResult<T> {
    handle
        .join()
        .map_err(|_| CaseError::Error(anyhow::anyhow!("the thread of {what} panicked")))?
        .map_err(|e| CaseError::Fail(anyhow::anyhow!("{what} within {WAIT:?}: {e}")))
}

#[test]
fn connect_unix_reaches_service() {
    Case::run(ProgramType::CgroupSockAddr, |case| {
        let ns = NetNs::new()?;
        let mut object = MaybeUninit::uninit();
        let skel = load(case, &mut object)?;
        let (service, other) = inside(&ns, || {
            Ok((
                UnixListener::bind_addr(&SocketAddr::from_abstract_name(SERVICE)?)?,
                UnixListener::bind_addr(&SocketAddr::from_abstract_name(OTHER)?)?,
            ))
        })?;
        let cg = Cgroup::new()?;
        let p = &skel.progs;
        let _links = attach_all(
            &[
                &p.connect_unix_to_service,
                &p.getpeername_unix_virtual,
                &p.getsockname_unix_alias,
            ],
            &cg,
        )?;

        let served = serve_once(service, "service");
        let served_other = serve_once(other, "other");
        let seen = child::in_cgroup(&cg)
            .netns(&ns)
            .run(|| (stream_from(LOCAL, VIRTUAL), stream_from(OTHER_LOCAL, OTHER)))?;
        case.detail("child", format!("{seen:?}"));
        let served = joined(served, "the service listener")?;
        let served_other = joined(served_other, "the other listener")?;

        let connected = succeeded("connecting to the virtual name", seen.0)?;
        assert!(
            connected.peer.is(VIRTUAL),
            "getpeername of the service connection: {:?}",
            connected.peer
        );
        assert!(
            connected.local.is(ALIAS),
            "getsockname of the socket bound to @{}: {:?}",
            String::from_utf8_lossy(LOCAL),
            connected.local
        );
        assert_eq!(
            connected.reply.as_str(),
            "service",
            "the answer the child got"
        );
        let (peer, greeting) = served.expect("the service accepted no connection");
        assert!(peer.is(LOCAL), "the service's peer: {peer:?}");
        assert_eq!(greeting, "hello", "what the service received");

        let control = succeeded("connecting to the other listener", seen.1)?;
        assert!(
            control.peer.is(OTHER) && control.local.is(OTHER_LOCAL),
            "the control connection's getpeername and getsockname: {control:?}"
        );
        assert_eq!(control.reply.as_str(), "other", "the control's answer");
        let (peer, greeting) = served_other.expect("the other listener accepted no connection");
        assert!(peer.is(OTHER_LOCAL), "the other listener's peer: {peer:?}");
        assert_eq!(greeting, "hello", "what the other listener received");

        let virtual_addr = abstract_addr(VIRTUAL)?;
        let refused = inside(&ns, || {
            Ok(UnixStream::connect_addr(&virtual_addr)
                .map(|_| ())
                .map_err(|e| e.raw_os_error()))
        })?;
        assert_eq!(
            refused,
            Err(Some(libc::ECONNREFUSED)),
            "a connect to the virtual name from outside the cgroup"
        );

        assert_eq!(
            counters(&skel),
            (1, 1, 1),
            "the program's counters (redirected, shown, aliased)"
        );
        Ok(())
    });
}

/// What the child's datagram exchange saw: the answer and the sender `recvfrom` named.
#[derive(Clone, Copy, Debug)]
struct Answered {
    reply: Text,
    from: Name,
}

/// In the child: one `sendto` of "hello" from `s` to `to`, then the answer.
fn exchange(s: &UnixDatagram, to: &SocketAddr) -> Result<Answered, Errno> {
    child::errno(s.send_to_addr(b"hello", to))?;
    let mut from = None;
    let reply = Text::read(|buf| {
        let (n, sender) = s.recv_from(buf)?;
        from = Some(Name::of(&sender));
        Ok(n)
    })?;
    Ok(Answered {
        reply,
        from: from.expect("recv_from named a sender"),
    })
}

/// Answers one datagram on `socket` with `reply`; the sender and the payload.
fn answer_once(
    socket: UnixDatagram,
    reply: &'static str,
) -> JoinHandle<std::io::Result<(Name, String)>> {
    std::thread::spawn(move || {
        socket.set_read_timeout(Some(WAIT))?;
        let mut buf = [0u8; 100];
        let (n, from) = socket.recv_from(&mut buf)?;
        socket.send_to_addr(reply.as_bytes(), &from)?;
        Ok((
            Name::of(&from),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        ))
    })
}

#[test]
fn sendmsg_unix_and_recvmsg_unix_use_virtual_name() {
    Case::run(ProgramType::CgroupSockAddr, |case| {
        let ns = NetNs::new()?;
        let mut object = MaybeUninit::uninit();
        let skel = load(case, &mut object)?;
        let (service, other) = inside(&ns, || {
            Ok((
                UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(SERVICE)?)?,
                UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(OTHER)?)?,
            ))
        })?;
        let cg = Cgroup::new()?;
        let p = &skel.progs;
        let _links = attach_all(&[&p.sendmsg_unix_to_service, &p.recvmsg_unix_virtual], &cg)?;

        let (local, virtual_addr, other_addr) = (
            abstract_addr(LOCAL)?,
            abstract_addr(VIRTUAL)?,
            abstract_addr(OTHER)?,
        );
        let served = answer_once(service, "service");
        let served_other = answer_once(other, "other");
        let seen = child::in_cgroup(&cg).netns(&ns).run(|| {
            let s = child::errno(UnixDatagram::bind_addr(&local))?;
            child::errno(s.set_read_timeout(Some(ARRIVAL)))?;
            Ok::<_, Errno>((exchange(&s, &virtual_addr), exchange(&s, &other_addr)))
        })?;
        case.detail("child", format!("{seen:?}"));
        let served = joined(served, "a datagram at the service socket")?;
        let served_other = joined(served_other, "a datagram at the other socket")?;

        let (answered, control) = succeeded("binding a datagram socket", seen)?;
        let answered = succeeded("the exchange with the virtual name", answered)?;
        assert!(
            answered.from.is(VIRTUAL),
            "the sender recvfrom named: {:?}",
            answered.from
        );
        assert_eq!(
            answered.reply.as_str(),
            "service",
            "the answer the child got"
        );
        assert!(served.0.is(LOCAL), "the service's sender: {:?}", served.0);
        assert_eq!(served.1, "hello", "what the service received");

        let control = succeeded("the exchange with the other socket", control)?;
        assert!(
            control.from.is(OTHER),
            "the control's sender: {:?}",
            control.from
        );
        assert_eq!(control.reply.as_str(), "other", "the control's answer");
        assert!(
            served_other.0.is(LOCAL),
            "the other socket's sender: {:?}",
            served_other.0
        );
        assert_eq!(served_other.1, "hello", "what the other socket received");

        let refused = inside(&ns, || {
            let s = UnixDatagram::unbound()?;
            Ok(s.send_to_addr(b"outside", &virtual_addr)
                .map(|_| ())
                .map_err(|e| e.raw_os_error()))
        })?;
        assert_eq!(
            refused,
            Err(Some(libc::ECONNREFUSED)),
            "a datagram to the virtual name from outside the cgroup"
        );

        assert_eq!(
            counters(&skel),
            (1, 1, 0),
            "the program's counters (redirected, shown, aliased)"
        );
        Ok(())
    });
}
