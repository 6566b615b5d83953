//! xdp_metadata (`programs/src/bpf/xdp_metadata.bpf.c`): XDP metadata (bpf_xdp_adjust_meta)
//! handed to the tc program of the same device, proven by the routing it decides. (Its
//! siblings: `xdp_adjust`, `xdp_redirect`.)
//!
//! `passes_metadata_to_tc_{native,generic}`: a veth pair, sender `10.13.0.1` (a), receiver
//! `10.13.0.2` (b), `xdp_set_meta` on the receiver's veth (native or generic mode) and
//! `tc_read_meta` on its tc ingress. The sender (one socket on one CPU, SO_NO_CHECK as in
//! `xdp.rs`) sends [`DATAGRAMS`] datagrams to the service `10.97.0.1:META_PORT` whose first 4
//! bytes are the mark [`MARK_A`] or [`MARK_B`] (native byte order). `xdp_set_meta` copies those
//! bytes into the metadata, `tc_read_meta` turns the metadata into skb->mark, and the fwmark rule
//! makes the service local for mark A only: the A datagrams arrive, the B ones do not, and neither
//! do datagrams with the A bytes to NO_META_PORT (no metadata there, so no mark). A sentinel with
//! mark A, sent last, settles the others. The programs' counters are exact.
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN of `xdp_set_meta` on crafted frames: the
//! verdict, the frame handed back byte for byte (from 5.15 behind the metadata the program added:
//! `test_run.xdp_data_meta_out`) and the counter.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;

use libbpf_rs::libbpf_sys::{self, XDP_PASS};
use libbpf_rs::{ProgramType, TC_INGRESS, TcHookBuilder};
use programs::xdp_metadata::{XdpMetadataSkel, XdpMetadataSkelBuilder};
use rstest::rstest;
use testkit::netlink::{Cidr, Selector};
use testkit::observe::{self, volatile};
use testkit::packet::{self, ETH_P_IP, IPPROTO_UDP, Ipv4};
use testkit::test_run::Row;
use testkit::veth::VethPair;
use testkit::xdp::{Mode, XdpAttachment};
use testkit::{Case, CaseResult, OrError, floors, probe, sockopt};

/// UDP to this port gets its first 4 payload bytes as XDP metadata.
const META_PORT: u16 = 7603;
/// UDP to this port gets no metadata (the control of the marks).
const NO_META_PORT: u16 = 7604;
/// Plain UDP, untouched (warm-up).
const PLAIN_PORT: u16 = 7605;
/// The sender's UDP source port.
const SENDER_PORT: u16 = 7600;
/// The fwmark the policy rule routes to the local service; mark B has no rule.
const MARK_A: u32 = 0x2a;
const MARK_B: u32 = 0x2b;
const MARK_TABLE: u32 = 100;
/// Local to the receiver only through the fwmark table.
const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 1);
/// Datagrams per flow.
const DATAGRAMS: u64 = 3;
/// Sender and receiver of the live case and the test-run frames.
const SENDER: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 1);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 2);

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<XdpMetadataSkel<'obj>> {
    probe::helper(
        ProgramType::Xdp,
        libbpf_sys::BPF_FUNC_xdp_adjust_meta,
        "bpf_xdp_adjust_meta",
    )?;
    probe::prog_type(ProgramType::SchedCls)?;
    case.open_load(XdpMetadataSkelBuilder::default(), object, |open| {
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata")
            .meta_port = META_PORT;
    })
}

/// The programs' counters `(meta_set, meta_read)`.
fn counters(skel: &XdpMetadataSkel<'_>) -> (u64, u64) {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    (volatile(&bss.meta_set), volatile(&bss.meta_read))
}

/// `mark` (native byte order, as the programs read it) followed by `text`.
fn marked(mark: u32, text: &str) -> Vec<u8> {
    let mut p = mark.to_ne_bytes().to_vec();
    p.extend_from_slice(text.as_bytes());
    p
}

#[rstest]
#[case::native(Mode::Native)]
#[case::generic(Mode::Generic)]
fn passes_metadata_to_tc(#[case] mode: Mode) {
    Case::run(ProgramType::Xdp, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        probe::config_enabled("CONFIG_NET_SCH_INGRESS")?;
        probe::config_enabled("CONFIG_NET_CLS_BPF")?;

        let pair = VethPair::new(Cidr::v4(SENDER, 24), Cidr::v4(RECEIVER, 24))?;
        pair.policy_routed_service(SERVICE, RECEIVER, Selector::FwMark(MARK_A), MARK_TABLE)?;
        let (a, b) = (&pair.a, &pair.b);
        let xdp = XdpAttachment::veth(b, VethPair::B_DEV, &skel.progs.xdp_set_meta, mode)?;
        let reported = xdp.reported_mode()?;
        case.detail("reported_attach_mode", reported);
        assert_eq!(
            reported,
            mode.reported(),
            "XDP attach mode the kernel reports (1 driver, 2 generic)"
        );

        let (meta_rx, no_meta_rx, plain_rx) = {
            let _inside = b.enter()?;
            let mut hook = TcHookBuilder::new(skel.progs.tc_read_meta.as_fd())
                .ifindex(b.ifindex(VethPair::B_DEV)? as i32)
                .handle(1)
                .priority(1)
                .hook(TC_INGRESS);
            hook.create()
                .or_error("creating the clsact qdisc on the receiver's veth")?;
            hook.attach()?;
            let bind = |port: u16| {
                UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
                    .or_error("binding a receiver")
            };
            (bind(META_PORT)?, bind(NO_META_PORT)?, bind(PLAIN_PORT)?)
        };
        let udp = {
            let _inside = a.enter()?;
            let udp = UdpSocket::bind(SocketAddrV4::new(SENDER, SENDER_PORT))
                .or_error("binding the sender")?;
            sockopt::no_udp_checksum(&udp).or_error("SO_NO_CHECK")?;
            udp
        };

        // Resolve the neighbour first, so no datagram waits in (or falls out of) ARP's queue.
        udp.send_to(b"warm-up", (RECEIVER, PLAIN_PORT))?;
        assert_eq!(
            observe::datagrams_before(&plain_rx, b"warm-up")?.len(),
            0,
            "datagrams on port {PLAIN_PORT} before the warm-up"
        );

        let sentinel = marked(MARK_A, "sentinel");
        {
            let _one_cpu = observe::OneCpu::pin()?;
            for i in 0..DATAGRAMS {
                udp.send_to(&marked(MARK_A, &format!("meta:{i}")), (SERVICE, META_PORT))?;
                udp.send_to(
                    &marked(MARK_B, &format!("meta-b:{i}")),
                    (SERVICE, META_PORT),
                )?;
                udp.send_to(
                    &marked(MARK_A, &format!("no-meta:{i}")),
                    (SERVICE, NO_META_PORT),
                )?;
            }
            udp.send_to(&sentinel, (SERVICE, META_PORT))?;
        }

        let meta = observe::datagrams_before(&meta_rx, &sentinel)?;
        let no_meta = observe::queued(&no_meta_rx)?;
        let meta_texts: Vec<String> = meta
            .iter()
            .map(|(d, _)| format!("{:#x}/{}", d[0], String::from_utf8_lossy(&d[4..])))
            .collect();
        case.detail(
            "received",
            serde_json::json!({
                "meta_port": meta_texts, "no_meta_port": observe::texts(&no_meta),
            }),
        );
        let expected_meta: Vec<String> = (0..DATAGRAMS)
            .map(|i| format!("{MARK_A:#x}/meta:{i}"))
            .collect();
        assert_eq!(
            meta_texts, expected_meta,
            "datagrams at {SERVICE}:{META_PORT}: only those whose metadata became mark \
                 {MARK_A:#x}"
        );
        assert_eq!(
            observe::texts(&no_meta),
            Vec::<String>::new(),
            "datagrams at {SERVICE}:{NO_META_PORT} (no metadata, no mark, no route)"
        );

        let (meta_set, meta_read) = counters(&skel);
        case.detail("meta_set", meta_set);
        case.detail("meta_read", meta_read);
        assert_eq!(
            (meta_set, meta_read),
            (2 * DATAGRAMS + 1, 2 * DATAGRAMS + 1),
            "program counters (meta_set, meta_read: the A and B flows and the sentinel)"
        );
        Ok(())
    });
}

/// A UDP frame `SENDER:SENDER_PORT → RECEIVER:dport` (UDP checksum 0) with `payload`.
fn udp_frame(dport: u16, payload: &[u8]) -> Vec<u8> {
    packet::ethernet(
        ETH_P_IP,
        &Ipv4::new(SENDER.octets(), RECEIVER.octets(), IPPROTO_UDP).build(&packet::udp(
            SENDER_PORT,
            dport,
            payload,
        )),
    )
}

#[rstest]
#[case::sets_meta(udp_frame(META_PORT, &marked(MARK_A, "payload")), MARK_A.to_ne_bytes().to_vec())]
#[case::passes_short_udp_to_meta_port(udp_frame(META_PORT, b"abc"), Vec::new())]
fn test_run(#[case] frame: Vec<u8>, #[case] meta: Vec<u8>) {
    // From 5.15 the kernel hands back the metadata the program added, in front of the packet.
    let bytes = if floors::reached("test_run.xdp_data_meta_out") {
        [meta.as_slice(), &frame].concat()
    } else {
        frame.clone()
    };
    let set = u64::from(!meta.is_empty());
    let row = Row::new(frame, XDP_PASS as i32)
        .bytes(bytes)
        .counters([("meta_set", set)]);
    row.case(ProgramType::Xdp, |case, row| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        row.run_counted(case, &skel.progs.xdp_set_meta, || {
            Ok(vec![("meta_set", counters(&skel).0)])
        })
        .map(drop)
    });
}
