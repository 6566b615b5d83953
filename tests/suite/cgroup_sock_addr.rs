//! cgroup_sock_addr (`programs/src/bpf/cgroup_sock_addr.bpf.c`): address rewrites at connect,
//! bind and sendmsg of the sockets of the test's own cgroup v2 child.
//!
//! Each case runs in a fresh network namespace (its loopback is the case's alone) and attaches one
//! of the object's programs to the cgroup. The test binds the listeners itself (port 0: the kernel
//! picks free ports) and hands the port numbers to the program through .rodata before load; a
//! child process forked into the cgroup and the namespace does the socket call and reports what
//! the kernel says (`getpeername`/`getsockname`) and what answered it:
//! - `connect4_redirects_service`: a TCP connect to the "service" port reaches the "backend"
//!   listener instead: the backend accepts it and answers, the child's `getpeername` shows the
//!   backend port. The service listener got nothing: the first connection it accepts is the one
//!   made from outside the cgroup after the child's (which also shows the service port still is
//!   the service port outside the cgroup).
//! - `connect6_redirects_service`: the same over IPv6 (`::1`).
//! - `sendmsg4_redirects_datagram`: an unconnected UDP `sendto` to the service port arrives at the
//!   backend socket, whose reply comes back from the backend port; the first datagram the service
//!   socket receives is a sentinel sent from outside the cgroup after the child's.
//! - `bind4_rewrites_port`: a TCP `bind` to one port binds another: `getsockname` shows the
//!   rewritten port, a connection from outside reaches the listener there, and the requested port
//!   refuses connections.
//!
//! The program's counters must have seen exactly the one rewrite each case provokes.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for this program type
//! (ENOTSUPP, checked on 6.18).
//!
//! The other hooks are in `cgroup_sock_addr_names` (getpeername, getsockname, recvmsg) and
//! `cgroup_sock_addr_unix` (AF_UNIX), which probe their attach types with `testkit::sock_addr::probe_attach_type`.

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use libbpf_rs::ProgramType;
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use programs::cgroup_sock_addr::{CgroupSockAddrSkel, CgroupSockAddrSkelBuilder, types};
use testkit::child::{ARRIVAL, TIMEOUT as WAIT, Text, succeeded};
use testkit::sock_addr::{inside, serve_once};
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, OrError, child, probe};

/// What the child's TCP connect saw: the ports `getpeername` and `getsockname` name, the answer.
#[derive(Clone, Copy, Debug)]
struct Connected {
    peer: u16,
    local: u16,
    reply: Text,
}

/// In the child: connects to `to`, sends "hello", reads the answer.
fn tcp_connect(to: SocketAddr) -> Result<Connected, Errno> {
    let mut s = child::errno(TcpStream::connect_timeout(&to, ARRIVAL))?;
    child::errno(s.set_read_timeout(Some(ARRIVAL)))?;
    child::errno(s.write_all(b"hello"))?;
    Ok(Connected {
        peer: child::errno(s.peer_addr())?.port(),
        local: child::errno(s.local_addr())?.port(),
        reply: Text::read(|buf| s.read(buf))?,
    })
}

/// What the child's UDP exchange saw: its own port, the answer and the port it came from.
#[derive(Clone, Copy, Debug)]
struct Exchanged {
    local: u16,
    reply: Text,
    reply_from: u16,
}

/// In the child: one unconnected `sendto` of "hello" to `to`, then the answer.
fn udp_sendto(to: SocketAddr) -> Result<Exchanged, Errno> {
    let s = child::errno(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))?;
    child::errno(s.set_read_timeout(Some(ARRIVAL)))?;
    child::errno(s.send_to(b"hello", to))?;
    let mut reply_from = 0;
    let reply = Text::read(|buf| {
        let (n, from) = s.recv_from(buf)?;
        reply_from = from.port();
        Ok(n)
    })?;
    Ok(Exchanged {
        local: child::errno(s.local_addr())?.port(),
        reply,
        reply_from,
    })
}

/// What the child's bind saw: the port `getsockname` names, the greeting of its one connection.
#[derive(Clone, Copy, Debug)]
struct Bound {
    bound: u16,
    greeting: Result<Text, Errno>,
}

/// In the child: binds a TCP listener to 127.0.0.1:`port`, accepts one connection (within
/// [`ARRIVAL`]) and answers its greeting with "bound".
fn tcp_bind(port: u16) -> Result<Bound, Errno> {
    let listener = child::errno(TcpListener::bind((Ipv4Addr::LOCALHOST, port)))?;
    // accept(2) waits at most SO_RCVTIMEO.
    setsockopt(
        &listener,
        sockopt::ReceiveTimeout,
        &TimeVal::new(ARRIVAL.as_secs() as _, 0),
    )?;
    let greeting = child::errno(listener.accept()).and_then(|(mut c, _)| {
        child::errno(c.set_read_timeout(Some(ARRIVAL)))?;
        let greeting = Text::read(|buf| c.read(buf))?;
        child::errno(c.write_all(b"bound"))?;
        Ok(greeting)
    });
    Ok(Bound {
        bound: child::errno(listener.local_addr())?.port(),
        greeting,
    })
}

/// Opens the object, lets `configure` set its .rodata, loads it (recorded and snapshotted).
fn load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    configure: impl FnOnce(&mut types::rodata),
) -> CaseResult<CgroupSockAddrSkel<'obj>> {
    probe::prog_type(ProgramType::CgroupSockAddr)?;
    case.open_load(CgroupSockAddrSkelBuilder::default(), object, |open| {
        configure(open.maps.rodata_data.as_deref_mut().expect(".rodata"))
    })
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

/// Connects to `listener` from the calling thread and returns whether that connection is the
/// first one `listener` accepts: the sentinel that shows nothing arrived there before it.
fn sentinel_accepted_first(listener: &TcpListener, addr: SocketAddr) -> CaseResult<bool> {
    let sentinel = TcpStream::connect(addr).or_error("connecting the sentinel")?;
    let (_, peer) = listener
        .accept()
        .or_error("accepting on the service port")?;
    Ok(peer == sentinel.local_addr().or_error("local_addr")?)
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
    let service_addr = SocketAddr::new(ip, service_port);
    let connected = child::in_cgroup(&cg)
        .netns(&ns)
        .run(|| tcp_connect(service_addr))?;
    case.detail("child", format!("{connected:?}"));
    let served = server
        .join()
        .map_err(|_| CaseError::Error(anyhow::anyhow!("the backend thread panicked")))?
        .or_error("serving on the backend listener")?;

    let connected = succeeded("connecting to the service port", connected)?;
    assert_eq!(
        connected.peer, backend_port,
        "getpeername after connecting to the service port {service_port}"
    );
    assert_eq!(
        connected.reply.as_str(),
        format!("backend:{backend_port}"),
        "the answer the child got"
    );
    let (peer, greeting) = served.expect("the backend accepted no connection");
    assert_eq!(greeting, "hello", "what the backend received");
    assert_eq!(
        peer.port(),
        connected.local,
        "the backend's peer is the child's socket"
    );
    let sentinel_first = {
        let _inside = ns.enter()?;
        sentinel_accepted_first(&service, service_addr)?
    };
    assert!(
        sentinel_first,
        "the service listener accepted a connection before the sentinel's from outside the cgroup"
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
    Case::run(ProgramType::CgroupSockAddr, |case| {
        connect_redirects(case, IpAddr::V4(Ipv4Addr::LOCALHOST))
    });
}

#[test]
fn connect6_redirects_service() {
    Case::run(ProgramType::CgroupSockAddr, |case| {
        connect_redirects(case, IpAddr::V6(Ipv6Addr::LOCALHOST))
    });
}

#[test]
fn sendmsg4_redirects_datagram() {
    Case::run(ProgramType::CgroupSockAddr, |case| {
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
        let service_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, service_port));
        let exchanged = child::in_cgroup(&cg)
            .netns(&ns)
            .run(|| udp_sendto(service_addr))?;
        case.detail("child", format!("{exchanged:?}"));
        let served = server
            .join()
            .map_err(|_| CaseError::Error(anyhow::anyhow!("the backend thread panicked")))?;

        let (from, payload) = served.map_err(|e| {
            CaseError::Fail(anyhow::anyhow!(
                "the backend received no datagram within {WAIT:?}: {e}"
            ))
        })?;
        assert_eq!(payload, "hello", "what the backend received");
        let exchanged = succeeded("the UDP exchange with the service port", exchanged)?;
        assert_eq!(
            from.port(),
            exchanged.local,
            "the backend's datagram came from the child's socket"
        );
        assert_eq!(
            exchanged.reply.as_str(),
            "backend",
            "the answer the child got"
        );
        assert_eq!(
            exchanged.reply_from, backend_port,
            "the answer came from the backend port"
        );
        let first = {
            let _inside = ns.enter()?;
            let sentinel = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .or_error("binding the sentinel's socket")?;
            sentinel
                .send_to(b"sentinel", service_addr)
                .or_error("sending the sentinel")?;
            service
                .set_read_timeout(Some(WAIT))
                .or_error("setting a read timeout")?;
            let mut buf = [0u8; 100];
            let n = service.recv(&mut buf).or_error("receiving the sentinel")?;
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert_eq!(
            first, "sentinel",
            "the first datagram on the service port (the sentinel sent after the child's)"
        );

        let (connects, binds, sends) = counters(&skel);
        case.detail("sends_redirected", sends);
        assert_eq!(
            (connects, binds, sends),
            (0, 0, 1),
            "the program's counters"
        );
        Ok(())
    });
}

#[test]
fn bind4_rewrites_port() {
    Case::run(ProgramType::CgroupSockAddr, |case| {
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
        let (bound, probed) = std::thread::scope(|scope| {
            let prober = scope.spawn(|| probe_bound(&ns, FROM, TO));
            let bound = child::in_cgroup(&cg).netns(&ns).run(|| tcp_bind(FROM));
            (bound, prober.join())
        });
        let bound = bound?;
        case.detail("child", format!("{bound:?}"));
        let probed = probed
            .map_err(|_| CaseError::Error(anyhow::anyhow!("the prober thread panicked")))??;
        case.detail(
            "outside",
            serde_json::json!({"from_refused": probed.0, "reply": probed.1}),
        );

        let bound = succeeded("binding a listener", bound)?;
        assert_eq!(bound.bound, TO, "getsockname after binding port {FROM}");
        let greeting = succeeded("accepting on the bound port", bound.greeting)?;
        assert_eq!(
            greeting.as_str(),
            "hello",
            "what the listener on port {TO} received"
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
    });
}

/// From outside the cgroup (inside the namespace): connects to port `to` until the child
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
