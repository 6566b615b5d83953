//! struct_ops (`programs/src/bpf/struct_ops.bpf.c`): a TCP congestion control written in BPF,
//! registered under a name unique to this process and selected with `TCP_CONGESTION` on loopback
//! connections inside a fresh netns. Each selecting socket reads the name back, is initialised
//! by the program exactly once (init records its local port), and grows its cwnd past the initial
//! 10 segments while it sends, which only the program's calls of the tcp_slow_start and
//! tcp_cong_avoid_ai kfuncs do; a control connection on the default algorithm is never seen by
//! the program. Once unregistered, selecting the name fails with `ENOENT` and a new connection
//! reads back the namespace's default.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::OwnedFd;

use harness::observe::volatile;
use harness::{Case, CaseError, CaseResult, LoadOutcome, LogLevel, NetNs, OrError, ftrace};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{ErrorKind, ProgramType};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, connect, getsockopt, setsockopt, socket,
    sockopt::TcpCongestion,
};
use programs::struct_ops::StructOpsSkelBuilder;

/// Sockets that select the BPF algorithm.
const SOCKETS: usize = 2;
/// Bytes each connection carries: many segments, many ACKs.
const BYTES: usize = 4 << 20;
/// The kernel's initial congestion window (TCP_INIT_CWND, segments).
const INIT_CWND: u32 = 10;
/// The tcp_congestion_ops kfuncs the program calls.
const KFUNCS: &str = "kfunc.tcp_congestion_ops";

#[test]
fn tcp_congestion_control() {
    Case::run(ProgramType::StructOps, |case| {
        // TCP_CA_NAME_MAX is 16 with the NUL; a pid has at most 7 digits.
        let name = format!("bpfconf_{}", std::process::id());
        case.detail("name", &name);
        let mut object = MaybeUninit::uninit();
        let mut open = StructOpsSkelBuilder::default().open(&mut object)?;
        let ops = open.struct_ops.bpfconf_reno_mut();
        ops.name = [0; 16];
        for (slot, byte) in ops.name.iter_mut().zip(name.bytes()) {
            *slot = byte as i8;
        }
        let (loaded, outcome) = case.try_load(open, LogLevel::Stats);
        let mut skel = loaded.map_err(|e| refused(KFUNCS, &outcome, &e))?;

        let ns = NetNs::new()?;
        let _inside = ns.enter()?;
        let default = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
            .or_error("reading the netns's default congestion control")?
            .trim()
            .to_owned();
        case.detail("default", &default);
        let link = skel.maps.bpfconf_reno.attach_struct_ops().map_err(|e| {
            ftrace::refused(
                "struct_ops.tcp_congestion_ops",
                e.kind() == ErrorKind::PermissionDenied,
                format!("registering {name}: {e:#}"),
            )
        })?;

        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut ports = Vec::new();
        let mut cwnds = Vec::new();
        for _ in 0..SOCKETS {
            let sock = tcp_socket()?;
            setsockopt(&sock, TcpCongestion, &OsString::from(&name))?;
            assert_eq!(
                getsockopt(&sock, TcpCongestion)?,
                OsString::from(&name),
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

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let inits = volatile(&bss.inits);
        let mut init_ports: Vec<u16> =
            volatile(&bss.init_ports)[..(inits as usize).min(8)].to_vec();
        let (cong_avoids, cwnd_events) = (volatile(&bss.cong_avoids), volatile(&bss.cwnd_events));
        case.detail("ports", &ports);
        case.detail("init_ports", &init_ports);
        case.detail("cwnds", &cwnds);
        case.detail("control_cwnd", control_cwnd);
        case.detail("cong_avoids", cong_avoids);
        case.detail("cwnd_events", cwnd_events);
        case.detail("ssthreshes", volatile(&bss.ssthreshes));
        case.detail("undos", volatile(&bss.undos));
        assert_eq!(inits as usize, SOCKETS, "init calls");
        init_ports.sort_unstable();
        ports.sort_unstable();
        assert_eq!(init_ports, ports, "the local ports of the sockets init saw");
        assert!(cong_avoids > 0, "cong_avoid never ran");
        assert!(cwnd_events > 0, "cwnd_event never ran");
        for cwnd in &cwnds {
            assert!(
                *cwnd > INIT_CWND,
                "a selecting sender's cwnd after {BYTES} bytes: {cwnds:?}"
            );
        }

        drop(link);
        let after = tcp_socket()?;
        assert_eq!(
            setsockopt(&after, TcpCongestion, &OsString::from(&name)),
            Err(Errno::ENOENT),
            "selecting {name} once it is unregistered"
        );
        let (after, _) = transfer(after, &listener)?;
        assert_eq!(
            getsockopt(&after, TcpCongestion)?,
            OsString::from(&default),
            "a new connection's congestion control once {name} is unregistered"
        );
        assert_eq!(
            volatile(&bss.inits) as usize,
            SOCKETS,
            "init calls at the end"
        );
        Ok(())
    });
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
    let cwnd = harness::sockopt::tcp_info(&client)?.tcpi_snd_cwnd;
    Ok((client, cwnd))
}

fn connect_v4(sock: &OwnedFd, addr: SocketAddrV4) -> CaseResult {
    use std::os::fd::AsRawFd;
    Ok(connect(sock.as_raw_fd(), &SockaddrIn::from(addr))?)
}
