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

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::ProgramType;
use libbpf_rs::skel::SkelBuilder;
use nix::errno::Errno;
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use programs::cgroup_sockopt::CgroupSockoptSkelBuilder;
use testkit::child::succeeded;
use testkit::datagram;
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
    Ok(Calls {
        set_ttl: setsockopt(&sock, sockopt::Ipv4Ttl, &ATTEMPTED_TTL),
        set_tos: setsockopt(&sock, sockopt::Ipv4Tos, &TOS),
        get_ttl: getsockopt(&sock, sockopt::Ipv4Ttl),
        get_tos: getsockopt(&sock, sockopt::Ipv4Tos),
        sent: child::errno(sock.send_to(b"child", to)),
    })
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
    let Some(d) = datagram::receive(sock, wait)? else {
        return Ok(None);
    };
    let (Some(ttl), Some(tos)) = (d.ttl, d.tos) else {
        return Err(CaseError::Fail(anyhow::anyhow!(
            "a datagram came without its IP_TTL and IP_TOS messages"
        )));
    };
    Ok(Some(Received {
        payload: d.text(),
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
        let default_ttl = getsockopt(&outside, sockopt::Ipv4Ttl)?;
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
        setsockopt(&outside, sockopt::Ipv4Ttl, &OUTSIDE_TTL)?;
        let outside_ttl = getsockopt(&outside, sockopt::Ipv4Ttl)?;
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
