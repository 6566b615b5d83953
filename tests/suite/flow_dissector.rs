//! flow_dissector (`programs/src/bpf/flow_dissector.bpf.c`): a BPF flow dissector for IPv4/IPv6
//! with TCP/UDP ports, which the kernel runs instead of its own for a namespace's packets.
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN on crafted Ethernet frames. The kernel hands
//! the program flow keys with `n_proto` = the EtherType and `nhoff` = `thoff` = 14, and returns
//! the `struct bpf_flow_keys` it filled in as the output data. Each row gives the verdict
//! (`BPF_OK` 0, `BPF_DROP` 2 for malformed packets; kernels before 6.1 report 1 for `BPF_OK` and
//! 0 for anything else instead) and, for `BPF_OK`, the whole expected key:
//! offsets, address family, protocols, ports, addresses, fragment bits and IPv6 flow label;
//! rows with input flags (`BPF_FLOW_DISSECTOR_F_PARSE_1ST_FRAG`, `…_STOP_AT_FLOW_LABEL`) pass them
//! in the input context.
//!
//! `attached_dissector_feeds_fib_rules`: attached to the receiving namespace (a BPF link,
//! `BPF_FLOW_DISSECTOR`) of a veth pair, the program is what the kernel uses there. A policy rule
//! that matches on ports needs the ports of every incoming packet before the route lookup, and
//! gets them from the flow dissector (`fib4_rules_early_flow_dissect`; port rules exist since
//! 4.17 with `CONFIG_IP_MULTIPLE_TABLES`). In the receiver, the rule `ipproto udp dport 7201
//! lookup 100` and the route `local 10.99.0.1 dev lo table 100` make the service address
//! 10.99.0.1 local only for UDP to port 7201. UDP datagrams from the sender to 10.99.0.1:7201
//! arrive, those to 10.99.0.1:7202 find no route and never arrive, and the program's per-port
//! counters hold at least one dissection per datagram (the route lookup's; a kernel may dissect
//! again, e.g. 6.18 validating the source of a locally delivered packet). After the link is dropped the rule still
//! works (the kernel's own dissector again) and the counters no longer move.

use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, ProgramType};
use programs::flow_dissector::{FlowDissectorSkel, FlowDissectorSkelBuilder};
use rstest::rstest;
use testkit::netlink::{Cidr, Selector};
use testkit::packet::{
    self, ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4,
};
use testkit::test_run::Row;
use testkit::veth::VethPair;
use testkit::{Case, CaseResult, OrError, floors, observe, probe};

/// UDP to the service address on this port is routed (by a policy rule on the port) to the
/// table where that address is local.
const ROUTED_PORT: u16 = 7201;
/// UDP to the service address on this port finds no route.
const UNROUTED_PORT: u16 = 7202;
/// The policy rule's routing table.
const PORT_TABLE: u32 = 100;
const SENDER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
/// Local to the receiver only through the port rule's table.
const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const SPORT: u16 = 40000;
/// Datagrams sent per flow and phase.
const DATAGRAMS: u64 = 3;
/// The program's verdicts (`enum bpf_ret_code`).
const BPF_OK: i32 = 0;
const BPF_DROP: i32 = 2;
/// Input flags (`BPF_FLOW_DISSECTOR_F_*`).
const F_PARSE_1ST_FRAG: u32 = 1 << 0;
const F_STOP_AT_FLOW_LABEL: u32 = 1 << 1;
/// `sizeof(struct bpf_flow_keys)` (the same from 5.4 on) and the offset of its `flags`.
const FLOW_KEYS_SIZE: usize = 56;
const FLOW_KEYS_FLAGS: usize = 48;

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<FlowDissectorSkel<'obj>> {
    probe::prog_type(ProgramType::FlowDissector)?;
    case.load(FlowDissectorSkelBuilder::default().open(object)?)
}

/// `struct bpf_flow_keys` as the program leaves it (the input `flags` left out), decoded from the
/// kernel's bytes: offsets and `addr_proto` in host order, the rest as numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FlowKeys {
    nhoff: u16,
    thoff: u16,
    addr_proto: u16,
    is_frag: bool,
    is_first_frag: bool,
    is_encap: bool,
    ip_proto: u8,
    n_proto: u16,
    sport: u16,
    dport: u16,
    /// Source and destination, read per `addr_proto` (none for other values).
    addresses: Option<(IpAddr, IpAddr)>,
    flow_label: u32,
}

impl FlowKeys {
    fn parse(b: &[u8]) -> Self {
        let ne16 = |o: usize| u16::from_ne_bytes([b[o], b[o + 1]]);
        let be16 = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
        let addr_proto = ne16(4);
        let addresses = match addr_proto {
            0x0800 => {
                let v4 = |o: usize| IpAddr::from(<[u8; 4]>::try_from(&b[o..o + 4]).unwrap());
                Some((v4(16), v4(20)))
            }
            0x86dd => {
                let v6 = |o: usize| IpAddr::from(<[u8; 16]>::try_from(&b[o..o + 16]).unwrap());
                Some((v6(16), v6(32)))
            }
            _ => None,
        };
        FlowKeys {
            nhoff: ne16(0),
            thoff: ne16(2),
            addr_proto,
            is_frag: b[6] != 0,
            is_first_frag: b[7] != 0,
            is_encap: b[8] != 0,
            ip_proto: b[9],
            n_proto: be16(10),
            sport: be16(12),
            dport: be16(14),
            addresses,
            flow_label: u32::from_be_bytes([b[52], b[53], b[54], b[55]]),
        }
    }
}

/// The keys of an IPv4 packet 10.9.0.1 → 10.9.0.2 with an `ihl`-word header.
fn keys_v4(ihl: u16, ip_proto: u8, ports: Option<u16>) -> FlowKeys {
    FlowKeys {
        nhoff: ETH_HLEN as u16,
        thoff: ETH_HLEN as u16 + ihl * 4,
        addr_proto: ETH_P_IP,
        ip_proto,
        n_proto: ETH_P_IP,
        sport: ports.map_or(0, |_| SPORT),
        dport: ports.unwrap_or(0),
        addresses: Some((SENDER.into(), RECEIVER.into())),
        ..Default::default()
    }
}

/// The keys of an IPv6 packet fd00::1 → fd00::2 with `flow_label`.
fn keys_v6(ip_proto: u8, ports: Option<u16>, flow_label: u32) -> FlowKeys {
    FlowKeys {
        nhoff: ETH_HLEN as u16,
        thoff: ETH_HLEN as u16 + 40,
        addr_proto: ETH_P_IPV6,
        ip_proto,
        n_proto: ETH_P_IPV6,
        sport: ports.map_or(0, |_| SPORT),
        dport: ports.unwrap_or(0),
        addresses: Some((SRC6.into(), DST6.into())),
        flow_label,
        ..Default::default()
    }
}

fn fragment(mut keys: FlowKeys, first: bool) -> FlowKeys {
    keys.is_frag = true;
    keys.is_first_frag = first;
    keys
}

fn v4(ip: Ipv4, l4: &[u8]) -> Vec<u8> {
    packet::ethernet(ETH_P_IP, &ip.build(l4))
}

fn ip4(protocol: u8) -> Ipv4 {
    Ipv4::new(SENDER.octets(), RECEIVER.octets(), protocol)
}

fn udp4(dport: u16) -> Vec<u8> {
    v4(ip4(IPPROTO_UDP), &packet::udp(SPORT, dport, b"payload"))
}

fn tcp4(dport: u16) -> Vec<u8> {
    v4(ip4(IPPROTO_TCP), &packet::tcp_syn(SPORT, dport))
}

fn udp4_with_options(dport: u16) -> Vec<u8> {
    let mut ip = ip4(IPPROTO_UDP);
    ip.options = vec![1, 1, 1, 0]; // NOP, NOP, NOP, end of options: IHL 6
    v4(ip, &packet::udp(SPORT, dport, b"payload"))
}

/// A UDP fragment: the first (MF set, offset 0) or a later one (offset 8 bytes, no UDP header).
fn udp4_fragment(first: bool, dport: u16) -> Vec<u8> {
    let mut ip = ip4(IPPROTO_UDP);
    ip.frag_off = if first { 0x2000 } else { 1 };
    let l4 = if first {
        packet::udp(SPORT, dport, b"payload")
    } else {
        b"more payload".to_vec()
    };
    v4(ip, &l4)
}

fn icmp4() -> Vec<u8> {
    v4(ip4(1), &[8, 0, 0, 0, 0, 1, 0, 1]) // echo request
}

fn v6(next_header: u8, flow_label: u32, l4: &[u8]) -> Vec<u8> {
    packet::ethernet(
        ETH_P_IPV6,
        &packet::ipv6(SRC6.octets(), DST6.octets(), next_header, flow_label, l4),
    )
}

fn udp6(dport: u16) -> Vec<u8> {
    v6(IPPROTO_UDP, 0x12345, &packet::udp(SPORT, dport, b"payload"))
}

fn tcp6(dport: u16) -> Vec<u8> {
    v6(IPPROTO_TCP, 0, &packet::tcp_syn(SPORT, dport))
}

/// `frame` cut to `len` bytes.
fn truncated(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    frame.truncate(len);
    frame
}

/// An IPv4 header claiming 4 words (16 bytes), less than the minimum of 5.
fn ipv4_ihl_too_small() -> Vec<u8> {
    let mut f = udp4(ROUTED_PORT);
    f[ETH_HLEN] = 0x44;
    f
}

/// A TCP header with data offset 4 (16 bytes), less than the minimum of 5.
fn tcp4_doff_too_small() -> Vec<u8> {
    let mut f = tcp4(ROUTED_PORT);
    f[ETH_HLEN + 20 + 12] = 0x40;
    f
}

/// An IPv6 packet behind the IPv4 EtherType.
fn ipv6_in_ipv4_ethertype() -> Vec<u8> {
    let mut f = udp6(ROUTED_PORT);
    f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    f
}

fn arp() -> Vec<u8> {
    packet::ethernet(ETH_P_ARP, &[0u8; 28])
}

#[rstest]
#[case::ipv4_udp(
    udp4(ROUTED_PORT),
    0,
    BPF_OK,
    Some(keys_v4(5, IPPROTO_UDP, Some(ROUTED_PORT)))
)]
#[case::ipv4_tcp(tcp4(443), 0, BPF_OK, Some(keys_v4(5, IPPROTO_TCP, Some(443))))]
#[case::ipv4_options_udp(
    udp4_with_options(53),
    0,
    BPF_OK,
    Some(keys_v4(6, IPPROTO_UDP, Some(53)))
)]
#[case::ipv4_icmp_has_no_ports(icmp4(), 0, BPF_OK, Some(keys_v4(5, 1, None)))]
#[case::ipv4_first_fragment(
    udp4_fragment(true, 53),
    0,
    BPF_OK,
    Some(fragment(keys_v4(5, IPPROTO_UDP, None), true))
)]
#[case::ipv4_first_fragment_parsed_on_request(
    udp4_fragment(true, 53),
    F_PARSE_1ST_FRAG,
    BPF_OK,
    Some(fragment(keys_v4(5, IPPROTO_UDP, Some(53)), true))
)]
#[case::ipv4_later_fragment(
    udp4_fragment(false, 53),
    F_PARSE_1ST_FRAG,
    BPF_OK,
    Some(fragment(keys_v4(5, IPPROTO_UDP, None), false))
)]
#[case::ipv6_udp(
    udp6(ROUTED_PORT),
    0,
    BPF_OK,
    Some(keys_v6(IPPROTO_UDP, Some(ROUTED_PORT), 0x12345))
)]
#[case::ipv6_tcp(tcp6(22), 0, BPF_OK, Some(keys_v6(IPPROTO_TCP, Some(22), 0)))]
#[case::ipv6_stops_at_flow_label(
    udp6(ROUTED_PORT),
    F_STOP_AT_FLOW_LABEL,
    BPF_OK,
    Some(keys_v6(IPPROTO_UDP, None, 0x12345))
)]
#[case::malformed_arp_is_not_ip(arp(), 0, BPF_DROP, None)]
#[case::malformed_ipv4_truncated_header(truncated(udp4(ROUTED_PORT), ETH_HLEN + 12), 0, BPF_DROP, None)]
#[case::malformed_ipv4_ihl_too_small(ipv4_ihl_too_small(), 0, BPF_DROP, None)]
#[case::malformed_ipv4_version_6(ipv6_in_ipv4_ethertype(), 0, BPF_DROP, None)]
#[case::malformed_ipv4_truncated_udp(truncated(udp4(ROUTED_PORT), ETH_HLEN + 20 + 4), 0, BPF_DROP, None)]
#[case::malformed_ipv4_tcp_doff_too_small(tcp4_doff_too_small(), 0, BPF_DROP, None)]
#[case::malformed_ipv6_truncated_header(truncated(udp6(ROUTED_PORT), ETH_HLEN + 30), 0, BPF_DROP, None)]
#[case::malformed_ipv6_truncated_tcp(truncated(tcp6(22), ETH_HLEN + 40 + 10), 0, BPF_DROP, None)]
fn test_run(
    #[case] frame: Vec<u8>,
    #[case] flags: u32,
    #[case] verdict: i32,
    #[case] keys: Option<FlowKeys>,
) {
    let mut context = vec![0u8; FLOW_KEYS_SIZE];
    context[FLOW_KEYS_FLAGS..FLOW_KEYS_FLAGS + 4].copy_from_slice(&flags.to_ne_bytes());
    let row = Row::new(frame, reported(verdict)).context(context);
    row.case(ProgramType::FlowDissector, |case, row| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        let ran = row.run(case, &skel.progs.dissect)?;
        let got = FlowKeys::parse(if ran.data.is_empty() {
            &[0; FLOW_KEYS_SIZE]
        } else {
            &ran.data
        });
        case.detail("flow_keys", format!("{got:?}"));
        if let Some(expected) = keys {
            assert_eq!(got, expected, "flow keys");
        }
        Ok(())
    });
}

/// The return value BPF_PROG_TEST_RUN reports for a program's `verdict`. Before 6.1 the kernel
/// reported whether the verdict was `BPF_OK` (1 or 0); since 6.1 (with
/// `BPF_FLOW_DISSECTOR_CONTINUE`) it reports the verdict itself.
fn reported(verdict: i32) -> i32 {
    if floors::reached("test_run.flow_dissector_verdict") {
        verdict
    } else {
        i32::from(verdict == BPF_OK)
    }
}

#[test]
fn attached_dissector_feeds_fib_rules() {
    Case::run(ProgramType::FlowDissector, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        // Port-matching policy rules (4.17+) need the multiple-tables option.
        probe::config_builtin("CONFIG_IP_MULTIPLE_TABLES")?;

        let pair = VethPair::new(Cidr::v4(SENDER, 24), Cidr::v4(RECEIVER, 24))?;
        pair.policy_routed_service(
            SERVICE,
            RECEIVER,
            Selector::UdpDport(ROUTED_PORT),
            PORT_TABLE,
        )?;
        let (rx_routed, rx_unrouted) = {
            let _inside = pair.b.enter()?;
            let bind = |port| {
                UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
                    .or_error("binding a receiver")
            };
            (bind(ROUTED_PORT)?, bind(UNROUTED_PORT)?)
        };
        let sender = {
            let _inside = pair.a.enter()?;
            UdpSocket::bind(SocketAddrV4::new(SENDER, 0)).or_error("binding the sender")?
        };
        // The sentinel, sent last to the routed port, follows the unrouted datagrams on their
        // path (sender socket, route, veth queue, dissector): once it arrived they were routed
        // or not, and the unrouted port's socket is read without waiting.
        let send_all = |phase: &str| -> CaseResult<(Vec<String>, Vec<String>)> {
            {
                let _one_cpu = observe::OneCpu::pin()?;
                for i in 0..DATAGRAMS {
                    for port in [ROUTED_PORT, UNROUTED_PORT] {
                        sender
                            .send_to(format!("{phase}:{port}:{i}").as_bytes(), (SERVICE, port))?;
                    }
                }
                sender.send_to(b"sentinel", (SERVICE, ROUTED_PORT))?;
            }
            Ok((
                observe::texts_before(&rx_routed, "sentinel")?,
                observe::texts(&observe::queued(&rx_unrouted)?),
            ))
        };
        let expected = |phase: &str| -> Vec<String> {
            (0..DATAGRAMS)
                .map(|i| format!("{phase}:{ROUTED_PORT}:{i}"))
                .collect()
        };
        let counts = || -> CaseResult<(u64, u64)> {
            Ok((
                dport_count(&skel, ROUTED_PORT)?,
                dport_count(&skel, UNROUTED_PORT)?,
            ))
        };

        let link = skel
            .progs
            .dissect
            .attach_netns(pair.b.as_fd().as_raw_fd())?;
        // Resolve the neighbour first, so no datagram waits in (or falls out of) ARP's queue.
        sender.send_to(b"warm-up", (SERVICE, ROUTED_PORT))?;
        assert_eq!(
            observe::texts_before(&rx_routed, "warm-up")?,
            Vec::<String>::new(),
            "datagrams to port {ROUTED_PORT} before the warm-up"
        );
        let (routed, unrouted) = send_all("attached")?;
        let attached = counts()?;
        case.detail("attached_received", serde_json::json!([routed, unrouted]));
        case.detail("attached_dissections_by_port", attached);
        assert_eq!(
            routed,
            expected("attached"),
            "datagrams to {SERVICE}:{ROUTED_PORT} (routed by the port rule) while attached"
        );
        assert_eq!(
            unrouted,
            Vec::<String>::new(),
            "datagrams to {SERVICE}:{UNROUTED_PORT} (no route) while attached"
        );
        // At least one dissection per datagram: the route lookup's. Kernels may dissect a
        // delivered packet again (6.18 does, in the source validation of a local route when
        // custom rules exist), so the counts are lower bounds.
        assert!(
            attached.0 >= DATAGRAMS + 2 && attached.1 >= DATAGRAMS,
            "dissections of ports ({ROUTED_PORT}, {UNROUTED_PORT}): {attached:?}, expected at \
                 least ({}, {DATAGRAMS}): one per datagram, the warm-up and the sentinel",
            DATAGRAMS + 2
        );

        // Detached by the link, not only by closing its fd: a child another test forks meanwhile
        // holds a copy of the fd until it exits.
        link.detach().or_error("detaching the link")?;
        drop(link);
        let (routed, unrouted) = send_all("detached")?;
        let detached = counts()?;
        case.detail("detached_received", serde_json::json!([routed, unrouted]));
        case.detail("detached_dissections_by_port", detached);
        assert_eq!(
            routed,
            expected("detached"),
            "datagrams to {SERVICE}:{ROUTED_PORT} (routed by the port rule) after detaching"
        );
        assert_eq!(
            unrouted,
            Vec::<String>::new(),
            "datagrams to {SERVICE}:{UNROUTED_PORT} (no route) after detaching"
        );
        assert_eq!(
            detached, attached,
            "dissections counted after the link was dropped"
        );
        Ok(())
    });
}

/// The program's count of dissected TCP/UDP packets to `port`.
fn dport_count(skel: &FlowDissectorSkel<'_>, port: u16) -> CaseResult<u64> {
    let value = skel
        .maps
        .dport_dissections
        .lookup(&u32::from(port).to_ne_bytes(), MapFlags::ANY)?;
    Ok(value.map_or(0, |v| u64::from_ne_bytes(v[..8].try_into().unwrap())))
}
