//! sk_lookup (`programs/src/bpf/sk_lookup.bpf.c`): socket steering at the socket lookup of a fresh
//! network namespace, attached with a netns link.
//!
//! `steers_port_range_to_one_socket`: in the namespace, a TCP listener and a UDP socket on
//! 127.0.0.1:[`TARGET`] are put in the program's sockmap; the program steers 127.0.0.1 ports
//! [`RANGE_LO`]..=[`RANGE_HI`] to them. Decoys (a TCP listener and a UDP socket) are bound to
//! [`DECOY`], inside the range, and usual sockets to [`OUTSIDE`], outside it; nothing is bound to
//! [`UNBOUND`], inside it. While the link is attached:
//! - TCP connections to [`DECOY`], [`UNBOUND`] and the range's edges ([`RANGE_LO`], [`RANGE_HI`],
//!   nothing bound) are accepted by the target listener (its accepted peers are the four clients,
//!   each greeting names its port, and the accepted socket keeps the port the client dialled); one
//!   to [`OUTSIDE`] is accepted by its own listener;
//! - datagrams to those four ports arrive at the target UDP socket, one to [`OUTSIDE`] at its own
//!   socket.
//!
//! Then the link is dropped, and the decoys are what they would have been all along: a connection
//! to [`DECOY`] is the first its listener accepts, a sentinel datagram to it the first its socket
//! receives (the steered ones had already arrived at the target, so the order is settled), and
//! [`UNBOUND`] refuses connections. The program's counters saw exactly the four steered connections,
//! the four steered datagrams and the two lookups it passed.
//!
//! No test-run cases: what is under test is where the namespace delivers real traffic.

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, ProgramType};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use programs::sk_lookup::SkLookupSkelBuilder;
use testkit::observe::{self, volatile};
use testkit::{Case, CaseError, CaseResult, NetNs, OrError, floors, probe};

/// The steered range (inclusive).
const RANGE_LO: u16 = 7100;
const RANGE_HI: u16 = 7109;
/// In the range, with decoy sockets bound to it.
const DECOY: u16 = 7101;
/// In the range, nothing bound.
const UNBOUND: u16 = 7105;
/// Outside the range, with its own sockets.
const OUTSIDE: u16 = 7300;
/// Where the target sockets are bound.
const TARGET: u16 = 7200;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A TCP listener on 127.0.0.1:`port` whose accept waits at most [`observe::MUST_ARRIVE`].
fn listen(port: u16) -> CaseResult<TcpListener> {
    let listener = TcpListener::bind(addr(port)).or_error("binding a listener")?;
    let wait = observe::MUST_ARRIVE.as_secs() as _;
    setsockopt(&listener, sockopt::ReceiveTimeout, &TimeVal::new(wait, 0))
        .or_error("setting SO_RCVTIMEO")?;
    Ok(listener)
}

fn udp(port: u16) -> CaseResult<UdpSocket> {
    let sock = UdpSocket::bind(addr(port)).or_error("binding a UDP socket")?;
    sock.set_read_timeout(Some(observe::MUST_ARRIVE))
        .or_error("setting a read timeout")?;
    Ok(sock)
}

/// One accepted connection: the client's address, the local address, the greeting.
#[derive(Debug, PartialEq)]
struct Accepted {
    peer: SocketAddr,
    local: SocketAddr,
    greeting: String,
}

/// Accepts one connection on `listener` and reads its greeting (sent whole, then shut down).
fn accept(listener: &TcpListener) -> CaseResult<Accepted> {
    let (mut stream, peer) = listener.accept().map_err(|e| {
        CaseError::Fail(anyhow::anyhow!(
            "no connection to accept on {:?}: {e}",
            listener.local_addr().ok()
        ))
    })?;
    stream
        .set_read_timeout(Some(observe::MUST_ARRIVE))
        .or_error("setting a read timeout")?;
    let mut greeting = String::new();
    stream.read_to_string(&mut greeting)?;
    Ok(Accepted {
        peer,
        local: stream.local_addr()?,
        greeting,
    })
}

/// Connects to 127.0.0.1:`port`, greets with `to:<port>` and shuts its side down.
fn dial(port: u16) -> CaseResult<TcpStream> {
    let mut stream = TcpStream::connect(addr(port))
        .map_err(|e| CaseError::Fail(anyhow::anyhow!("connecting to 127.0.0.1:{port}: {e}")))?;
    stream.write_all(format!("to:{port}").as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok(stream)
}

/// The accepted connection a client `stream` of `port` must have become.
fn expected(stream: &TcpStream, port: u16) -> CaseResult<Accepted> {
    Ok(Accepted {
        peer: stream.local_addr()?,
        local: addr(port),
        greeting: format!("to:{port}"),
    })
}

/// Puts `sock` at `key` of the sockmap `map` (the value is the socket's fd); the errno on failure.
fn put_socket(map: &dyn MapCore, key: u32, sock: BorrowedFd<'_>) -> Result<(), Errno> {
    let value = sock.as_raw_fd() as u64;
    // SAFETY: key and value are live buffers of the map's key and value sizes (4 and 8 bytes).
    let rc = unsafe {
        libbpf_rs::libbpf_sys::bpf_map_update_elem(
            map.as_fd().as_raw_fd(),
            (&key as *const u32).cast(),
            (&value as *const u64).cast(),
            libbpf_rs::libbpf_sys::BPF_ANY.into(),
        )
    };
    if rc < 0 {
        Err(Errno::from_raw(-rc))
    } else {
        Ok(())
    }
}

#[test]
fn steers_port_range_to_one_socket() {
    Case::run(ProgramType::SkLookup, |case| {
        probe::helper(
            ProgramType::SkLookup,
            libbpf_rs::libbpf_sys::BPF_FUNC_sk_assign,
            "bpf_sk_assign",
        )?;
        let ns = NetNs::new()?;
        let _inside = ns.enter()?;
        let (target_tcp, target_udp) = (listen(TARGET)?, udp(TARGET)?);
        let (decoy_tcp, decoy_udp) = (listen(DECOY)?, udp(DECOY)?);
        let (outside_tcp, outside_udp) = (listen(OUTSIDE)?, udp(OUTSIDE)?);

        let mut object = MaybeUninit::uninit();
        let mut open = SkLookupSkelBuilder::default().open(&mut object)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has a .rodata section");
        rodata.port_lo = RANGE_LO.into();
        rodata.port_hi = RANGE_HI.into();
        let skel = case.load(open)?;
        for (key, sock, id) in [
            (0u32, target_tcp.as_fd(), "map_type.sockmap_tcp_listener"),
            (1u32, target_udp.as_fd(), "map_type.sockmap_udp"),
        ] {
            match put_socket(&skel.maps.targets, key, sock) {
                Ok(()) => {}
                // A sockmap that does not take this kind of socket says EOPNOTSUPP.
                Err(Errno::EOPNOTSUPP) => {
                    return Err(floors::missing(
                        id,
                        "putting the socket in a sockmap: EOPNOTSUPP",
                    ));
                }
                Err(e) => {
                    return Err(CaseError::Fail(anyhow::anyhow!(
                        "putting socket {key} in the sockmap: {e}"
                    )));
                }
            }
        }
        let link = skel
            .progs
            .steer_range
            .attach_netns(ns.as_fd().as_raw_fd())?;

        // TCP: the range lands on the target listener, the rest on its own.
        let steered_ports = [RANGE_LO, DECOY, UNBOUND, RANGE_HI];
        let to_steered = (steered_ports.iter())
            .map(|&port| dial(port))
            .collect::<CaseResult<Vec<_>>>()?;
        let to_outside = dial(OUTSIDE)?;
        let mut at_target = (steered_ports.iter())
            .map(|_| accept(&target_tcp))
            .collect::<CaseResult<Vec<_>>>()?;
        at_target.sort_by_key(|a| a.local.port());
        let want_at_target = (to_steered.iter().zip(steered_ports))
            .map(|(stream, port)| expected(stream, port))
            .collect::<CaseResult<Vec<_>>>()?;
        let at_outside = accept(&outside_tcp)?;
        case.detail(
            "tcp_accepted",
            format!("target: {at_target:?}, outside: {at_outside:?}"),
        );
        assert_eq!(
            at_target, want_at_target,
            "connections the target listener on {TARGET} accepted"
        );
        assert_eq!(
            at_outside,
            expected(&to_outside, OUTSIDE)?,
            "the connection the listener on {OUTSIDE} accepted"
        );

        // UDP: the same.
        let sender = UdpSocket::bind(addr(0)).or_error("binding the sender")?;
        for port in steered_ports.into_iter().chain([OUTSIDE]) {
            sender.send_to(format!("to:{port}").as_bytes(), addr(port))?;
        }
        let mut steered = Vec::new();
        for _ in steered_ports {
            let mut buf = [0u8; 64];
            let (n, _) = target_udp.recv_from(&mut buf).map_err(|e| {
                CaseError::Fail(anyhow::anyhow!(
                    "the target UDP socket received {steered:?}, then nothing: {e}"
                ))
            })?;
            steered.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        steered.sort();
        let mut buf = [0u8; 64];
        let n = outside_udp
            .recv(&mut buf)
            .map_err(|e| CaseError::Fail(anyhow::anyhow!("no datagram on port {OUTSIDE}: {e}")))?;
        let at_outside_udp = String::from_utf8_lossy(&buf[..n]).into_owned();
        case.detail(
            "udp_received",
            serde_json::json!({"target": steered, "outside": at_outside_udp}),
        );
        assert_eq!(
            steered,
            steered_ports.map(|port| format!("to:{port}")),
            "datagrams the target UDP socket on {TARGET} received"
        );
        assert_eq!(
            at_outside_udp,
            format!("to:{OUTSIDE}"),
            "the datagram on port {OUTSIDE}"
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let counts = (
            volatile(&bss.steered_tcp),
            volatile(&bss.steered_udp),
            volatile(&bss.passed),
        );
        case.detail("steered_tcp_udp_passed", counts);
        assert_eq!(
            counts,
            (4, 4, 2),
            "the program's counters (steered connections, steered datagrams, lookups passed)"
        );

        // Detached: the decoys get their own traffic, and got none before.
        // Detached by the link, not only by closing its fd: a child another test forks meanwhile
        // holds a copy of the fd until it exits.
        link.detach().or_error("detaching the link")?;
        drop(link);
        let after = dial(DECOY)?;
        assert_eq!(
            accept(&decoy_tcp)?,
            expected(&after, DECOY)?,
            "the first connection the decoy listener on {DECOY} accepted (after detaching)"
        );
        sender.send_to(b"sentinel", addr(DECOY))?;
        assert_eq!(
            observe::texts_before(&decoy_udp, "sentinel")?,
            Vec::<String>::new(),
            "datagrams the decoy UDP socket on {DECOY} received before the sentinel sent \
                 after detaching"
        );
        let refused = TcpStream::connect(addr(UNBOUND)).err().map(|e| e.kind());
        assert_eq!(
            refused,
            Some(std::io::ErrorKind::ConnectionRefused),
            "connecting to the unbound port {UNBOUND} after detaching"
        );
        assert_eq!(
            (volatile(&bss.steered_tcp), volatile(&bss.steered_udp)),
            (4, 4),
            "steering counted after the link was dropped"
        );
        Ok(())
    });
}
