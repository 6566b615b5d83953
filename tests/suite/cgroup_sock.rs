//! cgroup_sock (`programs/src/bpf/cgroup_sock.bpf.c`): the socket-creation hook
//! (`cgroup/sock_create`) of the test's own cgroup v2 child. The program refuses raw sockets and
//! sets a mark, handed to it before load, on every other inet socket.
//!
//! A child process forked into the cgroup creates raw IPv4/IPv6 sockets (each must fail with
//! EPERM) and UDP/TCP sockets (each must succeed, and `getsockopt(SO_MARK)` on it must return the
//! program's mark), and reports errno or mark per socket. The test process, outside the cgroup,
//! still creates a raw socket and its sockets keep mark 0; the program's own counters saw exactly
//! the child's 2 refusals and 3 marks.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for this program type
//! (ENOTSUPP, checked on 6.18).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::ProgramType;
use nix::errno::Errno;
use nix::sys::socket::AddressFamily::{self, Inet, Inet6};
use nix::sys::socket::SockType::{self, Datagram, Raw, Stream};
use nix::sys::socket::{SockFlag, SockProtocol, getsockopt, socket, sockopt};
use programs::cgroup_sock::CgroupSockSkelBuilder;
use testkit::{Case, CaseError, Cgroup, child, probe};

/// The mark the program sets ("bpfc").
const MARK: u32 = 0x6270_6663;

/// The sockets the child creates: (name, domain, type, protocol).
const SOCKETS: [(&str, AddressFamily, SockType, Option<SockProtocol>); 5] = [
    ("raw4", Inet, Raw, Some(SockProtocol::Icmp)),
    ("raw6", Inet6, Raw, Some(SockProtocol::IcmpV6)),
    ("udp4", Inet, Datagram, None),
    ("tcp4", Inet, Stream, None),
    ("udp6", Inet6, Datagram, None),
];
/// How many of [`SOCKETS`], from the front, the program refuses.
const RAW: usize = 2;

/// Creates each of [`SOCKETS`]: its SO_MARK, or the errno that refused it.
fn create_sockets() -> [Result<u32, Errno>; SOCKETS.len()] {
    SOCKETS.map(|(_, domain, kind, protocol)| {
        socket(domain, kind, SockFlag::SOCK_CLOEXEC, protocol)
            .and_then(|s| getsockopt(&s, sockopt::Mark))
    })
}

#[test]
fn denies_raw_and_marks_others() {
    Case::run(ProgramType::CgroupSock, |case| {
        probe::prog_type(ProgramType::CgroupSock)?;
        let mut object = MaybeUninit::uninit();
        let skel = case.open_load(CgroupSockSkelBuilder::default(), &mut object, |open| {
            open.maps.rodata_data.as_deref_mut().expect(".rodata").mark = MARK;
        })?;

        let cg = Cgroup::new()?;
        let _link = skel
            .progs
            .deny_raw_mark_others
            .attach_cgroup(cg.as_fd().as_raw_fd())?;

        let created = child::in_cgroup(&cg).run(create_sockets)?;
        case.detail("child", format!("{created:?}"));
        for (i, ((name, ..), result)) in SOCKETS.iter().zip(created).enumerate() {
            let expected = if i < RAW { Err(Errno::EPERM) } else { Ok(MARK) };
            assert_eq!(
                result, expected,
                "creating {name} inside the cgroup (Ok: its SO_MARK)"
            );
        }

        // Outside the cgroup nothing changes: raw sockets open, marks stay 0.
        let (_, domain, kind, protocol) = SOCKETS[0];
        let raw = socket(domain, kind, SockFlag::SOCK_CLOEXEC, protocol).map_err(|e| {
            CaseError::Fail(anyhow::anyhow!(
                "a raw socket outside the test cgroup was refused: {e}"
            ))
        })?;
        assert_eq!(
            getsockopt(&raw, sockopt::Mark)?,
            0,
            "SO_MARK of a socket outside the cgroup"
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        case.detail("program_denied", bss.denied);
        case.detail("program_marked", bss.marked);
        assert_eq!(bss.denied, 2, "refusals the program counted");
        assert_eq!(bss.marked, 3, "sockets the program marked");
        Ok(())
    });
}
