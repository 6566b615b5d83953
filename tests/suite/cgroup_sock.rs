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
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use harness::{Case, CaseError, Cgroup, child, probe};
use libbpf_rs::ProgramType;
use nix::errno::Errno;
use programs::cgroup_sock::CgroupSockSkelBuilder;

/// The mark the program sets ("bpfc").
const MARK: u32 = 0x6270_6663;

/// The sockets the child creates: (name, domain, type, protocol).
const SOCKETS: [(&str, i32, i32, i32); 5] = [
    ("raw4", libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
    ("raw6", libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6),
    ("udp4", libc::AF_INET, libc::SOCK_DGRAM, 0),
    ("tcp4", libc::AF_INET, libc::SOCK_STREAM, 0),
    ("udp6", libc::AF_INET6, libc::SOCK_DGRAM, 0),
];
/// How many of [`SOCKETS`], from the front, the program refuses.
const RAW: usize = 2;

/// Creates each of [`SOCKETS`]: its SO_MARK, or the errno that refused it.
fn create_sockets() -> [Result<u32, Errno>; SOCKETS.len()] {
    SOCKETS.map(|(_, domain, kind, protocol)| {
        child::errno(socket(domain, kind, protocol).and_then(|s| so_mark(&s)))
    })
}

#[test]
fn denies_raw_and_marks_others() {
    Case::run(
        "cgroup_sock::denies_raw_and_marks_others",
        ProgramType::CgroupSock,
        |case| {
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
            let raw = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP).map_err(|e| {
                CaseError::Fail(anyhow::anyhow!(
                    "a raw socket outside the test cgroup was refused: {e}"
                ))
            })?;
            assert_eq!(so_mark(&raw)?, 0, "SO_MARK of a socket outside the cgroup");

            let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
            case.detail("program_denied", bss.denied);
            case.detail("program_marked", bss.marked);
            assert_eq!(bss.denied, 2, "refusals the program counted");
            assert_eq!(bss.marked, 3, "sockets the program marked");
            Ok(())
        },
    );
}

fn socket(domain: i32, kind: i32, protocol: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new fd that we own.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn so_mark(fd: &OwnedFd) -> std::io::Result<u32> {
    let mut mark: u32 = 0;
    let mut len = size_of::<u32>() as libc::socklen_t;
    // SAFETY: `mark` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&raw mut mark).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(mark)
}
