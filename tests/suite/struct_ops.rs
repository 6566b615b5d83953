//! struct_ops (`programs/src/bpf/struct_ops.bpf.c`, `struct_ops_plain.bpf.c`): a TCP congestion
//! control written in BPF, registered under a name unique to this process and case and selected
//! with `TCP_CONGESTION` on loopback connections inside a fresh netns. Each selecting socket reads
//! the name back, is initialised by the program exactly once (init records its local port), and
//! grows its cwnd past the initial 10 segments while it sends, which only the program does (through
//! the tcp_slow_start and tcp_cong_avoid_ai kfuncs, 5.13+, or by writing snd_cwnd itself, 5.6+); a
//! control connection on the default algorithm is never seen by the program. Once unregistered,
//! selecting the name fails with `ENOENT` and a new connection reads back the namespace's default.
//! cwnd_event, ssthresh and undo_cwnd calls are recorded, not required: a lossless loopback never
//! calls the latter two, and the first sees only CA_EVENT_TX_START there, which newer kernels (the
//! 7.3 of the matrix) deliver through a callback of its own (`cwnd_event_tx_start`).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::OwnedFd;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{ErrorKind, Link, MapMut, ProgramType};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, connect, getsockopt, setsockopt, socket,
    sockopt::TcpCongestion,
};
use programs::struct_ops::StructOpsSkelBuilder;
use programs::struct_ops_plain::StructOpsPlainSkelBuilder;
use testkit::observe::volatile;
use testkit::{Case, CaseError, CaseResult, LoadOutcome, LogLevel, NetNs, OrError, ftrace};

/// Sockets that select the BPF algorithm.
const SOCKETS: usize = 2;
/// Bytes each connection carries: many segments, many ACKs.
const BYTES: usize = 4 << 20;
/// The kernel's initial congestion window (TCP_INIT_CWND, segments).
const INIT_CWND: u32 = 10;

#[test]
fn reno_from_kfuncs() {
    Case::run(ProgramType::StructOps, |case| {
        let name = unique_name('k');
        let mut object = MaybeUninit::uninit();
        let mut open = StructOpsSkelBuilder::default().open(&mut object)?;
        set_name(&mut open.struct_ops.bpfconf_reno_mut().name, &name);
        let (loaded, outcome) = case.try_load(open, LogLevel::Stats);
        let mut skel =
            loaded.map_err(|e| refused("struct_ops.tcp_congestion_ops_kfuncs", &outcome, &e))?;
        let link = register(&mut skel.maps.bpfconf_reno, &name)?;
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        selected_on_loopback(case, &name, link, || Counters {
            inits: volatile(&bss.inits),
            init_ports: volatile(&bss.init_ports).to_vec(),
            cong_avoids: volatile(&bss.cong_avoids),
            cwnd_events: volatile(&bss.cwnd_events),
            ssthreshes: volatile(&bss.ssthreshes),
            undos: volatile(&bss.undos),
        })
    });
}

#[test]
fn reno_writing_tcp_sock() {
    Case::run(ProgramType::StructOps, |case| {
        let name = unique_name('w');
        let mut object = MaybeUninit::uninit();
        let mut open = StructOpsPlainSkelBuilder::default().open(&mut object)?;
        set_name(&mut open.struct_ops.plain_reno_mut().name, &name);
        let (loaded, outcome) = case.try_load(open, LogLevel::Stats);
        let mut skel =
            loaded.map_err(|e| refused("struct_ops.tcp_congestion_ops", &outcome, &e))?;
        let link = register(&mut skel.maps.plain_reno, &name)?;
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        selected_on_loopback(case, &name, link, || Counters {
            inits: volatile(&bss.inits),
            init_ports: volatile(&bss.init_ports).to_vec(),
            cong_avoids: volatile(&bss.cong_avoids),
            cwnd_events: volatile(&bss.cwnd_events),
            ssthreshes: volatile(&bss.ssthreshes),
            undos: volatile(&bss.undos),
        })
    });
}

/// The programs' counters (`.bss`).
struct Counters {
    inits: u32,
    init_ports: Vec<u16>,
    cong_avoids: u64,
    cwnd_events: u64,
    ssthreshes: u64,
    undos: u64,
}

/// `bpfconf<tag><pid>`: TCP_CA_NAME_MAX is 16 with the NUL and a pid has at most 7 digits;
/// algorithm names are global to the machine, and each case registers its own.
fn unique_name(tag: char) -> String {
    format!("bpfconf{tag}{}", std::process::id())
}

/// Writes `name` into the struct_ops map's `name` member before load.
fn set_name(field: &mut [i8; 16], name: &str) {
    *field = [0; 16];
    for (slot, byte) in field.iter_mut().zip(name.bytes()) {
        *slot = byte as i8;
    }
}

/// Registers the algorithm of struct_ops map `map` (libbpf updates its element; dropping the
/// link deletes it, which unregisters the algorithm).
fn register(map: &mut MapMut<'_>, name: &str) -> CaseResult<Link> {
    map.attach_struct_ops().map_err(|e| {
        ftrace::refused(
            "struct_ops.tcp_congestion_ops",
            e.kind() == ErrorKind::PermissionDenied,
            format!("registering {name}: {e:#}"),
        )
    })
}

/// Selects the registered algorithm `name` on [`SOCKETS`] connections in a new netns, checks what
/// its `counters` say and the senders' cwnd, then unregisters it (drops `link`) and checks the
/// fallback.
fn selected_on_loopback(
    case: &mut Case,
    name: &str,
    link: Link,
    counters: impl Fn() -> Counters,
) -> CaseResult {
    case.detail("name", name);
    let ns = NetNs::new()?;
    let _inside = ns.enter()?;
    let default = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .or_error("reading the netns's default congestion control")?
        .trim()
        .to_owned();
    case.detail("default", &default);

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut ports = Vec::new();
    let mut cwnds = Vec::new();
    for _ in 0..SOCKETS {
        let sock = tcp_socket()?;
        setsockopt(&sock, TcpCongestion, &OsString::from(name))?;
        assert_eq!(
            getsockopt(&sock, TcpCongestion)?,
            OsString::from(name),
            "the congestion control a selecting socket reads back"
        );
        let (client, cwnd) = transfer(sock, &listener)?;
        ports.push(client.local_addr()?.port());
        cwnds.push(cwnd);
    }
    let (control, control_cwnd) = transfer(tcp_socket()?, &listener)?;
    assert_eq!(
        getsockopt(&control, TcpCongestion)?,
        OsString::from(&default),
        "the control socket's congestion control"
    );

    let seen = counters();
    let mut init_ports =
        seen.init_ports[..(seen.inits as usize).min(seen.init_ports.len())].to_vec();
    case.detail("ports", &ports);
    case.detail("init_ports", &init_ports);
    case.detail("cwnds", &cwnds);
    case.detail("control_cwnd", control_cwnd);
    case.detail("cong_avoids", seen.cong_avoids);
    case.detail("cwnd_events", seen.cwnd_events);
    case.detail("ssthreshes", seen.ssthreshes);
    case.detail("undos", seen.undos);
    assert_eq!(seen.inits as usize, SOCKETS, "init calls");
    init_ports.sort_unstable();
    ports.sort_unstable();
    assert_eq!(init_ports, ports, "the local ports of the sockets init saw");
    assert!(seen.cong_avoids > 0, "cong_avoid never ran");
    for cwnd in &cwnds {
        assert!(
            *cwnd > INIT_CWND,
            "a selecting sender's cwnd after {BYTES} bytes: {cwnds:?}"
        );
    }

    drop(link);
    let after = tcp_socket()?;
    assert_eq!(
        setsockopt(&after, TcpCongestion, &OsString::from(name)),
        Err(Errno::ENOENT),
        "selecting {name} once it is unregistered"
    );
    let (after, _) = transfer(after, &listener)?;
    assert_eq!(
        getsockopt(&after, TcpCongestion)?,
        OsString::from(&default),
        "a new connection's congestion control once {name} is unregistered"
    );
    assert_eq!(counters().inits as usize, SOCKETS, "init calls at the end");
    Ok(())
}

/// A refused load: `EPERM` is judged as a trampoline refusal (the callbacks are called through
/// trampolines), anything else against the floor of `id`.
fn refused(id: &str, outcome: &LoadOutcome, e: &libbpf_rs::Error) -> CaseError {
    ftrace::refused(
        id,
        outcome.errno.as_deref() == Some("EPERM"),
        format!(
            "loading the congestion control: {} ({e:#})",
            outcome.message.clone().unwrap_or_default()
        ),
    )
}

/// A new, unconnected IPv4 TCP socket.
fn tcp_socket() -> CaseResult<OwnedFd> {
    Ok(socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )?)
}

/// Connects `sock` to `listener`, sends [`BYTES`] over it and returns the client with its cwnd
/// (segments) once the peer has read everything and closed: the peer's FIN follows its last ACK.
fn transfer(sock: OwnedFd, listener: &TcpListener) -> CaseResult<(TcpStream, u32)> {
    let addr = match listener.local_addr()? {
        std::net::SocketAddr::V4(a) => a,
        other => return Err(CaseError::Error(anyhow::anyhow!("listener on {other}"))),
    };
    connect_v4(&sock, addr)?;
    let mut client = TcpStream::from(sock);
    let (mut server, _) = listener.accept()?;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let mut sink = Vec::with_capacity(BYTES);
        server.read_to_end(&mut sink)?;
        Ok(sink.len())
    });
    client.write_all(&vec![0x5a; BYTES])?;
    client.shutdown(Shutdown::Write)?;
    let received = reader
        .join()
        .map_err(|_| CaseError::Error(anyhow::anyhow!("the reader panicked")))??;
    assert_eq!(received, BYTES, "bytes the peer received");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest)?;
    let cwnd = testkit::sockopt::tcp_info(&client)?.tcpi_snd_cwnd;
    Ok((client, cwnd))
}

fn connect_v4(sock: &OwnedFd, addr: SocketAddrV4) -> CaseResult {
    use std::os::fd::AsRawFd;
    Ok(connect(sock.as_raw_fd(), &SockaddrIn::from(addr))?)
}
