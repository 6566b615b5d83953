//! sock_ops (`programs/src/bpf/sock_ops.bpf.c`): TCP events of the sockets of the test's own cgroup
//! v2 child. The program counts the ACTIVE_ESTABLISHED (connecting side) and PASSIVE_ESTABLISHED
//! (accepted side) callbacks and, on both, calls bpf_setsockopt for SO_KEEPALIVE = 1,
//! TCP_KEEPIDLE = 4321 s and TCP_BPF_RTO_MIN = 10 ms (options bpf_setsockopt takes from sock_ops
//! programs since 5.10, the oldest kernel of the matrix; TCP_NODELAY came later).
//!
//! A child process forked into the cgroup and a fresh network namespace listens on 127.0.0.1
//! (port 0: a free one), makes 3 loopback connections to itself, exchanges 30 one-byte round trips
//! on each, and reports what `getsockopt` says on every connected and accepted socket:
//! SO_KEEPALIVE, TCP_KEEPIDLE and `tcpi_rto` from TCP_INFO. The checks:
//! - the program counted exactly 3 active and 3 passive established callbacks (the listener has
//!   none);
//! - every socket, both sides, reads back SO_KEEPALIVE on and TCP_KEEPIDLE 4321;
//! - every socket's retransmission timeout fell below 200 ms, the kernel's own floor: only the
//!   lowered RTO minimum allows that. The same child run outside the cgroup is the control: its
//!   sockets keep keepalive off, the default keepalive idle time and an RTO of at least 200 ms.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for this program type
//! (ENOTSUPP, checked on 6.18).

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use libbpf_rs::ProgramType;
use nix::errno::Errno;
use nix::sys::socket::{getsockopt, sockopt};
use programs::sock_ops::SockOpsSkelBuilder;
use testkit::{Case, CaseError, Cgroup, NetNs, child, probe};

const CONNECTIONS: usize = 3;
const ROUND_TRIPS: u32 = 30;
const KEEPIDLE_S: i32 = 4321;
const RTO_MIN_US: i32 = 10_000;
/// TCP_RTO_MIN: the lowest retransmission timeout a socket gets without a lowered minimum.
const KERNEL_RTO_MIN_US: u32 = 200_000;
/// How long a byte that was sent may take to arrive on loopback.
const ARRIVAL: Duration = Duration::from_secs(5);

/// What `getsockopt` says on one socket.
#[derive(Clone, Copy, Debug, Default)]
struct Options {
    keepalive: bool,
    keepidle: u32,
    rto_us: u32,
}

/// The options of every connecting (`client`) and accepted (`server`) socket.
#[derive(Clone, Copy, Debug)]
struct Connected {
    client: [Options; CONNECTIONS],
    server: [Options; CONNECTIONS],
}

impl Connected {
    /// Every socket of both sides, labelled.
    fn sockets(&self) -> Vec<(String, Options)> {
        [("client", &self.client), ("server", &self.server)]
            .into_iter()
            .flat_map(|(side, opts)| {
                opts.iter()
                    .enumerate()
                    .map(move |(i, o)| (format!("{side}[{i}]"), *o))
            })
            .collect()
    }
}

/// In the child: [`CONNECTIONS`] loopback connections to its own listener, [`ROUND_TRIPS`]
/// one-byte round trips on each, then the options of both ends.
fn connect_loopback() -> Result<Connected, Errno> {
    let listener = child::errno(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
    let addr = child::errno(listener.local_addr())?;
    let mut connected = Connected {
        client: [Options::default(); CONNECTIONS],
        server: [Options::default(); CONNECTIONS],
    };
    for i in 0..CONNECTIONS {
        let mut c = child::errno(TcpStream::connect_timeout(&addr, ARRIVAL))?;
        let (mut a, _) = child::errno(listener.accept())?;
        for s in [&c, &a] {
            child::errno(s.set_read_timeout(Some(ARRIVAL)))?;
        }
        let mut byte = [0u8; 1];
        for _ in 0..ROUND_TRIPS {
            child::errno(c.write_all(b"x"))?;
            child::errno(a.read_exact(&mut byte))?;
            child::errno(a.write_all(b"y"))?;
            child::errno(c.read_exact(&mut byte))?;
        }
        connected.client[i] = options(&c)?;
        connected.server[i] = options(&a)?;
    }
    Ok(connected)
}

fn options(s: &TcpStream) -> Result<Options, Errno> {
    Ok(Options {
        keepalive: getsockopt(s, sockopt::KeepAlive)?,
        keepidle: getsockopt(s, sockopt::TcpKeepIdle)?,
        rto_us: testkit::sockopt::tcp_info(s)?.tcpi_rto,
    })
}

#[test]
fn counts_established_and_sets_options() {
    Case::run(ProgramType::SockOps, |case| {
        probe::prog_type(ProgramType::SockOps)?;
        let mut object = MaybeUninit::uninit();
        let skel = case.open_load(SockOpsSkelBuilder::default(), &mut object, |open| {
            let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
            rodata.keepidle = KEEPIDLE_S;
            rodata.rto_min_us = RTO_MIN_US;
        })?;

        // A fresh namespace: its loopback is the case's alone (and up, which a VM's root
        // namespace's is not).
        let ns = NetNs::new()?;
        // The control: the same child outside the cgroup, before anything is attached.
        let control = child::in_netns(&ns).run(connect_loopback)?;
        case.detail("control", format!("{control:?}"));
        let control = control
            .map_err(|e| CaseError::Error(anyhow::anyhow!("the control child's sockets: {e}")))?;
        for (name, s) in control.sockets() {
            assert!(!s.keepalive, "control {name}: {s:?}");
            assert_ne!(s.keepidle, KEEPIDLE_S as u32, "control {name}: {s:?}");
            assert!(
                s.rto_us >= KERNEL_RTO_MIN_US,
                "control {name}: an RTO below 200 ms without the program: {s:?}"
            );
        }

        let cg = Cgroup::new()?;
        let _link = skel
            .progs
            .count_established
            .attach_cgroup(cg.as_fd().as_raw_fd())?;
        let connected = child::in_cgroup(&cg).netns(&ns).run(connect_loopback)?;
        case.detail("child", format!("{connected:?}"));
        // Inside the cgroup a failed socket call is the program's failure.
        let connected = connected
            .map_err(|e| CaseError::Fail(anyhow::anyhow!("the child's connections: {e}")))?;

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let data = skel
            .maps
            .data_data
            .as_deref()
            .expect("the object has .data");
        case.detail("active_established", bss.active_established);
        case.detail("passive_established", bss.passive_established);
        case.detail(
            "setsockopt_rc",
            [data.keepalive_rc, data.keepidle_rc, data.rto_min_rc],
        );
        assert_eq!(
            bss.active_established, CONNECTIONS as u64,
            "active established callbacks"
        );
        assert_eq!(
            bss.passive_established, CONNECTIONS as u64,
            "passive established callbacks"
        );
        assert_eq!(data.keepalive_rc, 0, "bpf_setsockopt(SO_KEEPALIVE)");
        assert_eq!(data.keepidle_rc, 0, "bpf_setsockopt(TCP_KEEPIDLE)");
        assert_eq!(data.rto_min_rc, 0, "bpf_setsockopt(TCP_BPF_RTO_MIN)");

        for (name, s) in connected.sockets() {
            assert!(s.keepalive, "SO_KEEPALIVE of {name}: {s:?}");
            assert_eq!(
                s.keepidle, KEEPIDLE_S as u32,
                "TCP_KEEPIDLE of {name}: {s:?}"
            );
            assert!(
                s.rto_us < KERNEL_RTO_MIN_US,
                "tcpi_rto of {name} is {} us: not below the kernel's 200 ms floor after \
                     {ROUND_TRIPS} round trips with TCP_BPF_RTO_MIN = {RTO_MIN_US} us",
                s.rto_us
            );
        }
        Ok(())
    });
}
