//! lsm_cgroup (`programs/src/bpf/lsm_cgroup.bpf.c`): a BPF LSM program attached to the test's
//! own cgroup v2 child (BPF_LSM_CGROUP, Linux 6.0+) on the socket_bind hook, through a BPF
//! trampoline. (`lsm` covers BPF_LSM_MAC, the system-wide attachment.)
//!
//! `refuses_binds_of_the_cgroup_sockets`: in a fresh network namespace, a child forked into the
//! cgroup binds three UDP sockets to 127.0.0.1: [`DENY_PORT`] fails with EPERM (the default errno
//! of verdict 0), [`ERRNO_PORT`] with EADDRNOTAVAIL (the errno the program set with
//! bpf_set_retval), [`OTHER_PORT`] binds. The test's own bind to [`DENY_PORT`], outside the
//! cgroup, succeeds and the program does not see it: its counters hold exactly the child's three
//! binds, one refused each way.
//!
//! Like every BPF LSM program it runs only where `bpf` is among the active LSMs
//! (`testkit::lsm`); the trampoline needs what fentry needs (`testkit::ftrace`).

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::ProgramType;
use libbpf_rs::skel::SkelBuilder;
use nix::errno::Errno;
use programs::lsm_cgroup::LsmCgroupSkelBuilder;
use testkit::observe::volatile;
use testkit::{Case, Cgroup, NetNs, attach_type, child, probe};

const LSM_CGROUP: &str = "attach_type.lsm_cgroup";
/// A bind to this port is refused with the default errno.
const DENY_PORT: u16 = 7701;
/// A bind to this port is refused with the errno the program sets.
const ERRNO_PORT: u16 = 7702;
/// Bound as asked.
const OTHER_PORT: u16 = 7703;

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Binds a UDP socket to `addr`: the address it got, or bind's errno.
fn bind_udp(addr: SocketAddr) -> Result<SocketAddr, Errno> {
    testkit::child::errno(UdpSocket::bind(addr).and_then(|s| s.local_addr()))
}

#[test]
fn refuses_binds_of_the_cgroup_sockets() {
    Case::run(ProgramType::Lsm, |case| {
        // security_socket_bind is an inline stub without the socket hooks.
        probe::config_builtin("CONFIG_SECURITY_NETWORK")?;
        let mut object = MaybeUninit::uninit();
        let mut open = LsmCgroupSkelBuilder::default().open(&mut object)?;
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.deny_port = DENY_PORT;
        rodata.errno_port = ERRNO_PORT;
        let skel = attach_type::load(case, LSM_CGROUP, open)?;
        let active = testkit::lsm::require_bpf_active()?;
        case.detail("active_lsms", &active);

        let ns = NetNs::new()?;
        let cg = Cgroup::new()?;
        let _link = attach_type::libbpf(LSM_CGROUP, "attaching lsm_cgroup/socket_bind", || {
            skel.progs.deny_bind.attach_cgroup(cg.as_fd().as_raw_fd())
        })?;

        let asked = [DENY_PORT, ERRNO_PORT, OTHER_PORT].map(localhost);
        let bound = child::in_cgroup(&cg)
            .netns(&ns)
            .run(|| asked.map(bind_udp))?;
        case.detail("child", format!("{bound:?}"));
        assert_eq!(
            bound,
            [
                Err(Errno::EPERM),
                Err(Errno::EADDRNOTAVAIL),
                Ok(localhost(OTHER_PORT))
            ],
            "bind(2) of {asked:?} inside the cgroup"
        );

        let outside = {
            let _inside = ns.enter()?;
            bind_udp(localhost(DENY_PORT))
        };
        case.detail("outside", format!("{outside:?}"));
        assert_eq!(
            outside,
            Ok(localhost(DENY_PORT)),
            "binding port {DENY_PORT} outside the cgroup"
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let counts = (
            volatile(&bss.seen),
            volatile(&bss.denied),
            volatile(&bss.refused_errno),
        );
        case.detail("program_seen_denied_refused_errno", counts);
        assert_eq!(
            counts,
            (3, 1, 1),
            "the program's counters (AF_INET binds seen, refused with EPERM, with another errno)"
        );
        Ok(())
    });
}
