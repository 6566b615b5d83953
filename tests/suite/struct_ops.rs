//! struct_ops (`programs/src/bpf/struct_ops.bpf.c`, `struct_ops_plain.bpf.c`): a TCP congestion
//! control written in BPF, registered under a name unique to this process and case and selected
//! with `TCP_CONGESTION` on loopback connections inside a fresh netns. Each selecting socket reads
//! the name back and is initialised by the program exactly once (init records its local port and
//! sets its slow start threshold to [`INIT_SSTHRESH`]: a lossless loopback never lowers the
//! initial "infinite" one, so the connection would never leave slow start); a control connection
//! on the default algorithm is never seen by the program. Once unregistered, selecting the name
//! fails with `ENOENT` and a new connection reads back the namespace's default.
//!
//! Every cong_avoid call is recorded whole (the socket, the cwnd, snd_cwnd_cnt and ssthresh it
//! found, the segments acked, the cwnd and snd_cwnd_cnt it left) and checked exactly against
//! Reno's rules (RFC 5681: slow start adds a segment per segment acked up to ssthresh, congestion
//! avoidance a segment per window acked), as each program implements them: the kfunc object
//! through the kernel's `tcp_slow_start` and `tcp_cong_avoid_ai` (net/ipv4/tcp_cong.c, 5.13+),
//! whose exact arithmetic [`kfunc_reno`] restates; the plain one by writing snd_cwnd and
//! snd_cwnd_cnt itself (5.6+), restated by [`plain_reno`]. Both phases must have been checked, and
//! congestion avoidance must have grown a window, so a window that grows slower or faster than
//! Reno's fails. Each socket's first call finds the initial window (10 segments), an empty
//! counter and the threshold init set.
//!
//! cwnd_event, ssthresh and undo_cwnd calls are recorded, not required: a lossless loopback never
//! calls the latter two, and the first sees only CA_EVENT_TX_START there, which newer kernels (the
//! 7.3 of the matrix) deliver through a callback of its own (`cwnd_event_tx_start`).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::OwnedFd;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{Link, MapMut, ProgramType};
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
/// The slow start threshold init sets (segments): a few acked segments above the initial window,
/// so that most of each transfer runs in congestion avoidance.
const INIT_SSTHRESH: u32 = 16;

/// A reader of [`Counters`] from either object's `.bss` (two generated types with the same fields).
macro_rules! counters {
    ($bss:expr) => {
        || Counters {
            inits: volatile(&$bss.inits),
            init_ports: volatile(&$bss.init_ports).to_vec(),
            cong_avoids: volatile(&$bss.cong_avoids),
            calls: calls(&volatile(&$bss.calls), volatile(&$bss.cong_avoids), |c| {
                Call {
                    port: c.port,
                    acked: c.acked,
                    ssthresh: c.ssthresh,
                    clamp: c.clamp,
                    before: (c.cwnd_before, c.cnt_before),
                    after: (c.cwnd_after, c.cnt_after),
                }
            }),
            cwnd_events: volatile(&$bss.cwnd_events),
            ssthreshes: volatile(&$bss.ssthreshes),
            undos: volatile(&$bss.undos),
        }
    };
}

#[test]
fn reno_from_kfuncs() {
    Case::run(ProgramType::StructOps, |case| {
        let name = unique_name('k');
        let mut object = MaybeUninit::uninit();
        let mut open = StructOpsSkelBuilder::default().open(&mut object)?;
        set_name(&mut open.struct_ops.bpfconf_reno_mut().name, &name);
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata")
            .init_ssthresh = INIT_SSTHRESH;
        let (loaded, outcome) = case.try_load(open, LogLevel::Stats);
        let mut skel =
            loaded.map_err(|e| refused("struct_ops.tcp_congestion_ops_kfuncs", &outcome, &e))?;
        let link = register(&mut skel.maps.bpfconf_reno, &name)?;
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        selected_on_loopback(case, &name, link, kfunc_reno, counters!(bss))
    });
}

#[test]
fn reno_writing_tcp_sock() {
    Case::run(ProgramType::StructOps, |case| {
        let name = unique_name('w');
        let mut object = MaybeUninit::uninit();
        let mut open = StructOpsPlainSkelBuilder::default().open(&mut object)?;
        set_name(&mut open.struct_ops.plain_reno_mut().name, &name);
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata")
            .init_ssthresh = INIT_SSTHRESH;
        let (loaded, outcome) = case.try_load(open, LogLevel::Stats);
        let mut skel =
            loaded.map_err(|e| refused("struct_ops.tcp_congestion_ops", &outcome, &e))?;
        let link = register(&mut skel.maps.plain_reno, &name)?;
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        selected_on_loopback(case, &name, link, plain_reno, counters!(bss))
    });
}

/// The programs' counters and records (`.bss`).
struct Counters {
    inits: u32,
    init_ports: Vec<u16>,
    cong_avoids: u64,
    /// The recorded cong_avoid calls, in order.
    calls: Vec<Call>,
    cwnd_events: u64,
    ssthreshes: u64,
    undos: u64,
}

/// One cong_avoid call as a program recorded it (`struct ca_call`).
#[derive(Clone, Copy, Debug)]
struct Call {
    /// The socket's local port.
    port: u16,
    /// Segments the ACK acknowledged.
    acked: u32,
    ssthresh: u32,
    /// snd_cwnd_clamp.
    clamp: u32,
    /// (snd_cwnd, snd_cwnd_cnt) the call found.
    before: (u32, u32),
    /// (snd_cwnd, snd_cwnd_cnt) it left.
    after: (u32, u32),
}

/// The first `count` of a program's `records` (all it holds when it counted more).
fn calls<R: Copy>(records: &[R], count: u64, call: impl Fn(&R) -> Call) -> Vec<Call> {
    let n = usize::try_from(count).map_or(records.len(), |n| n.min(records.len()));
    records[..n].iter().map(call).collect()
}

/// Reno through the kfuncs, as struct_ops.bpf.c calls them: below ssthresh `tcp_slow_start`
/// (cwnd grows by the segments acked, capped at ssthresh, then at the clamp; the rest of acked
/// goes on), then, with segments left, `tcp_cong_avoid_ai` with w = the cwnd slow start left
/// (credits at or past w first add one segment and restart; then acked credits, and a segment per
/// w of them; capped at the clamp).
fn kfunc_reno(c: &Call) -> (u32, u32) {
    let ((mut cwnd, mut cnt), mut acked) = (c.before, c.acked);
    if cwnd < c.ssthresh {
        let grown = cwnd.saturating_add(acked).min(c.ssthresh);
        acked -= grown - cwnd;
        cwnd = grown.min(c.clamp);
        if acked == 0 {
            return (cwnd, cnt);
        }
    }
    let w = cwnd;
    if cnt >= w {
        cnt = 0;
        cwnd += 1;
    }
    cnt += acked;
    if cnt >= w {
        let delta = cnt / w;
        cnt -= delta * w;
        cwnd += delta;
    }
    (cwnd.min(c.clamp), cnt)
}

/// Reno as struct_ops_plain.bpf.c writes it: below ssthresh cwnd grows by the segments acked,
/// capped at ssthresh; at or above it snd_cwnd_cnt collects them, and once it reaches cwnd, cwnd
/// grows by one and the counter loses cwnd.
fn plain_reno(c: &Call) -> (u32, u32) {
    let (cwnd, cnt) = c.before;
    if cwnd < c.ssthresh {
        return (cwnd.saturating_add(c.acked).min(c.ssthresh), cnt);
    }
    let cnt = cnt + c.acked;
    if cnt >= cwnd {
        (cwnd + 1, cnt - cwnd)
    } else {
        (cwnd, cnt)
    }
}

/// Checks every recorded call against `rule` and the sockets they came from; returns the calls
/// in slow start, in congestion avoidance, and those of congestion avoidance that grew cwnd.
fn check_calls(
    calls: &[Call],
    ports: &[u16],
    rule: fn(&Call) -> (u32, u32),
) -> CaseResult<(usize, usize, usize)> {
    let (mut slow_start, mut avoidance, mut grew) = (0, 0, 0);
    for (i, call) in calls.iter().enumerate() {
        assert!(
            ports.contains(&call.port),
            "call {i} came from port {}, not a selecting socket's ({ports:?})",
            call.port
        );
        let want = rule(call);
        assert_eq!(
            call.after, want,
            "call {i}: (cwnd, snd_cwnd_cnt) left by cong_avoid against Reno's rules, from {call:?}"
        );
        if call.before.0 < call.ssthresh {
            slow_start += 1;
        } else {
            avoidance += 1;
            if want.0 > call.before.0 {
                grew += 1;
            }
        }
    }
    for port in ports {
        let first = calls.iter().find(|c| c.port == *port).ok_or_else(|| {
            CaseError::Fail(anyhow::anyhow!(
                "no cong_avoid call for the socket on port {port}"
            ))
        })?;
        assert_eq!(
            (first.before, first.ssthresh),
            ((INIT_CWND, 0), INIT_SSTHRESH),
            "((cwnd, snd_cwnd_cnt), ssthresh) the first call for port {port} found"
        );
    }
    Ok((slow_start, avoidance, grew))
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
        ftrace::attach_refused(
            "struct_ops.tcp_congestion_ops",
            format!("registering {name}"),
            e,
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
    rule: fn(&Call) -> (u32, u32),
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
    assert_eq!(
        seen.calls.len() as u64,
        seen.cong_avoids,
        "cong_avoid calls recorded (the program has room for {})",
        seen.calls.len()
    );
    let (slow_start, avoidance, grew) = check_calls(&seen.calls, &ports, rule)?;
    case.detail(
        "calls_checked",
        serde_json::json!({
            "slow_start": slow_start, "congestion_avoidance": avoidance,
            "congestion_avoidance_grew_cwnd": grew,
        }),
    );
    assert!(
        slow_start > 0 && grew > 0,
        "both phases checked: {slow_start} calls in slow start, {avoidance} in congestion \
         avoidance ({grew} growing cwnd)"
    );

    testkit::link::release(link);
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
