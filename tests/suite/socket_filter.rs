//! socket_filter (`programs/src/bpf/socket_filter.bpf.c`): a filter on one UDP socket, attached
//! with `setsockopt(SO_ATTACH_BPF)`, that decides on the first payload byte: `K` is kept whole,
//! `T` is cut to its first [`TRUNCATE_TO`] payload bytes (shorter ones are kept whole), anything
//! else (other first bytes, empty datagrams) is dropped. A socket filter's verdict is the number
//! of bytes the socket keeps: 0 drops, less than the packet truncates.
//!
//! `keeps_and_truncates_datagrams`: in a fresh network namespace, a sender sends the same known
//! datagrams over loopback to two sockets: the filtered one and an unfiltered control, then to
//! each a sentinel, a `K` datagram ([`SENTINEL`]) that the filter keeps. Each socket is read up to
//! its sentinel: loopback delivers one sender's datagrams in order, so what came before it is all
//! that arrives. The control receives every datagram whole (so whatever the filtered socket
//! misses, the filter took); the filtered socket receives exactly the accepted ones, in order, the
//! `T` ones with exactly [`TRUNCATE_TO`] bytes. The lengths are read with `MSG_TRUNC` (the
//! datagram's real length, not what fitted a buffer), so a truncation is the kernel's, not the
//! reader's. The program's counters equal the number of datagrams kept, truncated and dropped.
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN on crafted Ethernet frames checks the return
//! value per packet. Under test-run the kernel pulls the Ethernet header, so skb->data (and
//! skb->len) start at the IP header: "keep whole" returns the IP packet's length, and a
//! truncation returns it minus the payload bytes cut off.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use libbpf_rs::ProgramType;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv};
use programs::socket_filter::{SocketFilterSkel, SocketFilterSkelBuilder};
use rstest::rstest;
use testkit::packet::{self, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4};
use testkit::test_run::Row;
use testkit::{Case, CaseError, CaseResult, NetNs, OrError, observe, probe, sockopt};

/// Payloads starting with this byte are kept whole.
const KEEP: u8 = b'K';
/// Payloads starting with this byte are cut to [`TRUNCATE_TO`] bytes.
const TRUNCATE: u8 = b'T';
/// Payload bytes a truncated datagram keeps.
const TRUNCATE_TO: usize = 5;
/// Sent last to each socket: kept whole (its first byte is [`KEEP`]), and unlike any other payload.
const SENTINEL: &[u8] = b"K sentinel";
/// Ports inside the case's own network namespace (nothing else binds there).
const FILTERED_PORT: u16 = 7101;
const CONTROL_PORT: u16 = 7102;

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<SocketFilterSkel<'obj>> {
    probe::prog_type(ProgramType::SocketFilter)?;
    case.open_load(SocketFilterSkelBuilder::default(), object, |open| {
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.keep_marker = KEEP;
        rodata.truncate_marker = TRUNCATE;
        rodata.truncate_to = TRUNCATE_TO as u32;
    })
}

/// A payload of `len` bytes starting with `first`.
fn payload(first: u8, len: usize) -> Vec<u8> {
    let mut p = vec![first];
    p.extend((1..len).map(|i| b'a' + (i % 26) as u8));
    p.truncate(len);
    p
}

/// What the filtered socket must receive of `sent`, in order.
fn expected(sent: &[Vec<u8>]) -> Vec<Vec<u8>> {
    sent.iter()
        .filter_map(|p| match p.first() {
            Some(&KEEP) => Some(p.clone()),
            Some(&TRUNCATE) => Some(p[..p.len().min(TRUNCATE_TO)].to_vec()),
            _ => None,
        })
        .collect()
}

#[test]
fn keeps_and_truncates_datagrams() {
    Case::run(ProgramType::SocketFilter, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;

        let ns = NetNs::new()?;
        let (filtered, control, sender) = {
            let _inside = ns.enter()?;
            let bind = |port| {
                UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
                    .or_error("binding a UDP socket in the test netns")
            };
            (bind(FILTERED_PORT)?, bind(CONTROL_PORT)?, bind(0)?)
        };
        sockopt::attach_filter(&filtered, &skel.progs.udp_marker_filter)
            .map_err(|e| CaseError::Fail(anyhow::anyhow!("setsockopt(SO_ATTACH_BPF): {e}")))?;

        let sent = vec![
            payload(KEEP, 7),
            payload(TRUNCATE, 100),
            payload(b'x', 6),
            Vec::new(),
            payload(TRUNCATE, 3),
            payload(KEEP, 1400),
            payload(b'k', 11),
            payload(TRUNCATE, TRUNCATE_TO),
            payload(TRUNCATE, TRUNCATE_TO + 1),
            payload(KEEP, 1),
        ];
        {
            let _one_cpu = observe::OneCpu::pin()?;
            for p in sent.iter().map(Vec::as_slice).chain([SENTINEL]) {
                sender.send_to(p, (Ipv4Addr::LOCALHOST, FILTERED_PORT))?;
                sender.send_to(p, (Ipv4Addr::LOCALHOST, CONTROL_PORT))?;
            }
        }

        let control_got = arrived(&control)?;
        assert_eq!(
            control_got, sent,
            "the unfiltered control socket must receive every datagram whole"
        );
        let want = expected(&sent);
        let got = arrived(&filtered)?;
        let lengths = |d: &[Vec<u8>]| d.iter().map(Vec::len).collect::<Vec<_>>();
        case.detail("sent_lengths", lengths(&sent));
        case.detail("received_lengths", lengths(&got));
        assert_eq!(
            lengths(&got),
            lengths(&want),
            "datagram lengths (MSG_TRUNC) on the filtered socket"
        );
        assert_eq!(got, want, "datagrams received on the filtered socket");

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let counts = (bss.kept, bss.truncated, bss.dropped);
        case.detail("kept_truncated_dropped", counts);
        assert_eq!(
            counts,
            (5 + 1, 2, 3),
            "program counters (kept whole, with the sentinel; truncated; dropped)"
        );
        Ok(())
    });
}

/// The next datagram on `sock` within `wait`, at its real length (`MSG_TRUNC` makes recv return
/// the datagram's length even when the buffer is shorter; the buffer here never is).
fn receive(sock: &UdpSocket, wait: Duration) -> CaseResult<Option<Vec<u8>>> {
    sock.set_read_timeout(Some(wait))?;
    let mut buf = vec![0u8; 65536];
    match recv(sock.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What arrived on `sock` before the [`SENTINEL`].
fn arrived(sock: &UdpSocket) -> CaseResult<Vec<Vec<u8>>> {
    observe::until_sentinel(
        &format!("the sentinel datagram on {}", sock.local_addr()?),
        |wait| receive(sock, wait),
        |d| d == SENTINEL,
    )
}

fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
    packet::ethernet(
        ETH_P_IP,
        &Ipv4::new([127, 0, 0, 1], [127, 0, 0, 1], IPPROTO_UDP).build(&packet::udp(
            40000,
            FILTERED_PORT,
            payload,
        )),
    )
}

fn ipv4_udp_with_options(payload: &[u8]) -> Vec<u8> {
    let mut ip = Ipv4::new([127, 0, 0, 1], [127, 0, 0, 1], IPPROTO_UDP);
    ip.options = vec![1, 1, 1, 0]; // NOP, NOP, NOP, end of options: IHL 6
    packet::ethernet(
        ETH_P_IP,
        &ip.build(&packet::udp(40000, FILTERED_PORT, payload)),
    )
}

/// A TCP SYN whose header happens to start with bytes of its own (no payload to judge).
fn ipv4_tcp() -> Vec<u8> {
    packet::ethernet(
        ETH_P_IP,
        &Ipv4::new([127, 0, 0, 1], [127, 0, 0, 1], IPPROTO_TCP)
            .build(&packet::tcp_syn(40000, FILTERED_PORT)),
    )
}

fn ipv6_udp(payload: &[u8]) -> Vec<u8> {
    let mut loopback = [0u8; 16];
    loopback[15] = 1;
    packet::ethernet(
        ETH_P_IPV6,
        &packet::ipv6(
            loopback,
            loopback,
            IPPROTO_UDP,
            0,
            &packet::udp(40000, FILTERED_PORT, payload),
        ),
    )
}

/// An IPv4 UDP frame with a keep marker, cut inside its UDP header.
fn ipv4_udp_cut_header() -> Vec<u8> {
    let mut f = ipv4_udp(&payload(KEEP, 10));
    f.truncate(ETH_HLEN + 20 + 3);
    f
}

/// The length of `frame` from its IP header (what skb->len is under test-run).
fn ip_len(frame: &[u8]) -> u32 {
    (frame.len() - ETH_HLEN) as u32
}

/// What a row's verdict must be, given the frame.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    /// 0: the packet is dropped.
    Drop,
    /// The whole packet (its length from the IP header).
    Whole,
    /// The packet minus the payload bytes past [`TRUNCATE_TO`], of a payload this long.
    TruncatedFrom(usize),
}

#[rstest]
#[case::keeps_marked_datagram(ipv4_udp(&payload(KEEP, 20)), Verdict::Whole)]
#[case::truncates_marked_datagram(ipv4_udp(&payload(TRUNCATE, 100)), Verdict::TruncatedFrom(100))]
#[case::truncates_after_ip_options(
    ipv4_udp_with_options(&payload(TRUNCATE, 100)),
    Verdict::TruncatedFrom(100)
)]
#[case::keeps_short_truncate_marked(ipv4_udp(&payload(TRUNCATE, TRUNCATE_TO)), Verdict::Whole)]
#[case::drops_other_marker(ipv4_udp(&payload(b'x', 20)), Verdict::Drop)]
#[case::drops_empty_datagram(ipv4_udp(&[]), Verdict::Drop)]
#[case::drops_tcp(ipv4_tcp(), Verdict::Drop)]
#[case::drops_ipv6_udp_with_keep_marker(ipv6_udp(&payload(KEEP, 20)), Verdict::Drop)]
#[case::drops_cut_udp_header(ipv4_udp_cut_header(), Verdict::Drop)]
fn test_run(#[case] frame: Vec<u8>, #[case] verdict: Verdict) {
    let ip_len = ip_len(&frame);
    let (retval, kept, truncated, dropped) = match verdict {
        Verdict::Drop => (0, 0, 0, 1),
        Verdict::Whole => (ip_len, 1, 0, 0),
        Verdict::TruncatedFrom(n) => (ip_len - (n - TRUNCATE_TO) as u32, 0, 1, 0),
    };
    let row = Row::new(frame, retval as i32).counters([
        ("kept", kept),
        ("truncated", truncated),
        ("dropped", dropped),
    ]);
    row.case(ProgramType::SocketFilter, |case, row| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        case.detail("ip_len", ip_len);
        row.run_counted(case, &skel.progs.udp_marker_filter, || {
            let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
            Ok(vec![
                ("kept", bss.kept),
                ("truncated", bss.truncated),
                ("dropped", bss.dropped),
            ])
        })?;
        Ok(())
    });
}
