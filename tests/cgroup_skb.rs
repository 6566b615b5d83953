//! cgroup_skb (`programs/src/bpf/cgroup_skb.bpf.c`): an egress port filter and an ingress byte
//! counter on the test's own cgroup v2 child.
//!
//! `blocks_egress_and_counts_ingress`: both programs attached to the cgroup. A python3 client
//! started inside the cgroup and inside a fresh network namespace (so its loopback carries nothing
//! but the client's traffic, and fixed ports cannot collide with other tests) sends UDP datagrams
//! of known sizes to a port it listens on itself, and one datagram to the blocked port, where it
//! also listens. It reports as JSON what each send returned and what each socket received:
//! - the send to the blocked port fails with EPERM (the egress verdict 0 is turned into that errno
//!   for the sender) and nothing arrives on that port;
//! - every datagram to the counted port arrives, and the ingress counter holds exactly their
//!   number and their bytes. **The byte count includes the IP and UDP headers**: at the cgroup
//!   hooks the skb starts at the IP header, so skb->len is the IP packet's total length
//!   (20 + 8 + payload for IPv4/UDP without options).
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN on crafted Ethernet frames (the kernel strips the
//! Ethernet header before a cgroup_skb program runs) checks the egress verdict per packet kind and
//! that the ingress counter adds the IP total length.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use harness::{Case, Cgroup, NetNs, client, probe};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{ProgramInput, ProgramType};
use programs::cgroup_skb::{CgroupSkbSkel, CgroupSkbSkelBuilder};
use rstest::rstest;

/// Ports inside the case's own network namespace (nothing else binds there).
const BLOCKED_PORT: u16 = 7001;
const COUNTED_PORT: u16 = 7002;
/// IPv4 header (no options) + UDP header: what skb->len adds to the payload at the cgroup hooks.
const IPV4_UDP_HEADERS: u64 = 20 + 8;

/// argv: blocked port, counted port, payload sizes… Sends one datagram per size to the counted
/// port and one to the blocked port (both bound by this process on 127.0.0.1) and reports
/// `{"sent": [...], "received": [size-or-null...], "blocked_send": errno-or-null,
/// "blocked_received": n}`.
const SEND_UDP: &str = r#"
import errno, json, socket, sys
blocked, counted = int(sys.argv[1]), int(sys.argv[2])
sizes = [int(a) for a in sys.argv[3:]]
def udp(port=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if port is not None:
        s.bind(("127.0.0.1", port))
    s.settimeout(0.5)
    return s
rx_blocked, rx_counted, tx = udp(blocked), udp(counted), udp()
sent, received = [], []
for n in sizes:
    sent.append(tx.sendto(bytes([n % 251]) * n, ("127.0.0.1", counted)))
    try:
        received.append(len(rx_counted.recv(65536)))
    except socket.timeout:
        received.append(None)
try:
    tx.sendto(b"must not arrive", ("127.0.0.1", blocked))
    blocked_send = None
except OSError as e:
    blocked_send = errno.errorcode.get(e.errno, str(e.errno))
blocked_received = 0
try:
    while True:
        rx_blocked.recv(65536)
        blocked_received += 1
except socket.timeout:
    pass
print(json.dumps({"sent": sent, "received": received,
                  "blocked_send": blocked_send, "blocked_received": blocked_received}))
"#;

/// Payload sizes sent to the counted port (an empty datagram is a packet too).
const PAYLOADS: [u64; 4] = [0, 1, 100, 1400];

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> harness::CaseResult<CgroupSkbSkel<'obj>> {
    let mut open = CgroupSkbSkelBuilder::default().open(object)?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .expect("the object has a .rodata section");
    rodata.blocked_port = BLOCKED_PORT;
    rodata.counted_port = COUNTED_PORT;
    case.load(open)
}

#[test]
fn blocks_egress_and_counts_ingress() {
    Case::run(
        "cgroup_skb::blocks_egress_and_counts_ingress",
        ProgramType::CgroupSkb,
        |case| {
            probe::prog_type(ProgramType::CgroupSkb)?;
            let mut object = MaybeUninit::uninit();
            let skel = open_and_load(case, &mut object)?;

            let ns = NetNs::new()?;
            let cg = Cgroup::new()?;
            let _egress = skel
                .progs
                .egress_block_port
                .attach_cgroup(cg.as_fd().as_raw_fd())?;
            let _ingress = skel
                .progs
                .ingress_count_bytes
                .attach_cgroup(cg.as_fd().as_raw_fd())?;

            let mut args = vec![BLOCKED_PORT.to_string(), COUNTED_PORT.to_string()];
            args.extend(PAYLOADS.iter().map(u64::to_string));
            let report = client::run_json(cg.command(client::python_in(&ns, SEND_UDP, args)))?;
            case.detail("client", &report);

            assert_eq!(
                report["blocked_send"], "EPERM",
                "sendto the blocked port from inside the cgroup"
            );
            assert_eq!(
                report["blocked_received"], 0,
                "datagrams that reached the blocked port"
            );
            assert_eq!(
                report["received"],
                serde_json::json!(PAYLOADS),
                "payload sizes received on the counted port"
            );

            let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
            let expected_bytes: u64 = PAYLOADS.iter().map(|n| IPV4_UDP_HEADERS + n).sum();
            case.detail("egress_dropped", bss.egress_dropped);
            case.detail("ingress_packets", bss.ingress_packets);
            case.detail("ingress_bytes", bss.ingress_bytes);
            case.detail("expected_ingress_bytes", expected_bytes);
            assert_eq!(
                bss.egress_dropped, 1,
                "datagrams the egress program dropped"
            );
            assert_eq!(
                bss.ingress_packets,
                PAYLOADS.len() as u64,
                "datagrams the ingress program counted"
            );
            assert_eq!(
                bss.ingress_bytes, expected_bytes,
                "ingress bytes: payloads {PAYLOADS:?} + {IPV4_UDP_HEADERS} header bytes each"
            );
            Ok(())
        },
    );
}

/// Which of the two programs a test-run row runs.
#[derive(Clone, Copy, Debug)]
enum Hook {
    Egress,
    Ingress,
}

#[rstest]
#[case::egress_udp_to_blocked_port_is_dropped(
    "egress_udp_to_blocked_port_is_dropped",
    Hook::Egress,
    frame_ipv4(17, BLOCKED_PORT, 32),
    0
)]
#[case::egress_udp_to_other_port_passes(
    "egress_udp_to_other_port_passes",
    Hook::Egress,
    frame_ipv4(17, COUNTED_PORT, 32),
    1
)]
#[case::egress_tcp_to_blocked_port_passes(
    "egress_tcp_to_blocked_port_passes",
    Hook::Egress,
    frame_ipv4(6, BLOCKED_PORT, 32),
    1
)]
#[case::egress_ipv6_udp_to_blocked_port_passes(
    "egress_ipv6_udp_to_blocked_port_passes",
    Hook::Egress,
    frame_ipv6_udp(BLOCKED_PORT, 32),
    1
)]
#[case::ingress_counts_ip_total_length(
    "ingress_counts_ip_total_length",
    Hook::Ingress,
    frame_ipv4(17, COUNTED_PORT, 100),
    1
)]
#[case::ingress_ignores_other_ports(
    "ingress_ignores_other_ports",
    Hook::Ingress,
    frame_ipv4(17, BLOCKED_PORT, 100),
    1
)]
fn test_run(#[case] name: &str, #[case] hook: Hook, #[case] frame: Vec<u8>, #[case] verdict: i32) {
    Case::run(
        &format!("cgroup_skb::test_run_{name}"),
        ProgramType::CgroupSkb,
        |case| {
            probe::prog_type(ProgramType::CgroupSkb)?;
            let mut object = MaybeUninit::uninit();
            let skel = open_and_load(case, &mut object)?;
            let prog = match hook {
                Hook::Egress => &skel.progs.egress_block_port,
                Hook::Ingress => &skel.progs.ingress_count_bytes,
            };
            let input = ProgramInput {
                data_in: Some(&frame),
                ..Default::default()
            };
            let output = harness::test_run::run("cgroup_skb", prog, input)?;
            case.detail("retval", output.return_value);
            assert_eq!(output.return_value as i32, verdict, "verdict of {hook:?}");

            let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
            case.detail("ingress_bytes", bss.ingress_bytes);
            if let Hook::Ingress = hook {
                let counted = frame_dest_port(&frame) == COUNTED_PORT;
                // The IP packet: the frame minus its 14-byte Ethernet header.
                let ip_len = (frame.len() - 14) as u64;
                assert_eq!(bss.ingress_packets, u64::from(counted), "packets counted");
                assert_eq!(
                    bss.ingress_bytes,
                    if counted { ip_len } else { 0 },
                    "bytes counted (the IP packet is {ip_len} bytes)"
                );
            }
            Ok(())
        },
    );
}

const ETH_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const ETH_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&ETH_DST);
    f.extend_from_slice(&ETH_SRC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// UDP (protocol 17, 8-byte header) or TCP (6, 20-byte SYN header) header to `dport`.
fn l4(protocol: u8, dport: u16, payload_len: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&40000u16.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    if protocol == 17 {
        h.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0]); // checksum: unchecked
    } else {
        h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]); // seq, ack
        h.extend_from_slice(&[0x50, 0x02]); // data offset 5, SYN
        h.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
    }
    h.extend(std::iter::repeat_n(0xab, payload_len));
    h
}

/// An Ethernet frame carrying IPv4 127.0.0.1 → 127.0.0.1 with a `protocol` header to `dport`.
fn frame_ipv4(protocol: u8, dport: u16, payload_len: usize) -> Vec<u8> {
    let l4 = l4(protocol, dport, payload_len);
    let mut f = ethernet(0x0800);
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]); // id, DF, ttl, proto, checksum
    f.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
    f.extend(l4);
    f
}

/// An Ethernet frame carrying IPv6 ::1 → ::1 UDP to `dport`.
fn frame_ipv6_udp(dport: u16, payload_len: usize) -> Vec<u8> {
    let l4 = l4(17, dport, payload_len);
    let mut f = ethernet(0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    let mut loopback = [0u8; 16];
    loopback[15] = 1;
    f.extend_from_slice(&loopback);
    f.extend_from_slice(&loopback);
    f.extend(l4);
    f
}

/// The L4 destination port of an IPv4 frame built above.
fn frame_dest_port(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[14 + 20 + 2], frame[14 + 20 + 3]])
}
