//! xdp_adjust (`programs/src/bpf/xdp_adjust.bpf.c`): an XDP program that moves the frame's head
//! (bpf_xdp_adjust_head strips an IPIP outer header) and tail (bpf_xdp_adjust_tail trims a UDP
//! payload), proven by what arrives. (Its siblings: `xdp_metadata`, `xdp_redirect`.)
//!
//! Every sender sets SO_NO_CHECK (UDP checksum 0), as the XDP modules do (see `xdp.rs`). The flows
//! of a case go from one socket on one CPU, so a sentinel sent last on a flow's path settles every
//! frame ahead of it.
//!
//! `rewrites_frames_{native,generic}`: a veth pair, sender `10.13.0.1` (a), receiver `10.13.0.2`
//! (b), `xdp_adjust` on the receiver's veth (native or generic mode). [`DATAGRAMS`] of each flow,
//! then a sentinel on each flow:
//! - IPIP: a raw IPPROTO_IPIP socket in a sends inner packets `10.13.0.1:INNER_SPORT →
//!   10.13.0.2:STRIP_PORT`. The program strips the outer header: the receiver's UDP socket gets
//!   the inner datagrams from `10.13.0.1:INNER_SPORT` (only the inner header names that port), and
//!   a raw IPPROTO_IPIP socket in b, which sees every IPIP packet the stack gets, gets none.
//! - trim: each datagram to TRIM_PORT arrives without its last [`CUT`] bytes (so the program
//!   fixed the IP and UDP lengths too, or the stack would drop it).
//!
//! The program's counters are exact.
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN of `xdp_adjust` on crafted frames: the verdict,
//! the frame handed back byte for byte (a trimmed frame against one built with the shorter
//! payload: lengths and a valid IP header checksum) and the counters.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::OwnedFd;

use libbpf_rs::ProgramType;
use libbpf_rs::libbpf_sys::{self, XDP_PASS};
use programs::xdp_adjust::{XdpAdjustSkel, XdpAdjustSkelBuilder};
use rstest::rstest;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, ipproto};
use testkit::netlink::Cidr;
use testkit::observe::{self, volatile};
use testkit::packet::{self, ETH_HLEN, ETH_P_IP, Flow, IPPROTO_UDP, Ipv4};
use testkit::test_run::Row;
use testkit::veth::VethPair;
use testkit::xdp::{Mode, XdpAttachment};
use testkit::{Case, CaseError, CaseResult, OrError, probe, sockopt};

/// UDP to this port (inside IPIP) is what the stripped packets carry.
const STRIP_PORT: u16 = 7601;
/// UDP to this port loses its last [`CUT`] bytes.
const TRIM_PORT: u16 = 7602;
/// Plain UDP, untouched (warm-up, the test-run control).
const PLAIN_PORT: u16 = 7605;
/// The senders' UDP source port.
const SENDER_PORT: u16 = 7600;
/// The source port of the inner (IPIP) datagrams.
const INNER_SPORT: u16 = 7609;
/// What `xdp_adjust` cuts off a TRIM_PORT datagram (TRIM_BYTES in the program).
const CUT: &[u8] = b"~cut";
/// Datagrams per flow.
const DATAGRAMS: u64 = 3;
const SENTINEL: &[u8] = b"sentinel";
/// Sender and receiver of the live case and the test-run frames.
const SENDER: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 1);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 2);
/// The frames of the test-run rows.
const FLOW: Flow = Flow {
    src: SENDER,
    dst: RECEIVER,
    sport: SENDER_PORT,
    payload: b"payload~cut",
};

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<XdpAdjustSkel<'obj>> {
    for (helper, name) in [
        (libbpf_sys::BPF_FUNC_xdp_adjust_head, "bpf_xdp_adjust_head"),
        (libbpf_sys::BPF_FUNC_xdp_adjust_tail, "bpf_xdp_adjust_tail"),
    ] {
        probe::helper(ProgramType::Xdp, helper, name)?;
    }
    case.open_load(XdpAdjustSkelBuilder::default(), object, |open| {
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata")
            .trim_port = TRIM_PORT;
    })
}

/// The program's counters `(stripped, trimmed)`.
fn counters(skel: &XdpAdjustSkel<'_>) -> (u64, u64) {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    (volatile(&bss.stripped), volatile(&bss.trimmed))
}

/// A raw IPPROTO_IPIP socket (the calling thread's namespace), non-blocking.
fn ipip_socket() -> CaseResult<OwnedFd> {
    rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::RAW,
        SocketFlags::NONBLOCK,
        Some(ipproto::IPIP),
    )
    .or_error("opening a raw IPIP socket")
}

/// Sends `packet` on the raw socket to `dst` (the kernel adds the outer IP header).
fn send_raw(sock: &OwnedFd, packet: &[u8], dst: Ipv4Addr) -> CaseResult {
    rustix::net::sendto(sock, packet, SendFlags::empty(), &SocketAddrV4::new(dst, 0))
        .map(drop)
        .map_err(|e| CaseError::Fail(anyhow::anyhow!("sending on the raw IPIP socket: {e}")))
}

/// The packets queued on a non-blocking raw socket now.
fn raw_queued(sock: &OwnedFd) -> CaseResult<usize> {
    let mut count = 0;
    let mut buf = [0u8; 2048];
    loop {
        match rustix::net::recv(sock, &mut buf[..], RecvFlags::empty()) {
            Ok(_) => count += 1,
            Err(rustix::io::Errno::AGAIN) => return Ok(count),
            Err(e) => return Err(e).or_error("reading the raw socket"),
        }
    }
}

/// An inner IPv4/UDP packet `SENDER:INNER_SPORT → RECEIVER:STRIP_PORT` (UDP checksum 0).
fn inner_packet(payload: &[u8]) -> Vec<u8> {
    Ipv4::new(SENDER.octets(), RECEIVER.octets(), IPPROTO_UDP).build(&packet::udp(
        INNER_SPORT,
        STRIP_PORT,
        payload,
    ))
}

fn payloads(flow: &str) -> Vec<String> {
    (0..DATAGRAMS).map(|i| format!("{flow}:{i}")).collect()
}

#[rstest]
#[case::native(Mode::Native)]
#[case::generic(Mode::Generic)]
fn rewrites_frames(#[case] mode: Mode) {
    Case::run(ProgramType::Xdp, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;

        let pair = VethPair::new(Cidr::v4(SENDER, 24), Cidr::v4(RECEIVER, 24))?;
        let (a, b) = (&pair.a, &pair.b);
        let xdp = XdpAttachment::veth(b, VethPair::B_DEV, &skel.progs.xdp_adjust, mode)?;
        let reported = xdp.reported_mode()?;
        case.detail("reported_attach_mode", reported);
        assert_eq!(
            reported,
            mode.reported(),
            "XDP attach mode the kernel reports (1 driver, 2 generic)"
        );

        let (strip_rx, trim_rx, plain_rx, ipip_rx) = {
            let _inside = b.enter()?;
            let bind = |port: u16| {
                UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
                    .or_error("binding a receiver")
            };
            (
                bind(STRIP_PORT)?,
                bind(TRIM_PORT)?,
                bind(PLAIN_PORT)?,
                ipip_socket()?,
            )
        };
        let (udp, ipip) = {
            let _inside = a.enter()?;
            let udp = UdpSocket::bind(SocketAddrV4::new(SENDER, SENDER_PORT))
                .or_error("binding the sender")?;
            sockopt::no_udp_checksum(&udp).or_error("SO_NO_CHECK")?;
            (udp, ipip_socket()?)
        };

        // Resolve the neighbour first, so no datagram waits in (or falls out of) ARP's queue.
        udp.send_to(b"warm-up", (RECEIVER, PLAIN_PORT))?;
        assert_eq!(
            observe::datagrams_before(&plain_rx, b"warm-up")?.len(),
            0,
            "datagrams on port {PLAIN_PORT} before the warm-up"
        );

        {
            let _one_cpu = observe::OneCpu::pin()?;
            for i in 0..DATAGRAMS {
                send_raw(
                    &ipip,
                    &inner_packet(format!("strip:{i}").as_bytes()),
                    RECEIVER,
                )?;
                let mut trim = format!("trim:{i}").into_bytes();
                trim.extend_from_slice(CUT);
                udp.send_to(&trim, (RECEIVER, TRIM_PORT))?;
            }
            send_raw(&ipip, &inner_packet(SENTINEL), RECEIVER)?;
            udp.send_to(&[SENTINEL, CUT].concat(), (RECEIVER, TRIM_PORT))?;
        }

        let stripped = observe::datagrams_before(&strip_rx, SENTINEL)?;
        let unstripped = raw_queued(&ipip_rx)?;
        let trimmed = observe::texts(&observe::datagrams_before(&trim_rx, SENTINEL)?);
        case.detail(
            "received",
            serde_json::json!({
                "strip_port": observe::texts(&stripped), "ipip_packets_in_b": unstripped,
                "trim_port": trimmed,
            }),
        );
        assert_eq!(
            observe::texts(&stripped),
            payloads("strip"),
            "inner datagrams at {STRIP_PORT}"
        );
        for (_, from) in &stripped {
            assert_eq!(
                *from,
                SocketAddr::from((SENDER, INNER_SPORT)),
                "source of an inner datagram (its port is only in the inner header)"
            );
        }
        assert_eq!(
            unstripped, 0,
            "IPIP packets reaching b's stack (a raw IPPROTO_IPIP socket sees each)"
        );
        assert_eq!(
            trimmed,
            payloads("trim"),
            "datagrams at {TRIM_PORT}, each without its last {} bytes",
            CUT.len()
        );

        let (stripped, trimmed) = counters(&skel);
        case.detail("stripped", stripped);
        case.detail("trimmed", trimmed);
        assert_eq!(
            (stripped, trimmed),
            (DATAGRAMS + 1, DATAGRAMS + 1),
            "program counters (stripped, trimmed: each flow with its sentinel)"
        );
        Ok(())
    });
}

/// An IPIP frame around `inner`, the outer header with `options`.
fn ipip_frame(options: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut outer = Ipv4::new(SENDER.octets(), RECEIVER.octets(), libc::IPPROTO_IPIP as u8);
    outer.options = options.to_vec();
    packet::ethernet(ETH_P_IP, &outer.build(inner))
}

/// A frame the program strips: handed back as the inner packet in the same Ethernet header.
fn strips(options: &[u8]) -> Row {
    let inner = inner_packet(b"payload");
    Row::new(ipip_frame(options, &inner), XDP_PASS as i32)
        .bytes(packet::ethernet(ETH_P_IP, &inner))
        .counters([("stripped", 1), ("trimmed", 0)])
}

/// A UDP datagram to TRIM_PORT with a valid UDP checksum, which the program must clear.
fn trims() -> Row {
    let frame = FLOW.udp4_checksummed(TRIM_PORT);
    let out = Flow {
        payload: b"payload",
        ..FLOW
    };
    Row::new(frame, XDP_PASS as i32)
        .bytes(out.udp4(TRIM_PORT))
        .counters([("stripped", 0), ("trimmed", 1)])
}

/// A frame the program passes untouched.
fn unchanged(frame: Vec<u8>) -> Row {
    Row::new(frame, XDP_PASS as i32)
        .unchanged()
        .counters([("stripped", 0), ("trimmed", 0)])
}

fn padded(frame: Vec<u8>) -> Vec<u8> {
    [frame, vec![0, 0]].concat()
}

fn cut(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    frame.truncate(len);
    frame
}

#[rstest]
#[case::strips_ipip(strips(&[]))]
#[case::strips_ipip_after_outer_options(strips(&[1, 1, 1, 0]))]
#[case::passes_ipip_cut_in_inner_header(unchanged(cut(ipip_frame(&[], &inner_packet(b"payload")), ETH_HLEN + 20 + 10))
)]
#[case::trims_udp_payload(trims())]
#[case::passes_short_udp_to_trim_port(unchanged(Flow { payload: b"cut", ..FLOW }.udp4(TRIM_PORT)))]
#[case::passes_padded_udp_to_trim_port(unchanged(padded(FLOW.udp4(TRIM_PORT))))]
#[case::passes_other_udp(unchanged(FLOW.udp4(PLAIN_PORT)))]
fn test_run(#[case] row: Row) {
    row.case(ProgramType::Xdp, |case, row| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        row.run_counted(case, &skel.progs.xdp_adjust, || {
            let (stripped, trimmed) = counters(&skel);
            Ok(vec![("stripped", stripped), ("trimmed", trimmed)])
        })
        .map(drop)
    });
}
