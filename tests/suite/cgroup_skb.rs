//! cgroup_skb (`programs/src/bpf/cgroup_skb.bpf.c`): an egress port filter and an ingress byte
//! counter on the test's own cgroup v2 child.
//!
//! `blocks_egress_and_counts_ingress`: both programs attached to the cgroup. A child process
//! forked into the cgroup and into a fresh network namespace (so its loopback carries nothing but
//! the case's traffic, and fixed ports cannot collide with other tests) sends UDP datagrams of
//! known sizes to a port it listens on itself, then one datagram to the blocked port, where the
//! test process (outside the cgroup) listens. It reports what each send returned and what it
//! received:
//! - the send to the blocked port fails with EPERM (the egress verdict 0 is turned into that errno
//!   for the sender) and nothing arrives on that port: the first datagram there is the sentinel the
//!   test process sends after the child is done;
//! - every datagram to the counted port arrives, and the ingress counter holds exactly their
//!   number and their bytes. **The byte count includes the IP and UDP headers**: at the cgroup
//!   hooks the skb starts at the IP header, so skb->len is the IP packet's total length
//!   (20 + 8 + payload for IPv4/UDP without options).
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN on crafted Ethernet frames (the kernel strips the
//! Ethernet header before a cgroup_skb program runs) checks the egress verdict per packet kind and
//! that the ingress counter adds the IP total length.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use libbpf_rs::ProgramType;
use nix::errno::Errno;
use programs::cgroup_skb::{CgroupSkbSkel, CgroupSkbSkelBuilder};
use rstest::rstest;
use testkit::test_run::Row;
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, OrError, child, probe};

/// Ports inside the case's own network namespace (nothing else binds there).
const BLOCKED_PORT: u16 = 7001;
const COUNTED_PORT: u16 = 7002;
/// IPv4 header (no options) + UDP header: what skb->len adds to the payload at the cgroup hooks.
const IPV4_UDP_HEADERS: u64 = 20 + 8;

/// Payload sizes sent to the counted port (an empty datagram is a packet too).
const PAYLOADS: [u64; 4] = [0, 1, 100, 1400];
/// How long a datagram that was sent may take to arrive on loopback.
const ARRIVAL: Duration = Duration::from_secs(5);

fn port(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// What the child's sends returned and its counted-port socket received (sizes or errnos).
#[derive(Clone, Copy, Debug)]
struct Sent {
    sent: [Result<usize, Errno>; PAYLOADS.len()],
    received: [Result<usize, Errno>; PAYLOADS.len()],
    blocked_send: Result<usize, Errno>,
}

/// In the child: one datagram per payload size to the counted port (bound here, each received
/// before the next is sent), then one to the blocked port.
fn send_udp() -> Result<Sent, Errno> {
    let tx = child::errno(UdpSocket::bind(port(0)))?;
    let rx = child::errno(UdpSocket::bind(port(COUNTED_PORT)))?;
    child::errno(rx.set_read_timeout(Some(ARRIVAL)))?;
    let mut sent = [Ok(0); PAYLOADS.len()];
    let mut received = [Ok(0); PAYLOADS.len()];
    let mut buf = [0u8; 2048];
    for (i, n) in PAYLOADS.iter().map(|n| *n as usize).enumerate() {
        buf[..n].fill(n as u8);
        sent[i] = child::errno(tx.send_to(&buf[..n], port(COUNTED_PORT)));
        received[i] = child::errno(rx.recv(&mut buf));
    }
    let blocked_send = child::errno(tx.send_to(b"must not arrive", port(BLOCKED_PORT)));
    Ok(Sent {
        sent,
        received,
        blocked_send,
    })
}

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> testkit::CaseResult<CgroupSkbSkel<'obj>> {
    case.open_load(CgroupSkbSkelBuilder::default(), object, |open| {
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.blocked_port = BLOCKED_PORT;
        rodata.counted_port = COUNTED_PORT;
    })
}

#[test]
fn blocks_egress_and_counts_ingress() {
    Case::run(ProgramType::CgroupSkb, |case| {
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

        // The blocked port's listener and the sentinel's sender: the test process's, outside
        // the cgroup (the programs do not see them).
        let (blocked_rx, sentinel_tx) = {
            let _inside = ns.enter()?;
            (
                UdpSocket::bind(port(BLOCKED_PORT)).or_error("binding the blocked port")?,
                UdpSocket::bind(port(0)).or_error("binding the sentinel's socket")?,
            )
        };
        let sent = child::in_cgroup(&cg).netns(&ns).run(send_udp)?;
        case.detail("child", format!("{sent:?}"));
        let sent =
            sent.map_err(|e| CaseError::Error(anyhow::anyhow!("the child's sockets: {e}")))?;
        assert_eq!(
            sent.blocked_send,
            Err(Errno::EPERM),
            "sendto the blocked port from inside the cgroup"
        );
        let payloads = PAYLOADS.map(|n| Ok(n as usize));
        assert_eq!(sent.sent, payloads, "sendto the counted port");
        assert_eq!(
            sent.received, payloads,
            "payload sizes received on the counted port"
        );
        assert_eq!(
            first_datagram(&blocked_rx, &sentinel_tx)?,
            "sentinel",
            "the first datagram on the blocked port (the sentinel sent after the child's)"
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
    });
}

/// Sends a sentinel to `rx`'s port from `tx` and returns the first datagram `rx` holds.
fn first_datagram(rx: &UdpSocket, tx: &UdpSocket) -> CaseResult<String> {
    tx.send_to(b"sentinel", port(BLOCKED_PORT))
        .or_error("sending the sentinel")?;
    rx.set_read_timeout(Some(ARRIVAL))
        .or_error("setting a read timeout")?;
    let mut buf = [0u8; 2048];
    let n = rx.recv(&mut buf).or_error("receiving the sentinel")?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Which of the two programs a test-run row runs.
#[derive(Clone, Copy, Debug)]
enum Hook {
    Egress,
    Ingress,
}

#[rstest]
#[case::egress_udp_to_blocked_port_is_dropped(Hook::Egress, frame_ipv4(17, BLOCKED_PORT, 32), 0)]
#[case::egress_udp_to_other_port_passes(Hook::Egress, frame_ipv4(17, COUNTED_PORT, 32), 1)]
#[case::egress_tcp_to_blocked_port_passes(Hook::Egress, frame_ipv4(6, BLOCKED_PORT, 32), 1)]
#[case::egress_ipv6_udp_to_blocked_port_passes(Hook::Egress, frame_ipv6_udp(BLOCKED_PORT, 32), 1)]
#[case::ingress_counts_ip_total_length(Hook::Ingress, frame_ipv4(17, COUNTED_PORT, 100), 1)]
#[case::ingress_ignores_other_ports(Hook::Ingress, frame_ipv4(17, BLOCKED_PORT, 100), 1)]
fn test_run(#[case] hook: Hook, #[case] frame: Vec<u8>, #[case] verdict: i32) {
    // The ingress program counts the IP packet (the frame minus its 14-byte Ethernet header) if
    // it goes to the counted port.
    let counted = frame_dest_port(&frame) == COUNTED_PORT;
    let ip_len = (frame.len() - 14) as u64;
    let mut row = Row::new(frame, verdict);
    if let Hook::Ingress = hook {
        row = row.counters([
            ("ingress_packets", u64::from(counted)),
            ("ingress_bytes", if counted { ip_len } else { 0 }),
        ]);
    }
    row.case(ProgramType::CgroupSkb, |case, row| {
        probe::prog_type(ProgramType::CgroupSkb)?;
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        let prog = match hook {
            Hook::Egress => &skel.progs.egress_block_port,
            Hook::Ingress => &skel.progs.ingress_count_bytes,
        };
        row.run_counted(case, prog, || {
            let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
            Ok(vec![
                ("ingress_packets", bss.ingress_packets),
                ("ingress_bytes", bss.ingress_bytes),
            ])
        })
        .map(drop)
    });
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
