//! lwt in / out / xmit (`programs/src/bpf/lwt.bpf.c`): light-weight tunnel programs attached to an
//! IPv4 route with iproute2 (`ip route add 10.10.1.0/24 encap bpf {in|out|xmit} pinned <file> via
//! … dev …`). The kernel runs such a program only for packets that take that route.
//!
//! Topology ([`Line::ipv4`]): three namespaces in a row, sender `a` (10.9.1.1) — router `r`
//! (10.9.1.2 | 10.9.2.1, forwarding on) — receiver `b` (10.9.2.2). `b` holds two more addresses on
//! its loopback: [`ENCAP_DST`] 10.10.1.2, whose /24 gets the route with the program, and
//! [`PLAIN_DST`] 10.10.2.2, reached through the plain route 10.10.0.0/16 (the control: same hops,
//! no program).
//! The skeleton loads the programs (their verifier statistics are recorded) and pins the one under
//! test in a bpffs directory of the case's own; `ip route add … pinned <file>` runs from a thread
//! inside the namespace (so it sees this process's bpffs mount); the pins go right after, the
//! route keeps the program, and deleting the namespaces removes routes and programs.
//!
//! - `in_drops_one_port`: the `in` program on the router's route (it runs when a received packet
//!   is routed, before forwarding). UDP to [`DROP_PORT`] at `ENCAP_DST` never arrives, UDP to
//!   [`PASS_PORT`] at `ENCAP_DST` and to `DROP_PORT` at `PLAIN_DST` all arrive; the program's
//!   counters say it ran for exactly the datagrams sent to `ENCAP_DST` and dropped the first flow.
//! - `out_drops_one_port`: the same with the `out` program on the sender's route (it runs when a
//!   locally generated packet is output on the route); there the drop also reaches the sender:
//!   each `sendto` of the dropped flow fails with EPERM.
//! - `xmit_rewrites_payload`: the `xmit` program on the sender's route rewrites the payload prefix
//!   "ping" of UDP to [`REWRITE_PORT`] into "pong" (fixing the UDP checksum): those datagrams
//!   arrive as "pong …", the same datagrams sent to `PLAIN_DST` and those to `PASS_PORT` arrive
//!   unchanged. (The receiver's UDP checksum check proves the fix-up was right.)
//!
//! A warm-up datagram on the plain route resolves both hops' neighbours first, so no datagram
//! waits in an ARP queue, and the programs' counters start at zero.
//!
//! Behind the flows the sender sends a sentinel ([`SENTINEL`]) to each receiving port, and each
//! socket is read up to its sentinel. The one to `PASS_PORT` takes the program's route (every
//! program passes it: `in`/`out` drop only `DROP_PORT`, `xmit` rewrites only "ping"); the other
//! takes the plain route (on the program's route `in`/`out` would drop it). Both follow every flow
//! over the same hops and veth queues, so what arrived before a sentinel is all that arrives.
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN of each program on crafted Ethernet frames (the
//! kernel strips the Ethernet header, the programs see the IP packet, and the output comes back
//! behind 14 zeroed bytes): verdicts (`BPF_OK` 0, `BPF_DROP` 2) per packet kind, and for xmit the
//! rewritten bytes and a still valid UDP checksum.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use libbpf_rs::{ProgramMut, ProgramType};
use programs::lwt::{LwtSkel, LwtSkelBuilder};
use rstest::rstest;
use testkit::netlink::Cidr;
use testkit::observe::{self, volatile};
use testkit::packet::{self, ETH_HLEN};
use testkit::pins::PinDir;
use testkit::test_run::Row;
use testkit::veth::Line;
use testkit::{Case, CaseError, CaseResult, NetNs, OrError, errno, probe};

/// UDP to this port is dropped by the in and out programs.
const DROP_PORT: u16 = 7201;
/// UDP to this port passes unchanged (the control port).
const PASS_PORT: u16 = 7202;
/// UDP to this port starting with "ping" is rewritten by the xmit program.
const REWRITE_PORT: u16 = 7203;
/// The payload sent last to each receiving port.
const SENTINEL: &str = "sentinel";
/// Datagrams sent per flow.
const DATAGRAMS: usize = 3;
/// `enum bpf_ret_code` (linux/bpf.h).
const BPF_OK: i32 = 0;
const BPF_DROP: i32 = 2;

const A_ADDR: Ipv4Addr = Line::V4.a;
const R_A_ADDR: Ipv4Addr = Line::V4.r_a;
const B_ADDR: Ipv4Addr = Line::V4.b;
/// On b's loopback; its /24 is the route that carries the program.
const ENCAP_DST: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 2);
const ENCAP_PREFIX: Cidr = Cidr::v4(Ipv4Addr::new(10, 10, 1, 0), 24);
/// On b's loopback; reached through the plain route [`ROUTED`].
const PLAIN_DST: Ipv4Addr = Ipv4Addr::new(10, 10, 2, 2);
/// What a and r route towards b.
const ROUTED: Cidr = Cidr::v4(Ipv4Addr::new(10, 10, 0, 0), 16);
/// The frames of the test-run rows (to the encap route).
const FLOW: packet::Flow = packet::Flow {
    src: A_ADDR,
    dst: ENCAP_DST,
    sport: 40000,
    payload: b"ping",
};

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<LwtSkel<'obj>> {
    // The object holds all three programs: the kernel must know all three types to load it.
    for ty in [
        ProgramType::LwtIn,
        ProgramType::LwtOut,
        ProgramType::LwtXmit,
    ] {
        probe::prog_type(ty)?;
    }
    case.open_load(LwtSkelBuilder::default(), object, |open| {
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.drop_port = DROP_PORT;
        rodata.rewrite_port = REWRITE_PORT;
    })
}

/// Where a program is attached and what its route case sends and expects.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hook {
    In,
    Out,
    Xmit,
}

impl Hook {
    fn prog_type(self) -> ProgramType {
        match self {
            Hook::In => ProgramType::LwtIn,
            Hook::Out => ProgramType::LwtOut,
            Hook::Xmit => ProgramType::LwtXmit,
        }
    }

    /// iproute2's name of the hook (`encap bpf <name>`).
    fn name(self) -> &'static str {
        match self {
            Hook::In => "in",
            Hook::Out => "out",
            Hook::Xmit => "xmit",
        }
    }

    fn prog<'a, 'obj>(self, skel: &'a LwtSkel<'obj>) -> &'a ProgramMut<'obj> {
        match self {
            Hook::In => &skel.progs.lwt_in_drop_port,
            Hook::Out => &skel.progs.lwt_out_drop_port,
            Hook::Xmit => &skel.progs.lwt_xmit_rewrite,
        }
    }

    fn prog_mut<'a, 'obj>(self, skel: &'a mut LwtSkel<'obj>) -> &'a mut ProgramMut<'obj> {
        match self {
            Hook::In => &mut skel.progs.lwt_in_drop_port,
            Hook::Out => &mut skel.progs.lwt_out_drop_port,
            Hook::Xmit => &mut skel.progs.lwt_xmit_rewrite,
        }
    }

    /// The program's (seen, acted on) counters.
    fn counters(self, skel: &LwtSkel) -> (u64, u64) {
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        match self {
            Hook::In => (volatile(&bss.in_seen), volatile(&bss.in_dropped)),
            Hook::Out => (volatile(&bss.out_seen), volatile(&bss.out_dropped)),
            Hook::Xmit => (volatile(&bss.xmit_seen), volatile(&bss.xmit_rewritten)),
        }
    }
}

/// A flow: [`DATAGRAMS`] datagrams `"ping <label> <i>"` to `dst:port`.
#[derive(Clone, Copy)]
struct Flow {
    label: &'static str,
    dst: Ipv4Addr,
    port: u16,
}

impl Flow {
    fn payloads(self, word: &str) -> Vec<String> {
        (0..DATAGRAMS)
            .map(|i| format!("{word} {} {i}", self.label))
            .collect()
    }
}

/// Attaches `hook`'s program to the route and checks, per port, exactly what arrives in `b`
/// when the flows are sent from `a`; then checks the program's counters.
fn route_case(case: &mut Case, hook: Hook) -> CaseResult {
    let mut object = MaybeUninit::uninit();
    let mut skel = open_and_load(case, &mut object)?;
    // Routes with `encap bpf` (CONFIG_LWTUNNEL_BPF, bool).
    probe::config_builtin("CONFIG_LWTUNNEL_BPF")?;
    let line = Line::ipv4(ROUTED, &[ENCAP_DST, PLAIN_DST])?;
    let (ns, via, dev) = match hook {
        Hook::In => (&line.r, B_ADDR, Line::R_B_DEV),
        Hook::Out | Hook::Xmit => (&line.a, R_A_ADDR, Line::A_DEV),
    };
    attach_route(ns, hook, hook.prog_mut(&mut skel), via, dev)?;

    // (flows sent, what each port must receive)
    let encap = |port| Flow {
        label: "encap",
        dst: ENCAP_DST,
        port,
    };
    let plain = |port| Flow {
        label: "plain",
        dst: PLAIN_DST,
        port,
    };
    let (flows, expected): (Vec<Flow>, Vec<(u16, Vec<String>)>) = match hook {
        Hook::In | Hook::Out => (
            vec![encap(DROP_PORT), encap(PASS_PORT), plain(DROP_PORT)],
            vec![
                (DROP_PORT, plain(DROP_PORT).payloads("ping")),
                (PASS_PORT, encap(PASS_PORT).payloads("ping")),
            ],
        ),
        Hook::Xmit => (
            vec![encap(REWRITE_PORT), encap(PASS_PORT), plain(REWRITE_PORT)],
            vec![
                (REWRITE_PORT, {
                    let mut v = encap(REWRITE_PORT).payloads("pong");
                    v.extend(plain(REWRITE_PORT).payloads("ping"));
                    v
                }),
                (PASS_PORT, encap(PASS_PORT).payloads("ping")),
            ],
        ),
    };

    let receivers = {
        let _inside = line.b.enter()?;
        expected
            .iter()
            .map(|(port, _)| {
                UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, *port))
                    .or_error("binding a receiver")
            })
            .collect::<CaseResult<Vec<_>>>()?
    };
    let sender = {
        let _inside = line.a.enter()?;
        UdpSocket::bind(SocketAddrV4::new(A_ADDR, 0)).or_error("binding the sender")?
    };

    // Warm-up on the plain route: resolves both hops' neighbours; no program runs for it.
    sender.send_to(b"warm-up", (PLAIN_DST, PASS_PORT))?;
    let pass_rx = &receivers[expected.iter().position(|(p, _)| *p == PASS_PORT).unwrap()];
    let early = observe::texts_before(pass_rx, "warm-up").map_err(|e| {
        CaseError::Error(anyhow::anyhow!(
            "{} (the plain route): the topology is broken",
            e.reason()
        ))
    })?;
    assert_eq!(
        early,
        Vec::<String>::new(),
        "datagrams on port {PASS_PORT} before the warm-up"
    );
    assert_eq!(
        hook.counters(&skel),
        (0, 0),
        "the {} program ran for the warm-up datagram on the plain route",
        hook.name()
    );

    let one_cpu = observe::OneCpu::pin()?;
    for flow in &flows {
        // BPF_DROP at `out` reaches the sender: the send fails with EPERM. (At `in`, on the
        // router, the sender sees nothing; `xmit` drops nothing here.)
        let refused = hook == Hook::Out && flow.dst == ENCAP_DST && flow.port == DROP_PORT;
        let errors: Vec<Option<i32>> = flow
            .payloads("ping")
            .iter()
            .map(|p| errno::io(sender.send_to(p.as_bytes(), (flow.dst, flow.port))))
            .map(|sent| sent.err().map(|e| e as i32))
            .collect();
        case.detail(&format!("send_errno_{}_{}", flow.label, flow.port), &errors);
        let want = if refused { Some(libc::EPERM) } else { None };
        assert_eq!(
            errors,
            vec![want; DATAGRAMS],
            "errno of each send to {}:{}",
            flow.dst,
            flow.port
        );
    }
    for (port, _) in &expected {
        let dst = if *port == PASS_PORT {
            ENCAP_DST
        } else {
            PLAIN_DST
        };
        sender.send_to(SENTINEL.as_bytes(), (dst, *port))?;
    }
    drop(one_cpu);

    for ((port, want), rx) in expected.iter().zip(&receivers) {
        // In the order sent: the paths are FIFO (which the sentinels rely on too).
        let got = observe::texts_before(rx, SENTINEL)?;
        case.detail(&format!("received_port_{port}"), &got);
        assert_eq!(&got, want, "datagrams received on port {port}, in order");
    }

    let (seen, acted) = hook.counters(&skel);
    case.detail("program_seen", seen);
    case.detail("program_acted", acted);
    // The program ran for the two flows and the sentinel to ENCAP_DST, and for nothing on the
    // plain route.
    assert_eq!(
        seen,
        (2 * DATAGRAMS + 1) as u64,
        "packets the {} program ran for",
        hook.name()
    );
    assert_eq!(
        acted,
        DATAGRAMS as u64,
        "packets the {} program {}",
        hook.name(),
        if hook == Hook::Xmit {
            "rewrote"
        } else {
            "dropped"
        }
    );
    Ok(())
}

/// Pins `prog` and runs `ip route add ENCAP_PREFIX encap bpf <hook> pinned <pin> via <via> dev
/// <dev>` from a thread inside `ns`.
fn attach_route(
    ns: &NetNs,
    hook: Hook,
    prog: &mut ProgramMut,
    via: Ipv4Addr,
    dev: &str,
) -> CaseResult {
    let _inside = ns.enter()?;
    let pins = PinDir::new("lwt")?;
    let pin = pins.join(hook.name());
    prog.pin(&pin).or_error("pinning the program")?;
    let pin = pin.to_string_lossy();
    let (prefix, via) = (ENCAP_PREFIX.to_string(), via.to_string());
    testkit::netns::attach_tool(
        "ip",
        &[
            "route",
            "add",
            &prefix,
            "encap",
            "bpf",
            hook.name(),
            "pinned",
            &pin,
            "via",
            &via,
            "dev",
            dev,
        ],
    )
}

#[test]
fn in_drops_one_port() {
    Case::run(ProgramType::LwtIn, |case| route_case(case, Hook::In));
}

#[test]
fn out_drops_one_port() {
    Case::run(ProgramType::LwtOut, |case| route_case(case, Hook::Out));
}

#[test]
fn xmit_rewrites_payload() {
    Case::run(ProgramType::LwtXmit, |case| route_case(case, Hook::Xmit));
}

/// What a test-run row expects back besides the verdict.
#[derive(Clone, Debug)]
enum Expect {
    /// The packet comes back unchanged.
    Unchanged,
    /// The UDP payload comes back starting with these bytes, with a valid UDP checksum.
    Payload(&'static [u8]),
}

#[rstest]
#[case::in_drops_udp_to_drop_port(Hook::In,
    FLOW.udp4_checksummed(DROP_PORT),
    BPF_DROP,
    Expect::Unchanged
)]
#[case::in_drops_udp_after_ip_options(Hook::In,
    FLOW.udp4_with_options(DROP_PORT),
    BPF_DROP,
    Expect::Unchanged
)]
#[case::in_passes_other_udp(Hook::In,
    FLOW.udp4_checksummed(PASS_PORT),
    BPF_OK,
    Expect::Unchanged
)]
#[case::in_passes_tcp_to_drop_port(Hook::In,
    FLOW.tcp4(DROP_PORT),
    BPF_OK,
    Expect::Unchanged
)]
#[case::in_passes_ipv6_udp_to_drop_port(Hook::In,
    FLOW.udp6(DROP_PORT),
    BPF_OK,
    Expect::Unchanged
)]
#[case::in_passes_truncated_udp(Hook::In,
    FLOW.udp4_cut_in_udp_header(DROP_PORT),
    BPF_OK,
    Expect::Unchanged
)]
#[case::out_drops_udp_to_drop_port(Hook::Out,
    FLOW.udp4_checksummed(DROP_PORT),
    BPF_DROP,
    Expect::Unchanged
)]
#[case::out_passes_other_udp(Hook::Out,
    FLOW.udp4_checksummed(PASS_PORT),
    BPF_OK,
    Expect::Unchanged
)]
#[case::out_passes_ipv6_udp_to_drop_port(Hook::Out,
    FLOW.udp6(DROP_PORT),
    BPF_OK,
    Expect::Unchanged
)]
#[case::xmit_rewrites_ping(Hook::Xmit,
    packet::Flow { payload: b"ping 0", ..FLOW }.udp4_checksummed(REWRITE_PORT),
    BPF_OK,
    Expect::Payload(b"pong 0")
)]
#[case::xmit_keeps_zero_checksum(Hook::Xmit,
    packet::Flow { payload: b"ping 0", ..FLOW }.udp4(REWRITE_PORT),
    BPF_OK,
    Expect::Payload(b"pong 0")
)]
#[case::xmit_leaves_other_payload(Hook::Xmit,
    packet::Flow { payload: b"pang 0", ..FLOW }.udp4_checksummed(REWRITE_PORT),
    BPF_OK,
    Expect::Unchanged
)]
#[case::xmit_leaves_other_port(Hook::Xmit,
    packet::Flow { payload: b"ping 0", ..FLOW }.udp4_checksummed(PASS_PORT),
    BPF_OK,
    Expect::Unchanged
)]
fn test_run(
    #[case] hook: Hook,
    #[case] frame: Vec<u8>,
    #[case] verdict: i32,
    #[case] expect: Expect,
) {
    let row = Row::new(frame, verdict);
    // The program sees and returns the IP packet; the kernel puts 14 zeroed bytes before it.
    let row = match expect {
        Expect::Unchanged => {
            let bytes = [&[0u8; ETH_HLEN], &row.frame()[ETH_HLEN..]].concat();
            row.bytes(bytes)
        }
        Expect::Payload(_) => row,
    };
    // Runs counted by the program, and packets the xmit program rewrote.
    let rewritten = match (hook, &expect) {
        (_, Expect::Payload(_)) => Some(("program_acted", 1)),
        (Hook::Xmit, Expect::Unchanged) => Some(("program_acted", 0)),
        _ => None,
    };
    let row = row.counters([("program_seen", 1)].into_iter().chain(rewritten));
    row.case(hook.prog_type(), |case, row| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        let ran = row.run_counted(case, hook.prog(&skel), || {
            let (seen, acted) = hook.counters(&skel);
            Ok(vec![("program_seen", seen), ("program_acted", acted)])
        })?;
        if let Expect::Payload(want) = expect {
            check_rewrite(case, row.frame(), &ran.data, want);
        }
        Ok(())
    });
}

/// The xmit program's rewrite of `frame` into `data`: its payload starts with `want`, its UDP
/// checksum still verifies (or stays zero), nothing else changed.
fn check_rewrite(case: &mut Case, frame: &[u8], data: &[u8], want: &[u8]) {
    assert_eq!(data.len(), frame.len(), "length of the output packet");
    assert_eq!(
        &data[..ETH_HLEN],
        &[0u8; ETH_HLEN],
        "the (zeroed) Ethernet header before the output packet"
    );
    let udp = &data[ETH_HLEN + 20..];
    assert_eq!(&udp[8..8 + want.len()], want, "the output payload");
    let (in_udp, out_check) = (&frame[ETH_HLEN + 20..], [udp[6], udp[7]]);
    case.detail(
        "udp_checksum_in",
        u16::from_be_bytes([in_udp[6], in_udp[7]]),
    );
    case.detail("udp_checksum_out", u16::from_be_bytes(out_check));
    if in_udp[6..8] == [0, 0] {
        assert_eq!(out_check, [0, 0], "a zero (absent) UDP checksum stays zero");
    } else {
        assert_eq!(
            packet::udp4_checksum(&data[ETH_HLEN..ETH_HLEN + 20], udp),
            0,
            "the output UDP checksum verifies"
        );
    }
    // Only those four bytes and the checksum changed.
    let mut rest_in = frame[ETH_HLEN..].to_vec();
    let mut rest_out = data[ETH_HLEN..].to_vec();
    for p in [&mut rest_in, &mut rest_out] {
        p[20 + 6..20 + 8].fill(0);
        p[20 + 8..20 + 12].fill(0);
    }
    assert_eq!(
        rest_out, rest_in,
        "bytes besides payload prefix and checksum"
    );
}
