//! sock_ops (`programs/src/bpf/sock_ops.bpf.c`): TCP events of the sockets of the test's own cgroup
//! v2 child. The program counts the ACTIVE_ESTABLISHED (connecting side) and PASSIVE_ESTABLISHED
//! (accepted side) callbacks and, on both, calls bpf_setsockopt for SO_KEEPALIVE = 1,
//! TCP_KEEPIDLE = 4321 s and TCP_BPF_RTO_MIN = 10 ms (options bpf_setsockopt takes from sock_ops
//! programs since 5.10, the oldest kernel of the matrix; TCP_NODELAY came later).
//!
//! A python3 client started inside the cgroup and a fresh network namespace listens on 127.0.0.1
//! (port 0: a free one), makes 3 loopback connections to itself, exchanges 30 one-byte round trips
//! on each, and reports as JSON what `getsockopt` says on every connected and accepted socket: SO_KEEPALIVE, TCP_KEEPIDLE and
//! `tcpi_rto` from TCP_INFO. The checks:
//! - the program counted exactly 3 active and 3 passive established callbacks (the listener has
//!   none);
//! - every socket, both sides, reads back SO_KEEPALIVE on and TCP_KEEPIDLE 4321;
//! - every socket's retransmission timeout fell below 200 ms, the kernel's own floor: only the
//!   lowered RTO minimum allows that. The same client run outside the cgroup is the control: its
//!   sockets keep keepalive off, the default keepalive idle time and an RTO of at least 200 ms.
//!
//! No test-run cases: the kernel does not implement BPF_PROG_TEST_RUN for this program type
//! (ENOTSUPP, checked on 6.18).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use harness::{Case, Cgroup, NetNs, client, probe};
use libbpf_rs::ProgramType;
use libbpf_rs::skel::SkelBuilder;
use programs::sock_ops::SockOpsSkelBuilder;
use serde_json::Value;

const CONNECTIONS: u64 = 3;
const ROUND_TRIPS: u32 = 30;
const KEEPIDLE_S: i32 = 4321;
const RTO_MIN_US: i32 = 10_000;
/// TCP_RTO_MIN: the lowest retransmission timeout a socket gets without a lowered minimum.
const KERNEL_RTO_MIN_US: u64 = 200_000;

/// argv: connections, round trips. Reports `{"client": [opts…], "server": [opts…]}` with
/// `{"keepalive": n, "keepidle": s, "rto_us": us}` per socket.
const CONNECT_LOOPBACK: &str = r#"
import json, socket, struct, sys
n, rounds = int(sys.argv[1]), int(sys.argv[2])
TCP = socket.IPPROTO_TCP
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(n)
pairs = []
for _ in range(n):
    c = socket.create_connection(listener.getsockname(), timeout=5)
    a, _ = listener.accept()
    a.settimeout(5)
    pairs.append((c, a))
for c, a in pairs:
    for _ in range(rounds):
        c.sendall(b"x"); a.recv(1); a.sendall(b"y"); c.recv(1)
def opts(s):
    info = s.getsockopt(TCP, socket.TCP_INFO, 104)
    return {"keepalive": s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "keepidle": s.getsockopt(TCP, socket.TCP_KEEPIDLE),
            "rto_us": struct.unpack_from("I", info, 8)[0]}
print(json.dumps({"client": [opts(c) for c, _ in pairs], "server": [opts(a) for _, a in pairs]}))
"#;

fn client_args() -> [String; 2] {
    [CONNECTIONS.to_string(), ROUND_TRIPS.to_string()]
}

/// Every socket of both sides, labelled.
fn sockets(report: &Value) -> Vec<(String, &Value)> {
    ["client", "server"]
        .iter()
        .flat_map(|side| {
            report[side]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(move |(i, s)| (format!("{side}[{i}]"), s))
        })
        .collect()
}

#[test]
fn counts_established_and_sets_options() {
    Case::run(
        "sock_ops::counts_established_and_sets_options",
        ProgramType::SockOps,
        |case| {
            probe::prog_type(ProgramType::SockOps)?;
            let mut object = MaybeUninit::uninit();
            let mut open = SockOpsSkelBuilder::default().open(&mut object)?;
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("the object has a .rodata section");
            rodata.keepidle = KEEPIDLE_S;
            rodata.rto_min_us = RTO_MIN_US;
            let skel = case.load(open)?;

            // A fresh namespace: its loopback is the case's alone (and up, which a VM's root
            // namespace's is not).
            let ns = NetNs::new()?;
            // The control: the same client outside the cgroup, before anything is attached.
            let control =
                client::run_json(client::python_in(&ns, CONNECT_LOOPBACK, client_args()))?;
            case.detail("control", &control);
            for (name, s) in sockets(&control) {
                assert_eq!(s["keepalive"], 0, "control {name}: {s}");
                assert_ne!(s["keepidle"], KEEPIDLE_S, "control {name}: {s}");
                assert!(
                    s["rto_us"].as_u64().unwrap_or_default() >= KERNEL_RTO_MIN_US,
                    "control {name}: an RTO below 200 ms without the program: {s}"
                );
            }

            let cg = Cgroup::new()?;
            let _link = skel
                .progs
                .count_established
                .attach_cgroup(cg.as_fd().as_raw_fd())?;
            let report = client::run_json(cg.command(client::python_in(
                &ns,
                CONNECT_LOOPBACK,
                client_args(),
            )))?;
            case.detail("client", &report);

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
                bss.active_established, CONNECTIONS,
                "active established callbacks"
            );
            assert_eq!(
                bss.passive_established, CONNECTIONS,
                "passive established callbacks"
            );
            assert_eq!(data.keepalive_rc, 0, "bpf_setsockopt(SO_KEEPALIVE)");
            assert_eq!(data.keepidle_rc, 0, "bpf_setsockopt(TCP_KEEPIDLE)");
            assert_eq!(data.rto_min_rc, 0, "bpf_setsockopt(TCP_BPF_RTO_MIN)");

            let sockets = sockets(&report);
            assert_eq!(sockets.len() as u64, 2 * CONNECTIONS, "sockets reported");
            for (name, s) in sockets {
                assert_eq!(s["keepalive"], 1, "SO_KEEPALIVE of {name}: {s}");
                assert_eq!(s["keepidle"], KEEPIDLE_S, "TCP_KEEPIDLE of {name}: {s}");
                let rto = s["rto_us"].as_u64().unwrap_or(u64::MAX);
                assert!(
                    rto < KERNEL_RTO_MIN_US,
                    "tcpi_rto of {name} is {rto} us: not below the kernel's 200 ms floor after \
                     {ROUND_TRIPS} round trips with TCP_BPF_RTO_MIN = {RTO_MIN_US} us"
                );
            }
            Ok(())
        },
    );
}
