//! xdp (`programs/src/bpf/xdp.bpf.c`): per-flow verdicts on the receiving end of a veth pair.
//! UDP to [`DROP_PORT`] is dropped (`XDP_DROP`), UDP to [`TX_PORT`] is bounced back out of the
//! interface it came in on (`XDP_TX`) with its Ethernet addresses, IP addresses and UDP ports
//! swapped, and everything else passes (`XDP_PASS`). A `verdicts` array map counts the IPv4/UDP
//! packets per verdict.
//!
//! `drops_passes_and_bounces_{native,generic}`: two namespaces joined by a veth pair, sender
//! `10.9.0.1` (namespace a, `veth0`) and receiver `10.9.0.2` (namespace b, `veth1`, where the
//! program is attached by netlink, once in native (driver) mode and once in generic (skb) mode).
//! The sender sends [`DATAGRAMS`] datagrams to each of the three ports, from one socket bound to
//! [`SENDER_PORT`]:
//! - none arrives on the receiver's socket of the dropped port, and the map counts each;
//! - all arrive on the receiver's socket of the passed port;
//! - none arrives on the receiver's socket of the bounced port: each comes back to the sender's
//!   own socket, from `10.9.0.2:TX_PORT` to `10.9.0.1:SENDER_PORT` (so the IP addresses and ports
//!   were swapped, and the destination MAC is the sender's: the stack takes no frame for another
//!   host). An AF_PACKET capture on the sender's veth checks the frames byte for byte: each
//!   bounced frame is the frame the sender sent with MACs, IPs and ports swapped, nothing else.
//!
//! Behind the flows the sender sends a sentinel ([`SENTINEL`]) to the bounced port, then one to
//! the passed port. The sender's socket and the capture are read up to the bounced sentinel, the
//! passed port's socket up to its own. The dropped port cannot carry a sentinel (the program drops
//! all its UDP): the one to the passed port follows its datagrams on their path (sender socket,
//! route, the single veth queue, the program, which passes it), so once it arrived every datagram
//! ahead of it was dropped, bounced or delivered, and the sockets of the dropped and bounced ports
//! are read without waiting.
//!
//! The kernel must report the mode asked for. Native mode needs two things on the sender's side:
//! - a veth takes XDP_TX frames from its peer only on its NAPI path, which runs while a native
//!   XDP program is attached to it (newer kernels also run it with GRO on): the test attaches a
//!   pass-all program (`xdp_pass`) to the sender's veth;
//! - veth offloads the UDP checksum by default (`CHECKSUM_PARTIAL`: the checksum field holds only
//!   the pseudo-header sum). Native XDP_TX hands the frame back as an `xdp_frame`, which carries no
//!   checksum state, so the sender's stack would verify that partial sum and drop the bounced
//!   datagram as a checksum error (seen on 6.18: the frames arrive, the socket gets nothing).
//!   The test turns the sender veth's tx checksum offload off (`ethtool -K veth0 tx off`, done
//!   with the SIOCETHTOOL ioctl), so full checksums go out and the bounce, whose swaps leave every
//!   checksum valid, is delivered. Generic mode keeps the skb and its checksum state: defaults.
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN on crafted Ethernet frames checks each verdict
//! (`XDP_DROP` 1, `XDP_PASS` 2, `XDP_TX` 3), the frame handed back (unchanged, or for XDP_TX the
//! swapped one, its IP header checksum still valid), and the map's count.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use libbpf_rs::libbpf_sys::{XDP_DROP, XDP_PASS, XDP_TX};
use libbpf_rs::{MapCore, MapFlags, ProgramType};
use programs::xdp::{XdpSkel, XdpSkelBuilder};
use rstest::rstest;
use testkit::capture::{Capture, Frame};
use testkit::netlink::Cidr;
use testkit::packet::{self, ETH_HLEN, ETH_P_ARP, Flow, hex};
use testkit::test_run::Row;
use testkit::veth::VethPair;
use testkit::xdp::{Mode, XdpAttachment};
use testkit::{Case, CaseError, CaseResult, OrError, ethtool, observe, probe};

/// UDP to this port is dropped.
const DROP_PORT: u16 = 7201;
/// UDP to this port passes (the control flow).
const PASS_PORT: u16 = 7202;
/// UDP to this port is bounced back to the sender.
const TX_PORT: u16 = 7203;
/// The sender's source port.
const SENDER_PORT: u16 = 7200;
const SENDER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
/// The frames of the test-run rows.
const FLOW: Flow = Flow {
    src: SENDER,
    dst: RECEIVER,
    sport: SENDER_PORT,
    payload: b"payload",
};
/// The payload sent last, to the bounced port and to the passed port.
const SENTINEL: &[u8] = b"sentinel";
/// Datagrams sent per flow.
const DATAGRAMS: u64 = 3;
/// The counters of the `verdicts` map, by name.
const VERDICTS: [(&str, u32); 3] = [("drop", XDP_DROP), ("pass", XDP_PASS), ("tx", XDP_TX)];

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<XdpSkel<'obj>> {
    probe::prog_type(ProgramType::Xdp)?;
    case.open_load(XdpSkelBuilder::default(), object, |open| {
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.drop_port = DROP_PORT;
        rodata.tx_port = TX_PORT;
    })
}

/// The `verdicts` map: IPv4/UDP packets counted per verdict, `[DROP, PASS, TX]`.
fn verdicts(skel: &XdpSkel<'_>) -> CaseResult<[u64; 3]> {
    let mut counts = [0u64; 3];
    for (slot, (_, verdict)) in counts.iter_mut().zip(VERDICTS) {
        let value = skel
            .maps
            .verdicts
            .lookup(&verdict.to_ne_bytes(), MapFlags::ANY)?
            .ok_or_else(|| CaseError::Fail(anyhow::anyhow!("verdicts[{verdict}] is missing")))?;
        *slot = u64::from_ne_bytes(value[..8].try_into().expect("8-byte value"));
    }
    Ok(counts)
}

#[rstest]
#[case::native("native", Mode::Native)]
#[case::generic("generic", Mode::Generic)]
fn drops_passes_and_bounces(#[case] name: &str, #[case] mode: Mode) {
    Case::run(ProgramType::Xdp, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        case.detail("attach_mode", name);

        let pair = VethPair::new(Cidr::v4(SENDER, 24), Cidr::v4(RECEIVER, 24))?;
        let program =
            XdpAttachment::veth(&pair.b, VethPair::B_DEV, &skel.progs.xdp_udp_verdicts, mode)?;
        let _peer = match mode {
            Mode::Native => Some(XdpAttachment::veth(
                &pair.a,
                VethPair::A_DEV,
                &skel.progs.xdp_pass,
                Mode::Native,
            )?),
            Mode::Generic => None,
        };
        let reported = program.reported_mode()?;
        case.detail("reported_attach_mode", reported);
        assert_eq!(
            reported,
            mode.reported(),
            "XDP attach mode the kernel reports for {} (1 driver, 2 generic)",
            VethPair::B_DEV
        );

        let (dropped_rx, passed_rx, bounced_rx) = {
            let _inside = pair.b.enter()?;
            let bind = |port| {
                UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
                    .or_error("binding a receiver")
            };
            (bind(DROP_PORT)?, bind(PASS_PORT)?, bind(TX_PORT)?)
        };
        let veth0 = pair.a.ifindex(VethPair::A_DEV)?;
        let (sender, capture) = {
            let _inside = pair.a.enter()?;
            if let Mode::Native = mode {
                ethtool::set_tx_checksum(VethPair::A_DEV, false)?;
            }
            let sender = UdpSocket::bind(SocketAddrV4::new(SENDER, SENDER_PORT))
                .or_error("binding the sender")?;
            (sender, Capture::open(veth0)?)
        };

        // Resolve the neighbour first, so no datagram waits in (or falls out of) ARP's queue.
        sender.send_to(b"warm-up", (RECEIVER, PASS_PORT))?;
        assert_eq!(
            texts(&arrived(&passed_rx, b"warm-up")?),
            Vec::<String>::new(),
            "datagrams to port {PASS_PORT} before the warm-up"
        );

        {
            let _one_cpu = observe::OneCpu::pin()?;
            for i in 0..DATAGRAMS {
                for port in [DROP_PORT, PASS_PORT, TX_PORT] {
                    sender.send_to(format!("{port}:{i}").as_bytes(), (RECEIVER, port))?;
                }
            }
            sender.send_to(SENTINEL, (RECEIVER, TX_PORT))?;
            sender.send_to(SENTINEL, (RECEIVER, PASS_PORT))?;
        }

        // The receiver's side first: there the passed sentinel settles all three ports.
        let passed = arrived(&passed_rx, SENTINEL)?;
        let dropped = v4_sources(observe::queued(&dropped_rx)?)?;
        let bounced_arrived = v4_sources(observe::queued(&bounced_rx)?)?;
        case.detail(
            "received",
            serde_json::json!({
                "drop_port": texts(&dropped), "pass_port": texts(&passed),
                "tx_port": texts(&bounced_arrived),
            }),
        );
        let payloads =
            |port: u16| -> Vec<String> { (0..DATAGRAMS).map(|i| format!("{port}:{i}")).collect() };
        assert_eq!(
            texts(&dropped),
            Vec::<String>::new(),
            "datagrams to the dropped port {DROP_PORT}"
        );
        assert_eq!(
            texts(&passed),
            payloads(PASS_PORT),
            "datagrams to the passed port {PASS_PORT}"
        );
        assert_eq!(
            texts(&bounced_arrived),
            Vec::<String>::new(),
            "datagrams reaching the receiver's socket of the bounced port {TX_PORT}"
        );

        let bounced = arrived(&sender, SENTINEL)?;
        case.detail("received_by_sender", texts(&bounced));
        assert_eq!(
            texts(&bounced),
            payloads(TX_PORT),
            "bounced datagrams back on the sender's socket"
        );
        for (_, from) in &bounced {
            assert_eq!(
                *from,
                SocketAddrV4::new(RECEIVER, TX_PORT),
                "source of a bounced datagram"
            );
        }

        // Byte for byte: each bounced frame is a sent frame with MACs, IPs and ports swapped.
        let frames = observe::until_sentinel(
            "the bounced sentinel's frame on the sender's veth",
            |wait| capture.next(wait),
            |f| !f.outgoing && f.sport() == TX_PORT && f.bytes.ends_with(SENTINEL),
        )?;
        let expected = DATAGRAMS as usize;
        let sent: Vec<&Frame> = frames
            .iter()
            .filter(|f| f.outgoing && f.dport() == TX_PORT && !f.bytes.ends_with(SENTINEL))
            .collect();
        let back: Vec<&Frame> = frames
            .iter()
            .filter(|f| !f.outgoing && f.sport() == TX_PORT)
            .collect();
        case.detail("captured_sent_to_tx_port", sent.len());
        case.detail("captured_bounced", back.len());
        assert_eq!(
            sent.len(),
            expected,
            "frames captured leaving for {TX_PORT}"
        );
        assert_eq!(back.len(), expected, "bounced frames captured coming back");
        if let (Some(out), Some(bounce)) = (sent.first(), back.first()) {
            case.detail("first_sent_frame", hex(&out.bytes));
            case.detail("first_bounced_frame", hex(&bounce.bytes));
        }
        for (out, bounce) in sent.iter().zip(&back) {
            assert_eq!(
                hex(&bounce.bytes),
                hex(&swapped(&out.bytes)),
                "a bounced frame against the sent frame with MACs, IPs and ports swapped"
            );
        }

        let counts = verdicts(&skel)?;
        case.detail("verdicts_drop_pass_tx", counts);
        assert_eq!(
            counts,
            [DATAGRAMS, DATAGRAMS + 2, DATAGRAMS + 1],
            "IPv4/UDP packets counted per verdict [drop, pass (with the warm-up and a \
                 sentinel), tx (with a sentinel)]"
        );
        Ok(())
    });
}

/// What arrived on `sock` before the datagram `sentinel`, with the (IPv4) sources.
fn arrived(sock: &UdpSocket, sentinel: &[u8]) -> CaseResult<Vec<(Vec<u8>, SocketAddrV4)>> {
    v4_sources(observe::datagrams_before(sock, sentinel)?)
}

fn v4_sources(got: Vec<observe::Datagram>) -> CaseResult<Vec<(Vec<u8>, SocketAddrV4)>> {
    got.into_iter()
        .map(|(data, from)| match from {
            std::net::SocketAddr::V4(from) => Ok((data, from)),
            from => Err(CaseError::Fail(anyhow::anyhow!(
                "a datagram from an IPv6 source {from}"
            ))),
        })
        .collect()
}

/// The payloads as text.
fn texts(got: &[(Vec<u8>, SocketAddrV4)]) -> Vec<String> {
    got.iter()
        .map(|d| String::from_utf8_lossy(&d.0).into_owned())
        .collect()
}

/// `frame` (Ethernet/IPv4/UDP) with Ethernet addresses, IP addresses and UDP ports swapped:
/// what the program's XDP_TX branch makes of it.
fn swapped(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let (dst, src) = f[..12].split_at_mut(6);
    dst.swap_with_slice(src);
    let ip = ETH_HLEN;
    let (saddr, daddr) = f[ip + 12..ip + 20].split_at_mut(4);
    saddr.swap_with_slice(daddr);
    let udp = ip + usize::from(frame[ip] & 0x0f) * 4;
    let (sport, dport) = f[udp..udp + 4].split_at_mut(2);
    sport.swap_with_slice(dport);
    f
}

/// An ARP request for the receiver's address.
fn arp() -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1]; // Ethernet, IPv4, request
    a.extend_from_slice(&packet::ETH_SRC);
    a.extend_from_slice(&SENDER.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&RECEIVER.octets());
    packet::ethernet(ETH_P_ARP, &a)
}

#[rstest]
#[case::drops_udp_to_drop_port(FLOW.udp4(DROP_PORT), XDP_DROP, true)]
#[case::drops_udp_after_ip_options(FLOW.udp4_with_options(DROP_PORT), XDP_DROP, true)]
#[case::passes_udp_to_other_port(FLOW.udp4(PASS_PORT), XDP_PASS, true)]
#[case::bounces_udp_to_tx_port(FLOW.udp4(TX_PORT), XDP_TX, true)]
#[case::bounces_udp_after_ip_options(FLOW.udp4_with_options(TX_PORT), XDP_TX, true)]
#[case::passes_tcp_to_drop_port(FLOW.tcp4(DROP_PORT), XDP_PASS, false)]
#[case::passes_ipv6_udp_to_drop_port(FLOW.udp6(DROP_PORT), XDP_PASS, false)]
#[case::passes_arp(arp(), XDP_PASS, false)]
#[case::passes_cut_udp_header(FLOW.udp4_cut_in_udp_header(DROP_PORT), XDP_PASS, false)]
fn test_run(#[case] frame: Vec<u8>, #[case] verdict: u32, #[case] counted: bool) {
    // XDP_TX: MACs, IPs and ports swapped; else unchanged.
    let bytes = if verdict == XDP_TX {
        swapped(&frame)
    } else {
        frame.clone()
    };
    // IPv4/UDP packets counted per verdict: this one under its verdict, if it is IPv4/UDP.
    let counts = VERDICTS.map(|(name, v)| (name, u64::from(counted && v == verdict)));
    let row = Row::new(frame, verdict as i32)
        .bytes(bytes)
        .counters(counts);
    row.case(ProgramType::Xdp, |case, row| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        let ran = row.run_counted(case, &skel.progs.xdp_udp_verdicts, || {
            Ok(VERDICTS
                .map(|v| v.0)
                .into_iter()
                .zip(verdicts(&skel)?)
                .collect())
        })?;
        if verdict == XDP_TX {
            case.detail("frame_out", hex(&ran.data));
            let header_len = usize::from(ran.data[ETH_HLEN] & 0x0f) * 4;
            assert_eq!(
                packet::ipv4_checksum(&ran.data[ETH_HLEN..ETH_HLEN + header_len]),
                0,
                "the IP header checksum of the bounced frame still verifies"
            );
        }
        Ok(())
    });
}
