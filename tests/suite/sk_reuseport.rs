//! sk_reuseport (`programs/src/bpf/sk_reuseport.bpf.c`): a program attached to a SO_REUSEPORT
//! group (SO_ATTACH_REUSEPORT_EBPF) picks which socket of the group receives each packet or
//! connection, from a REUSEPORT_SOCKARRAY (bpf_sk_select_reuseport), or refuses it (SK_DROP).
//!
//! Inside a fresh network namespace:
//! - `udp_placement_by_payload`: three UDP sockets share 127.0.0.1:port, at keys 0..2 of the
//!   array (key 3 is left empty). A sender sends 42 datagrams; the first payload byte picks the
//!   socket (`0`..`2`), drops (`x`), names the empty key (`3`: the helper fails with ENOENT and
//!   the program drops), or leaves the choice to the kernel (`h`: hashed onto one socket of the
//!   group). Every socket must receive exactly the datagrams addressed to it, the dropped ones
//!   must arrive nowhere and each `h` datagram exactly once; the program's counters account for
//!   every datagram.
//! - `tcp_placement_by_source_port`: four TCP listeners share a port, at keys 0..3. A SYN carries
//!   no payload, so the program picks the listener from the low two bits of the client's source
//!   port and drops SYNs from ports ending in 0xff. Clients bound to chosen source ports connect:
//!   each listener must accept exactly the clients its key names; a dropped SYN makes connect()
//!   fail (ECONNREFUSED on 6.18: no listener means a reset; the errno is snapshotted).
//!
//! "Arrived nowhere" is shown by order: behind the datagrams (connections) under test, the case
//! sends one sentinel datagram (connects one sentinel client) to each socket of the group, placed
//! by the program like the others. A socket's queue keeps the order of arrival, so what a socket
//! received before its sentinel is all that the earlier ones brought it.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for sk_reuseport
//! (`test_run_is_not_implemented` records its answer).

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use harness::observe::volatile;
use harness::{Case, NetNs, OrError, errno, probe, test_run};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, ProgramType};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket,
    sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};
use programs::sk_reuseport::{SkReuseportSkel, SkReuseportSkelBuilder};

/// How long datagrams and connections that must arrive may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// ENOENT, which bpf_sk_select_reuseport returns for an empty key.
const ENOENT: i64 = 2;

/// Loads the program (after probing the type and its helper).
fn load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> harness::CaseResult<SkReuseportSkel<'obj>> {
    probe::helper(
        ProgramType::SkReuseport,
        libbpf_rs::libbpf_sys::BPF_FUNC_sk_select_reuseport,
        "bpf_sk_select_reuseport",
    )?;
    case.load(SkReuseportSkelBuilder::default().open(object)?)
}

/// A socket of `kind` with SO_REUSEPORT, bound to 127.0.0.1:`port`.
fn reuseport_socket(kind: SockType, port: u16) -> nix::Result<OwnedFd> {
    let fd = socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )?;
    Ok(fd)
}

/// Puts `sock` at `key` of the REUSEPORT_SOCKARRAY.
fn put(skel: &SkReuseportSkel, key: u32, sock: &impl AsRawFd) -> libbpf_rs::Result<()> {
    let fd = sock.as_raw_fd() as u32;
    skel.maps
        .sockets
        .update(&key.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
}

/// Datagrams placed by their first byte; dropped ones arrive nowhere.
#[test]
fn udp_placement_by_payload() {
    Case::run(ProgramType::SkReuseport, |case| {
        let ns = NetNs::new()?;
        let _inside = ns.enter()?;
        let mut object = MaybeUninit::uninit();
        let skel = load(case, &mut object)?;
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");

        let first = reuseport_socket(SockType::Datagram, 0).or_error("binding a UDP socket")?;
        let port = UdpSocket::from(first.try_clone().or_error("dup")?)
            .local_addr()
            .or_error("reading the bound port")?
            .port();
        let mut group = vec![UdpSocket::from(first)];
        for _ in 1..3 {
            let fd = reuseport_socket(SockType::Datagram, port)
                .or_error("binding a UDP socket to the group's port")?;
            group.push(UdpSocket::from(fd));
        }
        harness::sockopt::attach_reuseport(&group[0], &skel.progs.select_by_payload)?;
        for (key, sock) in group.iter().enumerate() {
            put(&skel, key as u32, sock)?;
        }

        let sender = UdpSocket::bind("127.0.0.1:0").or_error("binding the sender")?;
        let kinds = ['0', '1', '2', 'x', '3', 'h'];
        let payloads: Vec<String> = (0..42)
            .map(|seq| format!("{}-{seq}", kinds[(seq * 5 + seq / 6) % kinds.len()]))
            .collect();
        // Last, one sentinel per socket, placed by its first byte like the others.
        let sentinels: Vec<String> = (0..group.len()).map(|k| format!("{k}-sentinel")).collect();
        for p in payloads.iter().chain(&sentinels) {
            sender.send_to(p.as_bytes(), ("127.0.0.1", port))?;
        }
        let kind_count = |k: char| payloads.iter().filter(|p| p.starts_with(k)).count();
        let delivered_expected = payloads.len() - kind_count('x') - kind_count('3');

        let received = receive_to_sentinels(&group, &sentinels)?;
        case.detail("received", &received);
        case.detail(
            "program",
            serde_json::json!({
                "selected": volatile(&bss.selected),
                "dropped": volatile(&bss.dropped),
                "unchosen": volatile(&bss.unchosen),
                "select_errors": volatile(&bss.select_errors),
                "last_error": volatile(&bss.last_error),
            }),
        );
        for (i, got) in received.iter().enumerate() {
            let mine: Vec<&String> = got.iter().filter(|p| !p.starts_with('h')).collect();
            let expected: Vec<&String> = payloads
                .iter()
                .filter(|p| p.starts_with(char::from(b'0' + i as u8)))
                .collect();
            assert_eq!(
                mine, expected,
                "datagrams socket {i} received (besides hashed `h`)"
            );
        }
        let mut hashed: Vec<&String> = received
            .iter()
            .flatten()
            .filter(|p| p.starts_with('h'))
            .collect();
        hashed.sort();
        let mut h_sent: Vec<&String> = payloads.iter().filter(|p| p.starts_with('h')).collect();
        h_sent.sort();
        assert_eq!(hashed, h_sent, "`h` datagrams, each on exactly one socket");
        let total: usize = received.iter().map(Vec::len).sum();
        assert_eq!(
            total, delivered_expected,
            "datagrams delivered in all (x and 3 dropped)"
        );

        // The program ran once per datagram (the sentinels are selections).
        assert_eq!(
            volatile(&bss.selected),
            (kind_count('0') + kind_count('1') + kind_count('2') + sentinels.len()) as u64,
            "selections (the sentinels included)"
        );
        assert_eq!(
            volatile(&bss.dropped),
            kind_count('x') as u64,
            "SK_DROP for `x`"
        );
        assert_eq!(
            volatile(&bss.select_errors),
            kind_count('3') as u64,
            "failed selections of the empty key 3"
        );
        assert_eq!(
            volatile(&bss.last_error),
            -ENOENT,
            "bpf_sk_select_reuseport's error for an empty key"
        );
        assert_eq!(
            volatile(&bss.unchosen),
            kind_count('h') as u64,
            "SK_PASS without a choice"
        );
        Ok(())
    });
}

/// Connections placed by the client's source port; a dropped SYN fails the connect().
#[test]
fn tcp_placement_by_source_port() {
    Case::run(ProgramType::SkReuseport, |case| {
        let ns = NetNs::new()?;
        let _inside = ns.enter()?;
        let mut object = MaybeUninit::uninit();
        let skel = load(case, &mut object)?;
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");

        let mut listeners = Vec::new();
        let mut port = 0;
        for _ in 0..4 {
            let fd = reuseport_socket(SockType::Stream, port).or_error("binding a listener")?;
            listen(&fd, Backlog::new(16).or_error("backlog")?).or_error("listen")?;
            let listener = TcpListener::from(fd);
            port = listener
                .local_addr()
                .or_error("reading the bound port")?
                .port();
            listeners.push(listener);
        }
        harness::sockopt::attach_reuseport(&listeners[0], &skel.progs.select_by_payload)?;
        for (key, l) in listeners.iter().enumerate() {
            put(&skel, key as u32, l)?;
        }

        // Source ports: two per listener (low two bits = key), and two the program drops.
        let accepted_ports: Vec<u16> = (0..8).map(|i| 40000 + i).collect();
        let dropped_ports = [40191u16, 40447]; // 0x9cff, 0x9dff
        let mut clients = Vec::new();
        for &sport in &accepted_ports {
            clients.push(connect_from(sport, port).map_err(|e| {
                harness::CaseError::Fail(anyhow::anyhow!("connect() from source port {sport}: {e}"))
            })?);
        }
        let mut drop_answers = Vec::new();
        for &sport in &dropped_ports {
            drop_answers.push(match connect_from(sport, port) {
                Ok(_) => "connected".to_owned(),
                Err(e) => errno::describe(&e),
            });
        }
        // Last, one sentinel client per listener (low two bits = key).
        let sentinel_ports: Vec<u16> = (0..listeners.len() as u16).map(|k| 40100 + k).collect();
        for &sport in &sentinel_ports {
            clients.push(connect_from(sport, port).map_err(|e| {
                harness::CaseError::Fail(anyhow::anyhow!(
                    "connect() of the sentinel client from source port {sport}: {e}"
                ))
            })?);
        }

        let placed = accept_to_sentinels(&listeners, &sentinel_ports)?;
        case.detail("accepted_source_ports", &placed);
        case.detail("dropped_connect", &drop_answers);
        for (key, got) in placed.iter().enumerate() {
            let expected: Vec<u16> = accepted_ports
                .iter()
                .copied()
                .filter(|p| usize::from(p & 3) == key)
                .collect();
            assert_eq!(got, &expected, "source ports listener {key} accepted");
        }
        let observed = serde_json::json!({ "connect_with_dropped_syn": drop_answers });
        case.snapshot(&case.snapshot_name("dropped_syn"), &observed);
        assert!(
            drop_answers.iter().all(|a| a != "connected"),
            "a connect() whose SYN the program dropped succeeded: {drop_answers:?}"
        );
        // One run per SYN: a dropped SYN is answered by a reset, not sent again.
        assert_eq!(
            volatile(&bss.dropped),
            dropped_ports.len() as u64,
            "SYNs the program dropped"
        );
        assert_eq!(
            volatile(&bss.selected),
            (accepted_ports.len() + sentinel_ports.len()) as u64,
            "listener selections, one per accepted connection (the sentinels included)"
        );
        drop(clients);
        Ok(())
    });
}

/// BPF_PROG_TEST_RUN on sk_reuseport programs: the kernel does not implement it for this type;
/// the case records its answer and fails if that ever changes (then add test-run cases).
#[test]
fn test_run_is_not_implemented() {
    Case::run(ProgramType::SkReuseport, |case| {
        probe::prog_type(ProgramType::SkReuseport)?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(SkReuseportSkelBuilder::default().open(&mut object)?)?;
        test_run::assert_not_implemented(case, &skel.progs.select_by_payload, &[0; 64])
    });
}

/// Reads socket `k` of the group until `sentinels[k]` arrived; per socket, the payloads it
/// received before its sentinel, in order. The deadline is only for the sentinels (they must
/// arrive): its expiry is an error naming the sentinel.
fn receive_to_sentinels(group: &[UdpSocket], sentinels: &[String]) -> io::Result<Vec<Vec<String>>> {
    let deadline = Instant::now() + TIMEOUT;
    let mut received = vec![Vec::new(); group.len()];
    let mut buf = [0u8; 256];
    for ((sock, sentinel), got) in group.iter().zip(sentinels).zip(&mut received) {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let waited = if left.is_zero() {
                Err(io::ErrorKind::TimedOut.into())
            } else {
                sock.set_read_timeout(Some(left))?;
                sock.recv(&mut buf)
            };
            let n = match waited {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the sentinel datagram `{sentinel}` did not arrive within {TIMEOUT:?}"
                        ),
                    ));
                }
                Err(e) => return Err(e),
            };
            let payload = String::from_utf8_lossy(&buf[..n]).into_owned();
            if payload == *sentinel {
                break;
            }
            got.push(payload);
        }
    }
    Ok(received)
}

/// A TCP connection to 127.0.0.1:`port` from source port `sport`, with a 2 s timeout.
fn connect_from(sport: u16, port: u16) -> io::Result<TcpStream> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, sport)),
    )?;
    // SO_SNDTIMEO bounds a blocking connect().
    setsockopt(&fd, sockopt::SendTimeout, &TimeVal::new(2, 0))?;
    nix::sys::socket::connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )?;
    Ok(TcpStream::from(fd))
}

/// Accepts on listener `k` until the client from `sentinel_ports[k]` arrived; per listener, the
/// source ports of the clients it accepted before its sentinel, sorted. The deadline is only for
/// the sentinels (they must arrive): its expiry is an error naming the sentinel.
fn accept_to_sentinels(
    listeners: &[TcpListener],
    sentinel_ports: &[u16],
) -> io::Result<Vec<Vec<u16>>> {
    let deadline = Instant::now() + TIMEOUT;
    let mut placed = vec![Vec::new(); listeners.len()];
    for ((listener, &sentinel), got) in listeners.iter().zip(sentinel_ports).zip(&mut placed) {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let accepted = if left.is_zero() {
                Err(io::ErrorKind::TimedOut.into())
            } else {
                // accept() waits at most SO_RCVTIMEO (at least 1 µs: zero waits for ever).
                let micros = left.as_micros().max(1) as i64;
                setsockopt(
                    listener,
                    sockopt::ReceiveTimeout,
                    &TimeVal::microseconds(micros),
                )?;
                listener.accept()
            };
            let peer = match accepted {
                Ok((_, peer)) => peer.port(),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the sentinel client from source port {sentinel} was not accepted \
                             within {TIMEOUT:?}"
                        ),
                    ));
                }
                Err(e) => return Err(e),
            };
            if peer == sentinel {
                break;
            }
            got.push(peer);
        }
        got.sort_unstable();
    }
    Ok(placed)
}
