//! cgroup_sock_release (`programs/src/bpf/cgroup_sock_release.bpf.c`): the socket-release hook
//! (BPF_CGROUP_INET_SOCK_RELEASE, Linux 5.9+) of the test's own cgroup v2 child logs the mark and
//! protocol of every inet socket of the cgroup as its last reference goes.
//!
//! `logs_each_socket_of_the_cgroup_once`: a child forked into the cgroup creates a UDP, a TCP and
//! a UDPv6 socket and gives each its own mark after creation (SO_MARK), sends the UDPv6 one to the
//! test over an AF_UNIX socket (SCM_RIGHTS), then closes the TCP socket and the UDP one, in that
//! order, and exits. Then the test closes a socket of its own (outside the cgroup), then the
//! UDPv6 socket the child sent. The hook runs inside close(2) (the last `fput`), so each step's
//! log is read right after it:
//! - after the child: exactly the TCP then the UDP socket, with the marks set after creation
//!   (the hook reads the socket as it is released); the UDPv6 socket is alive in the test;
//! - after the test's own socket: unchanged (not a socket of the cgroup);
//! - after the test closes the UDPv6 socket: it is logged third, although the process that
//!   released it is outside the cgroup (the cgroup is the socket's, fixed at creation). Awaited:
//!   a child another test forks meanwhile holds a copy of the descriptor until it exits.
//!
//! The child's AF_UNIX socket is not logged (not inet).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use libbpf_rs::ProgramType;
use libbpf_rs::skel::SkelBuilder;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType,
    UnixAddr, bind, recvmsg, sendmsg, setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};
use programs::cgroup_sock_release::{CgroupSockReleaseSkel, CgroupSockReleaseSkelBuilder};
use testkit::observe::{self, volatile};
use testkit::{Case, CaseError, CaseResult, Cgroup, OrError, attach_type, child, probe};

const RELEASE: &str = "attach_type.cgroup_inet_sock_release";

/// The child's sockets: mark, domain, type.
const UDP4: (u32, AddressFamily, SockType) = (0x5101, AddressFamily::Inet, SockType::Datagram);
const TCP4: (u32, AddressFamily, SockType) = (0x5102, AddressFamily::Inet, SockType::Stream);
const UDP6: (u32, AddressFamily, SockType) = (0x5103, AddressFamily::Inet6, SockType::Datagram);
/// The mark of the test's own socket.
const OUTSIDE: u32 = 0x5104;

/// (mark, protocol) of each socket the program logged, in order.
fn logged(skel: &CgroupSockReleaseSkel<'_>) -> Vec<(u32, u32)> {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    let (n, marks, protocols) = (
        volatile(&bss.released),
        volatile(&bss.marks),
        volatile(&bss.protocols),
    );
    (0..(n as usize).min(marks.len()))
        .map(|i| (marks[i], protocols[i]))
        .collect()
}

/// A socket of `kind` with SO_MARK `mark`.
fn marked((mark, domain, kind): (u32, AddressFamily, SockType)) -> Result<OwnedFd, Errno> {
    let s = socket(domain, kind, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&s, sockopt::Mark, &mark)?;
    Ok(s)
}

/// In the child: the three sockets, the UDPv6 one sent to `to`, then TCP and UDP closed.
fn child_sockets(to: &UnixAddr) -> Result<(), Errno> {
    let udp4 = marked(UDP4)?;
    let tcp4 = marked(TCP4)?;
    let udp6 = marked(UDP6)?;
    let unix = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let fds = [udp6.as_raw_fd()];
    sendmsg(
        unix.as_raw_fd(),
        &[IoSlice::new(b"udp6")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        Some(to),
    )?;
    drop(udp6);
    drop(tcp4);
    drop(udp4);
    Ok(())
}

/// Receives the one descriptor a datagram on `unix` carries.
fn receive_fd(unix: &OwnedFd) -> CaseResult<OwnedFd> {
    let mut buf = [0u8; 16];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        unix.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .or_error("receiving the child's socket")?;
    for cmsg in msg.cmsgs().or_error("reading the control messages")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let [fd] = fds[..]
        {
            // SAFETY: SCM_RIGHTS installed `fd` in this process for this call alone.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(CaseError::Error(anyhow::anyhow!(
        "the child's datagram carried no descriptor"
    )))
}

#[test]
fn logs_each_socket_of_the_cgroup_once() {
    Case::run(ProgramType::CgroupSock, |case| {
        probe::prog_type(ProgramType::CgroupSock)?;
        let mut object = MaybeUninit::uninit();
        let open = CgroupSockReleaseSkelBuilder::default().open(&mut object)?;
        let skel = attach_type::load(case, RELEASE, open)?;
        let cg = Cgroup::new()?;
        let _link = attach_type::libbpf(RELEASE, "attaching cgroup/sock_release", || {
            skel.progs.log_release.attach_cgroup(cg.as_fd().as_raw_fd())
        })?;

        // Where the child sends its UDPv6 socket: an abstract AF_UNIX name of this case's own.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bpfconf-release-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let addr = UnixAddr::new_abstract(name.as_bytes()).or_error("naming the unix socket")?;
        let unix = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .or_error("creating the unix socket")?;
        bind(unix.as_raw_fd(), &addr).or_error("binding the unix socket")?;
        setsockopt(
            &unix,
            sockopt::ReceiveTimeout,
            &TimeVal::seconds(child::TIMEOUT.as_secs() as i64),
        )
        .or_error("setting a receive timeout")?;

        let made = child::in_cgroup(&cg).run(|| child_sockets(&addr))?;
        case.detail("child", format!("{made:?}"));
        made.map_err(|e| CaseError::Fail(anyhow::anyhow!("the child's socket calls failed: {e}")))?;
        let udp6 = receive_fd(&unix)?;
        let udp = SockProtocol::Udp as u32;
        let tcp = SockProtocol::Tcp as u32;
        let after_child = logged(&skel);
        case.detail("after_child", &after_child);
        assert_eq!(
            after_child,
            [(TCP4.0, tcp), (UDP4.0, udp)],
            "(mark, protocol) of the sockets released when the child closed TCP, then UDP"
        );

        let own = marked((OUTSIDE, AddressFamily::Inet, SockType::Datagram))
            .or_error("creating a socket outside the cgroup")?;
        drop(own);
        assert_eq!(
            logged(&skel),
            after_child,
            "the log after the test closed a socket of its own"
        );

        // The last reference to the UDPv6 socket goes with this close (or, should a test of
        // another thread fork meanwhile, with that child's close of its inherited copy): awaited.
        drop(udp6);
        let want = [(TCP4.0, tcp), (UDP4.0, udp), (UDP6.0, udp)];
        let after_test = observe::poll(observe::MUST_ARRIVE, || {
            Some(logged(&skel)).filter(|l| l.len() >= want.len())
        })
        .unwrap_or_else(|| logged(&skel));
        case.detail("after_test", &after_test);
        assert_eq!(
            after_test, want,
            "the log after the test closed the child's UDPv6 socket"
        );
        Ok(())
    });
}
