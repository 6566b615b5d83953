//! sk_reuseport_migrate (`programs/src/bpf/sk_reuseport_migrate.bpf.c`): a SO_REUSEPORT group's
//! program loaded for BPF_SK_REUSEPORT_SELECT_OR_MIGRATE (Linux 5.14+) decides where the requests
//! of a closing listener go.
//!
//! `closed_listener_requests_move_to_the_chosen_one`, in a fresh network namespace: three TCP
//! listeners L0, L1, L2 share 127.0.0.1:[`PORT`] (keys 0..2 of the program's sockarray); the
//! program, attached through L0, sends every SYN to L0. [`CLIENTS`] clients connect from chosen
//! source ports and each sends its port; once L0's accept queue holds them all (TCP_INFO of a
//! listener: its queue length), the test closes L0. Closing runs the program once per queued
//! request: it moves each to L2, except the client from [`DROPPED`], which it drops. Then:
//! - L2 accepts exactly the other clients (by peer address), each with its greeting, and each
//!   client reads the answer its migrated connection sends: the requests moved whole;
//! - L1 has nothing to accept (the program chose; no hash fallback), and neither has L2 more;
//! - the dropped client's connection is reset (ECONNRESET);
//! - the namespace's MIB counters TCPMigrateReqSuccess / TCPMigrateReqFailure are exactly the
//!   moved / dropped counts, while its `net.ipv4.tcp_migrate_req` is 0: the program's attach type
//!   enables migration by itself;
//! - the program counted one SYN per client and saw the requests in TCP_ESTABLISHED.
//!
//! The close migrates synchronously (inet_csk_listen_stop inside close(2)), so what L1 and L2
//! hold afterwards is read without waiting.

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, ProgramType, libbpf_sys};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket,
    sockopt,
};
use programs::sk_reuseport_migrate::{SkReuseportMigrateSkel, SkReuseportMigrateSkelBuilder};
use testkit::observe::{self, volatile};
use testkit::{Case, CaseError, NetNs, OrError, attach_type, mib, probe};

const MIGRATE: &str = "attach_type.sk_reuseport_migrate";
/// The group's port (the namespace is the case's own).
const PORT: u16 = 7300;
/// The clients' source ports.
const CLIENTS: [u16; 4] = [7301, 7302, 7303, 7304];
/// The client whose request the program drops when it migrates.
const DROPPED: u16 = 7303;
/// The listener the program moves requests to.
const TARGET: u32 = 2;
/// BPF_TCP_ESTABLISHED: the state of a request in an accept queue.
const ESTABLISHED: u32 = 1;
/// How long a read may wait for bytes or a reset that must come.
const WAIT: Duration = Duration::from_secs(5);

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A TCP listener of the group on 127.0.0.1:[`PORT`].
fn listener() -> nix::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, PORT)),
    )?;
    listen(&fd, Backlog::new(16)?)?;
    Ok(fd)
}

/// Accepts without waiting until the queue is empty: the peers and what each sent first.
fn accept_queued(l: &TcpListener) -> std::io::Result<Vec<(SocketAddr, String, TcpStream)>> {
    l.set_nonblocking(true)?;
    let mut got = Vec::new();
    loop {
        match l.accept() {
            Ok((mut s, peer)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(WAIT))?;
                let mut buf = [0u8; 32];
                let n = s.read(&mut buf)?;
                got.push((peer, String::from_utf8_lossy(&buf[..n]).into_owned(), s));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(got),
            Err(e) => return Err(e),
        }
    }
}

fn counters(skel: &SkReuseportMigrateSkel<'_>) -> serde_json::Value {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    serde_json::json!({
        "syn_selected": volatile(&bss.syn_selected),
        "migrated": volatile(&bss.migrated),
        "migrate_dropped": volatile(&bss.migrate_dropped),
        "select_errors": volatile(&bss.select_errors),
        "migrating_state": volatile(&bss.migrating_state),
    })
}

#[test]
fn closed_listener_requests_move_to_the_chosen_one() {
    Case::run(ProgramType::SkReuseport, |case| {
        probe::helper(
            ProgramType::SkReuseport,
            libbpf_sys::BPF_FUNC_sk_select_reuseport,
            "bpf_sk_select_reuseport",
        )?;
        let ns = NetNs::new()?;
        let _inside = ns.enter()?;
        let mut object = MaybeUninit::uninit();
        let mut open = SkReuseportMigrateSkelBuilder::default().open(&mut object)?;
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.migrate_key = TARGET;
        rodata.drop_client_port = DROPPED;
        let skel = attach_type::load(case, MIGRATE, open)?;

        let mut group = Vec::new();
        for _ in 0..3 {
            group.push(TcpListener::from(
                listener().or_error("a listener of the group")?,
            ));
        }
        attach_type::errno(MIGRATE, "SO_ATTACH_REUSEPORT_EBPF", || {
            testkit::sockopt::attach_reuseport(&group[0], &skel.progs.select_or_migrate)
        })?;
        for (key, l) in group.iter().enumerate() {
            let fd = l.as_raw_fd() as u64;
            skel.maps.listeners.update(
                &(key as u32).to_ne_bytes(),
                &fd.to_ne_bytes(),
                MapFlags::ANY,
            )?;
        }

        let mut clients = Vec::new();
        for port in CLIENTS {
            let mut c = testkit::stream::connect_from(localhost(port), localhost(PORT))
                .map_err(|e| CaseError::Fail(anyhow::anyhow!("connecting from {port}: {e}")))?;
            c.write_all(format!("client:{port}").as_bytes())?;
            c.set_read_timeout(Some(WAIT))?;
            clients.push(c);
        }
        let queued = observe::poll(observe::MUST_ARRIVE, || {
            let n = testkit::sockopt::tcp_info(&group[0]).ok()?.tcpi_unacked;
            (n as usize == CLIENTS.len()).then_some(n)
        });
        case.detail("l0_queue", queued);
        assert_eq!(
            queued,
            Some(CLIENTS.len() as u32),
            "L0's accept queue (every SYN sent to L0)"
        );
        let migrate_req = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
            .or_error("reading net.ipv4.tcp_migrate_req")?;
        assert_eq!(migrate_req.trim(), "0", "net.ipv4.tcp_migrate_req here");

        drop(group.remove(0));

        let at_l2 = accept_queued(&group[1]).or_error("accepting on L2")?;
        let at_l1 = accept_queued(&group[0]).or_error("accepting on L1")?;
        let peers: Vec<(SocketAddr, String)> =
            at_l2.iter().map(|(p, g, _)| (*p, g.clone())).collect();
        case.detail("accepted_on_l2", format!("{peers:?}"));
        case.detail("accepted_on_l1", at_l1.len());
        let moved: Vec<u16> = CLIENTS.into_iter().filter(|&p| p != DROPPED).collect();
        let expected: Vec<(SocketAddr, String)> = moved
            .iter()
            .map(|&p| (localhost(p), format!("client:{p}")))
            .collect();
        let mut sorted = peers.clone();
        sorted.sort();
        assert_eq!(
            sorted, expected,
            "connections L2 accepted, with their greetings"
        );
        assert_eq!(at_l1.len(), 0, "connections L1 accepted");

        for (peer, _, mut s) in at_l2 {
            s.write_all(format!("served:{}", peer.port()).as_bytes())?;
        }
        let mut answers = Vec::new();
        for (port, c) in CLIENTS.iter().zip(&mut clients) {
            let mut buf = [0u8; 32];
            answers.push(match c.read(&mut buf) {
                Ok(n) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) => Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
            });
            case.detail(&format!("client_{port}"), format!("{:?}", answers.last()));
        }
        let expected: Vec<Result<String, Errno>> = CLIENTS
            .iter()
            .map(|&p| {
                if p == DROPPED {
                    Err(Errno::ECONNRESET)
                } else {
                    Ok(format!("served:{p}"))
                }
            })
            .collect();
        assert_eq!(answers, expected, "what each client read after the close");

        let mibs = (
            mib::counter("TcpExt", "TCPMigrateReqSuccess")?,
            mib::counter("TcpExt", "TCPMigrateReqFailure")?,
        );
        case.detail("tcp_migrate_req_success_failure", mibs);
        assert_eq!(
            mibs,
            (moved.len() as u64, 1),
            "the namespace's TCPMigrateReqSuccess and TCPMigrateReqFailure"
        );
        let program = counters(&skel);
        case.detail("program", &program);
        assert_eq!(
            program,
            serde_json::json!({
                "syn_selected": CLIENTS.len(), "migrated": moved.len(), "migrate_dropped": 1,
                "select_errors": 0, "migrating_state": ESTABLISHED,
            }),
            "the program's counters"
        );
        Ok(())
    });
}
