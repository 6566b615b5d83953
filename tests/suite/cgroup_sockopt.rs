//! cgroup_sockopt (`programs/src/bpf/cgroup_sockopt.bpf.c`): setsockopt and getsockopt filters on
//! the sockets of the test's own cgroup v2 child.
//!
//! `denies_ttl_and_rewrites_its_report`: both programs are attached to the cgroup. A child forked
//! into the cgroup and a fresh network namespace opens one UDP socket and, in this order:
//! - sets IP_TTL to [`ATTEMPTED_TTL`]: refused with EPERM (the program's verdict);
//! - sets IP_TOS to [`TOS`]: passes on to the kernel (the program returns 1, optlen untouched);
//! - gets IP_TTL: reads [`REPORTED_TTL`], the program's rewrite of the kernel's answer;
//! - gets IP_TOS: reads [`TOS`], the kernel's own answer passed through;
//! - sends one datagram to a receiver of the test.
//!
//! The wire shows what the kernel really did: the receiver (`IP_RECVTTL`, `IP_RECVTOS`) reads the
//! child's datagram with the namespace's default TTL (neither the refused value nor the reported
//! one) and TOS [`TOS`]. Outside the cgroup (a socket of the test in the same namespace) IP_TTL
//! sets and reads back normally and its datagram arrives with that TTL, which also shows the TTL
//! on the wire follows the option. The programs' counters saw exactly the child's four calls.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for this program type.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use libbpf_rs::ProgramType;
use libbpf_rs::skel::SkelBuilder;
use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, setsockopt, sockopt};
use programs::cgroup_sockopt::CgroupSockoptSkelBuilder;
use testkit::observe::{self, volatile};
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, OrError, child, probe};

/// The IP_TTL the child tries to set (refused).
const ATTEMPTED_TTL: i32 = 5;
/// The IP_TTL the getsockopt program reports.
const REPORTED_TTL: i32 = 123;
/// The IP_TOS the child sets (passed to the kernel).
const TOS: i32 = 0x10;
/// The IP_TTL the test's own socket sets outside the cgroup.
const OUTSIDE_TTL: i32 = 9;

/// `setsockopt(fd, IPPROTO_IP, name, &value, 4)`.
fn set_int(fd: RawFd, name: i32, value: i32) -> Result<(), Errno> {
    // SAFETY: the option value is a live c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    Errno::result(rc).map(drop)
}

/// `getsockopt(fd, IPPROTO_IP, name)` into a 4-byte int.
fn get_int(fd: RawFd, name: i32) -> Result<i32, Errno> {
    let mut value: i32 = -1;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: the buffer is a live c_int and `len` its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            name,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    Errno::result(rc).map(|_| value)
}

/// What the child's calls returned.
#[derive(Clone, Copy, Debug)]
struct Calls {
    set_ttl: Result<(), Errno>,
    set_tos: Result<(), Errno>,
    get_ttl: Result<i32, Errno>,
    get_tos: Result<i32, Errno>,
    sent: Result<usize, Errno>,
}

/// In the child: the four option calls on one UDP socket, then one datagram to `to`.
fn option_calls(to: SocketAddr) -> Result<Calls, Errno> {
    let sock = child::errno(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))?;
    let fd = sock.as_raw_fd();
    Ok(Calls {
        set_ttl: set_int(fd, libc::IP_TTL, ATTEMPTED_TTL),
        set_tos: set_int(fd, libc::IP_TOS, TOS),
        get_ttl: get_int(fd, libc::IP_TTL),
        get_tos: get_int(fd, libc::IP_TOS),
        sent: child::errno(sock.send_to(b"child", to)),
    })
}

/// The child's result: a failed call inside the cgroup is the program's failure (`fail`).
fn succeeded<T>(what: &str, result: Result<T, Errno>) -> CaseResult<T> {
    result.map_err(|e| CaseError::Fail(anyhow::anyhow!("{what} inside the cgroup: {e}")))
}

/// One received datagram: payload, TTL and TOS it arrived with.
#[derive(Debug, PartialEq)]
struct Received {
    payload: String,
    ttl: i32,
    tos: u8,
}

/// The next datagram on `sock` (with `IP_RECVTTL` and `IP_RECVTOS` on) within `wait`.
fn receive(sock: &UdpSocket, wait: std::time::Duration) -> CaseResult<Option<Received>> {
    sock.set_read_timeout(Some(wait))?;
    let mut buf = [0u8; 64];
    let mut cmsg = nix::cmsg_space!(libc::c_int, libc::c_int);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = match recvmsg::<SockaddrIn>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    ) {
        Ok(msg) => msg,
        Err(Errno::EAGAIN) => return Ok(None),
        Err(e) => return Err(std::io::Error::from(e).into()),
    };
    let (mut ttl, mut tos) = (None, None);
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4Ttl(t) => ttl = Some(t),
            ControlMessageOwned::Ipv4Tos(t) => tos = Some(t),
            _ => {}
        }
    }
    let len = msg.bytes;
    let (Some(ttl), Some(tos)) = (ttl, tos) else {
        return Err(CaseError::Fail(anyhow::anyhow!(
            "a datagram came without its IP_TTL and IP_TOS messages"
        )));
    };
    Ok(Some(Received {
        payload: String::from_utf8_lossy(&buf[..len]).into_owned(),
        ttl,
        tos,
    }))
}

#[test]
fn denies_ttl_and_rewrites_its_report() {
    Case::run(ProgramType::CgroupSockopt, |case| {
        probe::prog_type(ProgramType::CgroupSockopt)?;
        let ns = NetNs::new()?;
        let (receiver, outside) = {
            let _inside = ns.enter()?;
            (
                UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).or_error("binding the receiver")?,
                UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).or_error("binding the test's socket")?,
            )
        };
        setsockopt(&receiver, sockopt::Ipv4RecvTtl, &true).or_error("setting IP_RECVTTL")?;
        setsockopt(&receiver, sockopt::IpRecvTos, &true).or_error("setting IP_RECVTOS")?;
        let to = receiver.local_addr().or_error("local_addr")?;
        // The kernel's own answer, from a socket outside the cgroup.
        let default_ttl = get_int(outside.as_raw_fd(), libc::IP_TTL)?;
        case.detail("default_ttl", default_ttl);

        let mut object = MaybeUninit::uninit();
        let mut open = CgroupSockoptSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has a .rodata section")
            .reported_ttl = REPORTED_TTL;
        let skel = case.load(open)?;
        let cg = Cgroup::new()?;
        let cg_fd = cg.as_fd().as_raw_fd();
        let _set_link = skel.progs.deny_ttl.attach_cgroup(cg_fd)?;
        let _get_link = skel.progs.report_ttl.attach_cgroup(cg_fd)?;

        let calls = child::in_cgroup(&cg).netns(&ns).run(|| option_calls(to))?;
        case.detail("child", format!("{calls:?}"));
        let calls = succeeded("opening a UDP socket", calls)?;

        // Outside the cgroup: IP_TTL sets and reads back, and goes on the wire.
        set_int(outside.as_raw_fd(), libc::IP_TTL, OUTSIDE_TTL)?;
        let outside_ttl = get_int(outside.as_raw_fd(), libc::IP_TTL)?;
        outside.send_to(b"outside", to)?;
        // Both datagrams must arrive; from two processes, in either order.
        let mut got = Vec::new();
        for _ in 0..2 {
            got.extend(receive(&receiver, observe::MUST_ARRIVE)?);
        }
        got.sort_by(|a, b| a.payload.cmp(&b.payload));
        case.detail("received", format!("{got:?}"));

        assert_eq!(
            calls.set_ttl,
            Err(Errno::EPERM),
            "setting IP_TTL inside the cgroup"
        );
        succeeded("setting IP_TOS", calls.set_tos)?;
        assert_eq!(
            calls.get_ttl,
            Ok(REPORTED_TTL),
            "IP_TTL read inside the cgroup (the program's report)"
        );
        assert_eq!(
            calls.get_tos,
            Ok(TOS),
            "IP_TOS read inside the cgroup (the kernel's own answer)"
        );
        succeeded("sending a datagram", calls.sent)?;
        assert_eq!(
            outside_ttl, OUTSIDE_TTL,
            "IP_TTL read back outside the cgroup"
        );
        assert_eq!(
            got,
            [
                Received {
                    payload: "child".into(),
                    ttl: default_ttl,
                    tos: TOS as u8,
                },
                Received {
                    payload: "outside".into(),
                    ttl: OUTSIDE_TTL,
                    tos: 0,
                },
            ],
            "the datagrams received: the child's with the default TTL {default_ttl} (the \
                 refused {ATTEMPTED_TTL} never applied) and its TOS, the test's with its TTL"
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let counts = (
            volatile(&bss.sets_denied),
            volatile(&bss.sets_passed),
            volatile(&bss.gets_rewritten),
            volatile(&bss.gets_passed),
        );
        case.detail("sets_denied_passed_gets_rewritten_passed", counts);
        assert_eq!(
            counts,
            (1, 1, 1, 1),
            "the programs' counters (sets denied, sets passed, gets rewritten, gets passed)"
        );
        Ok(())
    });
}
