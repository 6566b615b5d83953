//! cgroup_sock_addr (`programs/src/bpf/cgroup_sock_addr.bpf.c`): address rewrites at connect,
//! bind and sendmsg of the sockets of the test's own cgroup v2 child.
//!
//! Each case runs in a fresh network namespace (its loopback is the case's alone) and attaches one
//! of the object's programs to the cgroup. The test binds the listeners itself (port 0: the kernel
//! picks free ports) and hands the port numbers to the program through .rodata before load; a
//! python3 client started inside the cgroup and the namespace does the socket call and reports,
//! as JSON, what the kernel says (`getpeername`/`getsockname`) and what answered it:
//! - `connect4_redirects_service`: a TCP connect to the "service" port reaches the "backend"
//!   listener instead: the backend accepts it and answers, the client's `getpeername` shows the
//!   backend port, the service listener gets nothing. A connect from outside the cgroup still
//!   reaches the service port.
//! - `connect6_redirects_service`: the same over IPv6 (`::1`).
//! - `sendmsg4_redirects_datagram`: an unconnected UDP `sendto` to the service port arrives at the
//!   backend socket, whose reply comes back from the backend port; the service socket gets nothing.
//! - `bind4_rewrites_port`: a TCP `bind` to one port binds another: `getsockname` shows the
//!   rewritten port, a connection from outside reaches the listener there, and the requested port
//!   refuses connections.
//!
//! The program's counters must have seen exactly the one rewrite each case provokes.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for this program type
//! (ENOTSUPP, checked on 6.18).

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use harness::{Case, CaseError, CaseResult, Cgroup, NetNs, OrError, client, probe};
use libbpf_rs::ProgramType;
use libbpf_rs::skel::SkelBuilder;
use programs::cgroup_sock_addr::{CgroupSockAddrSkel, CgroupSockAddrSkelBuilder, types};
use serde_json::Value;

/// How long the test's side of a connection waits for the client: as long as the client may run
/// (starting python3 takes seconds under emulation, in the matrix's VMs).
const WAIT: Duration = client::TIMEOUT;

/// argv: family (4|6), host, port. Connects over TCP, sends "hello", reads the answer; reports
/// `{"errno": e-or-null, "peer": [host, port], "local": [host, port], "reply": text-or-null}`.
const TCP_CONNECT: &str = r#"
import errno, json, socket, sys
family = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect((sys.argv[2], int(sys.argv[3])))
except OSError as e:
    print(json.dumps({"errno": errno.errorcode.get(e.errno, str(e.errno))}))
    sys.exit(0)
s.sendall(b"hello")
try:
    reply = s.recv(100).decode()
except socket.timeout:
    reply = None
print(json.dumps({"errno": None, "peer": list(s.getpeername()[:2]),
                  "local": list(s.getsockname()[:2]), "reply": reply}))
"#;

/// argv: host, port. Sends one UDP datagram "hello" (unconnected sendto) and waits for an answer;
/// reports `{"local": [host, port], "reply": text-or-null, "reply_from": [host, port]-or-null}`.
const UDP_SENDTO: &str = r#"
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
local = list(s.getsockname())
try:
    data, src = s.recvfrom(100)
    reply, reply_from = data.decode(), list(src)
except socket.timeout:
    reply, reply_from = None, None
print(json.dumps({"local": local, "reply": reply, "reply_from": reply_from}))
"#;

/// argv: port. Binds a TCP listener to 127.0.0.1:port, accepts one connection, answers its
/// greeting with "bound"; reports `{"bound": [host, port], "greeting": text-or-null}`.
const TCP_BIND: &str = r#"
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
s.settimeout(5)
bound = list(s.getsockname())
try:
    c, _ = s.accept()
    c.settimeout(5)
    greeting = c.recv(100).decode()
    c.sendall(b"bound")
except socket.timeout:
    greeting = None
print(json.dumps({"bound": bound, "greeting": greeting}))
"#;

/// Opens the object, lets `configure` set its .rodata, loads it (recorded and snapshotted).
fn load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    configure: impl FnOnce(&mut types::rodata),
) -> CaseResult<CgroupSockAddrSkel<'obj>> {
    probe::prog_type(ProgramType::CgroupSockAddr)?;
    let mut open = CgroupSockAddrSkelBuilder::default().open(object)?;
    configure(
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has a .rodata section"),
    );
    case.load(open)
}

/// The counters of the loaded object.
fn counters(skel: &CgroupSockAddrSkel<'_>) -> (u64, u64, u64) {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    (
        bss.connects_redirected,
        bss.binds_rewritten,
        bss.sends_redirected,
    )
}

/// Runs `f` with the calling thread inside `ns`.
fn inside<T>(ns: &NetNs, f: impl FnOnce() -> std::io::Result<T>) -> CaseResult<T> {
    let _inside = ns.enter()?;
    f().or_error("creating a socket in the test netns")
}

/// Accepts one connection on `listener` within [`WAIT`], reads the client's greeting and answers
/// `reply`; the client's address and greeting, or `None` when nobody connected.
fn serve_once(
    listener: TcpListener,
    reply: String,
) -> std::thread::JoinHandle<std::io::Result<Option<(SocketAddr, String)>>> {
    std::thread::spawn(move || {
        listener.set_nonblocking(true)?;
        let deadline = Instant::now() + WAIT;
        let (mut stream, peer) = loop {
            match listener.accept() {
                Ok(conn) => break conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(WAIT))?;
        let mut buf = [0u8; 100];
        let n = stream.read(&mut buf)?;
        stream.write_all(reply.as_bytes())?;
        Ok(Some((
            peer,
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        )))
    })
}

/// Whether a connection is waiting on `listener` (it must not be, for the service port).
fn has_pending(listener: &TcpListener) -> CaseResult<bool> {
    listener
        .set_nonblocking(true)
        .or_error("making a listener non-blocking")?;
    match listener.accept() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(CaseError::Error(anyhow::anyhow!("accept: {e}"))),
    }
}

fn port_of(addr: &Value) -> u64 {
    addr[1].as_u64().unwrap_or_default()
}

/// The connect cases: the cgroup's connect to `service` reaches `backend`.
fn connect_redirects(case: &mut Case, ip: IpAddr) -> CaseResult {
    let ns = NetNs::new()?;
    let (service, backend) = inside(&ns, || {
        Ok((TcpListener::bind((ip, 0))?, TcpListener::bind((ip, 0))?))
    })?;
    let service_port = service.local_addr().or_error("local_addr")?.port();
    let backend_port = backend.local_addr().or_error("local_addr")?.port();
    case.detail("service_port", service_port);
    case.detail("backend_port", backend_port);

    let mut object = MaybeUninit::uninit();
    let skel = load(case, &mut object, |r| {
        r.service_port = service_port;
        r.backend_port = backend_port;
    })?;
    let cg = Cgroup::new()?;
    let prog = if ip.is_ipv4() {
        &skel.progs.connect4_redirect
    } else {
        &skel.progs.connect6_redirect
    };
    let _link = prog.attach_cgroup(cg.as_fd().as_raw_fd())?;

    let server = serve_once(backend, format!("backend:{backend_port}"));
    let family = if ip.is_ipv4() { "4" } else { "6" };
    let report = client::run_json(cg.command(client::python_in(
        &ns,
        TCP_CONNECT,
        [family.to_owned(), ip.to_string(), service_port.to_string()],
    )))?;
    case.detail("client", &report);
    let served = server
        .join()
        .map_err(|_| CaseError::Error(anyhow::anyhow!("the backend thread panicked")))?
        .or_error("serving on the backend listener")?;

    assert_eq!(report["errno"], Value::Null, "connect: {report}");
    assert_eq!(
        port_of(&report["peer"]),
        u64::from(backend_port),
        "getpeername after connecting to the service port {service_port}"
    );
    assert_eq!(report["reply"], format!("backend:{backend_port}"));
    let (peer, greeting) = served.expect("the backend accepted no connection");
    assert_eq!(greeting, "hello", "what the backend received");
    assert_eq!(
        u64::from(peer.port()),
        port_of(&report["local"]),
        "the backend's peer is the client's socket"
    );
    assert!(
        !has_pending(&service)?,
        "the service listener got a connection"
    );

    // Outside the cgroup the service port is the service port.
    inside(&ns, || TcpStream::connect((ip, service_port)))?;
    assert!(
        has_pending(&service)?,
        "a connect from outside the cgroup did not reach the service port"
    );

    let (connects, binds, sends) = counters(&skel);
    case.detail("connects_redirected", connects);
    assert_eq!(
        (connects, binds, sends),
        (1, 0, 0),
        "the program's counters"
    );
    Ok(())
}

#[test]
fn connect4_redirects_service() {
    Case::run(
        "cgroup_sock_addr::connect4_redirects_service",
        ProgramType::CgroupSockAddr,
        |case| connect_redirects(case, IpAddr::V4(Ipv4Addr::LOCALHOST)),
    );
}

#[test]
fn connect6_redirects_service() {
    Case::run(
        "cgroup_sock_addr::connect6_redirects_service",
        ProgramType::CgroupSockAddr,
        |case| connect_redirects(case, IpAddr::V6(Ipv6Addr::LOCALHOST)),
    );
}

#[test]
fn sendmsg4_redirects_datagram() {
    Case::run(
        "cgroup_sock_addr::sendmsg4_redirects_datagram",
        ProgramType::CgroupSockAddr,
        |case| {
            let ns = NetNs::new()?;
            let (service, backend) = inside(&ns, || {
                Ok((
                    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?,
                    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?,
                ))
            })?;
            let service_port = service.local_addr().or_error("local_addr")?.port();
            let backend_port = backend.local_addr().or_error("local_addr")?.port();
            case.detail("service_port", service_port);
            case.detail("backend_port", backend_port);

            let mut object = MaybeUninit::uninit();
            let skel = load(case, &mut object, |r| {
                r.service_port = service_port;
                r.backend_port = backend_port;
            })?;
            let cg = Cgroup::new()?;
            let _link = skel
                .progs
                .sendmsg4_redirect
                .attach_cgroup(cg.as_fd().as_raw_fd())?;

            // The backend answers whoever reaches it.
            let server = std::thread::spawn(move || -> std::io::Result<(SocketAddr, String)> {
                backend.set_read_timeout(Some(WAIT))?;
                let mut buf = [0u8; 100];
                let (n, from) = backend.recv_from(&mut buf)?;
                backend.send_to(b"backend", from)?;
                Ok((from, String::from_utf8_lossy(&buf[..n]).into_owned()))
            });
            let report = client::run_json(cg.command(client::python_in(
                &ns,
                UDP_SENDTO,
                ["127.0.0.1".to_owned(), service_port.to_string()],
            )))?;
            case.detail("client", &report);
            let served = server
                .join()
                .map_err(|_| CaseError::Error(anyhow::anyhow!("the backend thread panicked")))?;

            let (from, payload) = served.map_err(|e| {
                CaseError::Fail(anyhow::anyhow!(
                    "the backend received no datagram within {WAIT:?}: {e}"
                ))
            })?;
            assert_eq!(payload, "hello", "what the backend received");
            assert_eq!(
                u64::from(from.port()),
                port_of(&report["local"]),
                "the backend's datagram came from the client's socket"
            );
            assert_eq!(report["reply"], "backend", "the answer the client got");
            assert_eq!(
                port_of(&report["reply_from"]),
                u64::from(backend_port),
                "the answer came from the backend port"
            );
            service
                .set_nonblocking(true)
                .or_error("making a socket non-blocking")?;
            let mut buf = [0u8; 100];
            assert!(
                service.recv(&mut buf).is_err(),
                "the service socket received a datagram"
            );

            let (connects, binds, sends) = counters(&skel);
            case.detail("sends_redirected", sends);
            assert_eq!(
                (connects, binds, sends),
                (0, 0, 1),
                "the program's counters"
            );
            Ok(())
        },
    );
}

#[test]
fn bind4_rewrites_port() {
    Case::run(
        "cgroup_sock_addr::bind4_rewrites_port",
        ProgramType::CgroupSockAddr,
        |case| {
            // The namespace is the case's own: fixed ports cannot collide.
            const FROM: u16 = 6001;
            const TO: u16 = 6002;
            let ns = NetNs::new()?;
            let mut object = MaybeUninit::uninit();
            let skel = load(case, &mut object, |r| {
                r.bind_from_port = FROM;
                r.bind_to_port = TO;
            })?;
            let cg = Cgroup::new()?;
            let _link = skel
                .progs
                .bind4_rewrite
                .attach_cgroup(cg.as_fd().as_raw_fd())?;

            // From outside: wait for the listener on TO, check FROM refuses, greet it.
            let outside = std::thread::scope(|scope| {
                let prober = scope.spawn(|| probe_bound(&ns, FROM, TO));
                let report = client::run_json(cg.command(client::python_in(
                    &ns,
                    TCP_BIND,
                    [FROM.to_string()],
                )));
                (report, prober.join())
            });
            let report = outside.0?;
            case.detail("client", &report);
            let probed = outside
                .1
                .map_err(|_| CaseError::Error(anyhow::anyhow!("the prober thread panicked")))??;
            case.detail(
                "outside",
                serde_json::json!({"from_refused": probed.0, "reply": probed.1}),
            );

            assert_eq!(
                port_of(&report["bound"]),
                u64::from(TO),
                "getsockname after binding port {FROM}"
            );
            assert_eq!(
                report["greeting"], "hello",
                "the listener got no connection on port {TO}"
            );
            let (from_refused, reply) = probed;
            assert!(from_refused, "port {FROM} did not refuse a connection");
            assert_eq!(reply, "bound", "the answer on port {TO}");

            let (connects, binds, sends) = counters(&skel);
            case.detail("binds_rewritten", binds);
            assert_eq!(
                (connects, binds, sends),
                (0, 1, 0),
                "the program's counters"
            );
            Ok(())
        },
    );
}

/// From outside the cgroup (inside the namespace): connects to port `to` until the client
/// listens there (within [`WAIT`]), then checks that `from` refuses connections, then greets the
/// listener. Returns whether `from` refused and the listener's answer.
fn probe_bound(ns: &NetNs, from: u16, to: u16) -> CaseResult<(bool, String)> {
    let _inside = ns.enter()?;
    let deadline = Instant::now() + WAIT;
    let mut stream = loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, to)) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "nothing listened on port {to} within {WAIT:?}: {e}"
                )));
            }
        }
    };
    let from_refused = matches!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, from)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    );
    stream
        .set_read_timeout(Some(WAIT))
        .or_error("setting a read timeout")?;
    stream.write_all(b"hello")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok((from_refused, reply))
}
