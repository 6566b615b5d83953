//! cgroup_sock (`programs/src/bpf/cgroup_sock.bpf.c`): the socket-creation hook
//! (`cgroup/sock_create`) of the test's own cgroup v2 child. The program refuses raw sockets and
//! sets a mark, handed to it before load, on every other inet socket.
//!
//! A python3 client started inside the cgroup creates raw IPv4/IPv6 sockets (each must fail with
//! EPERM) and UDP/TCP sockets (each must succeed, and `getsockopt(SO_MARK)` on it must return the
//! program's mark), and reports errno and mark per socket as JSON. The test process, outside the
//! cgroup, still creates a raw socket and its sockets keep mark 0; the program's own counters saw
//! exactly the client's 2 refusals and 3 marks.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for this program type
//! (ENOTSUPP, checked on 6.18).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use harness::{Case, CaseError, Cgroup, client, probe};
use libbpf_rs::ProgramType;
use libbpf_rs::skel::SkelBuilder;
use programs::cgroup_sock::CgroupSockSkelBuilder;

/// The mark the program sets ("bpfc").
const MARK: u32 = 0x6270_6663;

/// Creates the sockets named in the report; `{name: {"errno": name-or-null, "mark": n}}`.
const CREATE_SOCKETS: &str = r#"
import errno, json, socket
SO_MARK = getattr(socket, "SO_MARK", 36)
def make(family, kind, proto=0):
    try:
        s = socket.socket(family, kind, proto)
    except OSError as e:
        return {"errno": errno.errorcode.get(e.errno, str(e.errno))}
    mark = s.getsockopt(socket.SOL_SOCKET, SO_MARK)
    s.close()
    return {"errno": None, "mark": mark}
print(json.dumps({
    "raw4": make(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
    "raw6": make(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
    "udp4": make(socket.AF_INET, socket.SOCK_DGRAM),
    "tcp4": make(socket.AF_INET, socket.SOCK_STREAM),
    "udp6": make(socket.AF_INET6, socket.SOCK_DGRAM),
}))
"#;

#[test]
fn denies_raw_and_marks_others() {
    Case::run(
        "cgroup_sock::denies_raw_and_marks_others",
        ProgramType::CgroupSock,
        |case| {
            probe::prog_type(ProgramType::CgroupSock)?;
            let mut object = MaybeUninit::uninit();
            let mut open = CgroupSockSkelBuilder::default().open(&mut object)?;
            open.maps
                .rodata_data
                .as_deref_mut()
                .expect("the object has a .rodata section")
                .mark = MARK;
            let skel = case.load(open)?;

            let cg = Cgroup::new()?;
            let _link = skel
                .progs
                .deny_raw_mark_others
                .attach_cgroup(cg.as_fd().as_raw_fd())?;

            let report = client::run_json(cg.command(client::python(CREATE_SOCKETS, [""; 0])))?;
            case.detail("client", &report);
            for raw in ["raw4", "raw6"] {
                assert_eq!(
                    report[raw]["errno"], "EPERM",
                    "creating {raw} inside the cgroup: {}",
                    report[raw]
                );
            }
            for allowed in ["udp4", "tcp4", "udp6"] {
                assert_eq!(
                    report[allowed]["errno"],
                    serde_json::Value::Null,
                    "creating {allowed} inside the cgroup: {}",
                    report[allowed]
                );
                assert_eq!(
                    report[allowed]["mark"], MARK,
                    "SO_MARK of {allowed} created inside the cgroup"
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
