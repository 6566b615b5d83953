//! sched_cls (`programs/src/bpf/sched_cls.bpf.c`): clsact classifiers in direct-action mode,
//! attached with libbpf's TC hook (`TcHookBuilder`: creates the clsact qdisc, adds the filter).
//!
//! `drops_and_marks_flows`: two namespaces joined by a veth pair, sender `10.9.0.1` (namespace a)
//! and receiver `10.9.0.2` (namespace b); UDP datagrams go from a to b, one flow per port:
//! - `tc_egress` on the sender's veth **drops** UDP to port 7001: none arrives, while every
//!   datagram of the other flows does;
//! - the same program **DSCP-marks** UDP to port 7002 (TOS byte rewritten to EF, 0xb8, IP checksum
//!   fixed): the receiver reads TOS 0xb8 with `IP_RECVTOS`, and 0 on the untouched port 7003;
//! - `tc_ingress` on the receiver's veth **sets skb->mark** on UDP to port 7004. The mark is
//!   proven by what it steers, not by the program: in b, a policy-routing rule `fwmark 0x2a lookup
//!   100` and the route `local 10.99.0.1 dev lo table 100` make the service address 10.99.0.1 local
//!   for marked packets only. Datagrams to 10.99.0.1:7004 (marked) arrive; datagrams to
//!   10.99.0.1:7005 (unmarked, same address) find no route and never arrive.
//!
//! After the flows, one sender socket sends a sentinel to each port that receives (7002, 7003 and
//! 10.99.0.1:7004), and each of those sockets is read up to its sentinel. The flows that must not
//! arrive cannot carry their own (one is dropped, the other has no route), but the sentinels to
//! 10.9.0.2 and to 10.99.0.1 follow them on their route, veth queue and programs, which pass
//! them: once those arrived, the datagrams ahead of them were delivered or not, and the sockets of
//! 7001 and 7005 are read without waiting. The programs' counters must equal the number of
//! datagrams of their flow (with its sentinel).
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN on crafted Ethernet frames checks each verdict
//! (`TC_ACT_OK` 0, `TC_ACT_SHOT` 2), the rewritten bytes (TOS and a still-valid header checksum,
//! nothing else changed), and skb->mark through the `__sk_buff` context the kernel hands back.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use libbpf_rs::{ProgramType, TC_EGRESS, TC_INGRESS, TcHookBuilder};
use nix::sys::socket::{setsockopt, sockopt};
use programs::sched_cls::{SchedClsSkel, SchedClsSkelBuilder};
use rstest::rstest;
use testkit::datagram;
use testkit::netlink::{Cidr, Selector};
use testkit::observe::{self, volatile};
use testkit::packet::{self, ETH_HLEN, Flow};
use testkit::test_run::Row;
use testkit::veth::VethPair;
use testkit::{Case, CaseError, CaseResult, OrError, probe};

/// UDP to this port is dropped on the sender's egress.
const DROP_PORT: u16 = 7001;
/// UDP to this port leaves the sender with TOS [`TOS_EF`].
const DSCP_PORT: u16 = 7002;
/// UDP to this port passes untouched (the control flow).
const PLAIN_PORT: u16 = 7003;
/// UDP to this port gets skb->mark [`MARK`] on the receiver's ingress.
const MARK_PORT: u16 = 7004;
/// UDP to the service address on this port is not marked (the control of the mark).
const UNMARKED_PORT: u16 = 7005;
/// DSCP EF (46) in the TOS byte, ECN bits 0.
const TOS_EF: u8 = 46 << 2;
/// The mark, and the routing table the fwmark rule selects.
const MARK: u32 = 0x2a;
const MARK_TABLE: u32 = 100;
const SENDER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
/// Local to the receiver only through the fwmark table.
const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The frames of the test-run rows.
const FLOW: Flow = Flow {
    src: SENDER,
    dst: RECEIVER,
    sport: 40000,
    payload: b"payload",
};
/// The payload of the datagram sent last to each socket that receives.
const SENTINEL: &str = "sentinel";
/// Datagrams sent per flow.
const DATAGRAMS: u64 = 3;
/// `TC_ACT_OK` and `TC_ACT_SHOT` (linux/pkt_cls.h).
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<SchedClsSkel<'obj>> {
    probe::prog_type(ProgramType::SchedCls)?;
    case.open_load(SchedClsSkelBuilder::default(), object, |open| {
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.drop_port = DROP_PORT;
        rodata.dscp_port = DSCP_PORT;
        rodata.mark_port = MARK_PORT;
        rodata.tos = TOS_EF;
        rodata.mark = MARK;
    })
}

#[test]
fn drops_and_marks_flows() {
    Case::run(ProgramType::SchedCls, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        // The attach points are optional kernel parts (built in, or modules the VM guests load).
        probe::config_enabled("CONFIG_NET_SCH_INGRESS")?;
        probe::config_enabled("CONFIG_NET_CLS_BPF")?;

        let pair = VethPair::new(Cidr::v4(SENDER, 24), Cidr::v4(RECEIVER, 24))?;
        pair.policy_routed_service(SERVICE, RECEIVER, Selector::FwMark(MARK), MARK_TABLE)?;

        // libbpf's TC hook talks netlink in the calling thread's namespace.
        {
            let _inside = pair.a.enter()?;
            let ifindex = pair.a.ifindex(VethPair::A_DEV)?;
            let mut hook = TcHookBuilder::new(skel.progs.tc_egress.as_fd())
                .ifindex(ifindex as i32)
                .handle(1)
                .priority(1)
                .hook(TC_EGRESS);
            hook.create()
                .or_error("creating the clsact qdisc on the sender's veth")?;
            hook.attach()?;
        }
        let receivers = {
            let _inside = pair.b.enter()?;
            let ifindex = pair.b.ifindex(VethPair::B_DEV)?;
            let mut hook = TcHookBuilder::new(skel.progs.tc_ingress.as_fd())
                .ifindex(ifindex as i32)
                .handle(1)
                .priority(1)
                .hook(TC_INGRESS);
            hook.create()
                .or_error("creating the clsact qdisc on the receiver's veth")?;
            hook.attach()?;
            Receivers::bind()?
        };
        let sender = {
            let _inside = pair.a.enter()?;
            UdpSocket::bind(SocketAddrV4::new(SENDER, 0)).or_error("binding the sender")?
        };

        // Resolve the neighbour first, so no datagram waits in (or falls out of) ARP's queue.
        sender.send_to(b"warm-up", (RECEIVER, PLAIN_PORT))?;
        assert_eq!(
            arrived(&receivers.plain, "warm-up")?,
            [],
            "datagrams on port {PLAIN_PORT} before the warm-up"
        );

        let flows = [
            (RECEIVER, DROP_PORT),
            (RECEIVER, DSCP_PORT),
            (RECEIVER, PLAIN_PORT),
            (SERVICE, MARK_PORT),
            (SERVICE, UNMARKED_PORT),
        ];
        let sentinels = [
            (RECEIVER, DSCP_PORT),
            (RECEIVER, PLAIN_PORT),
            (SERVICE, MARK_PORT),
        ];
        {
            let _one_cpu = observe::OneCpu::pin()?;
            for i in 0..DATAGRAMS {
                for (addr, port) in flows {
                    sender.send_to(format!("{port}:{i}").as_bytes(), (addr, port))?;
                }
            }
            for to in sentinels {
                sender.send_to(SENTINEL.as_bytes(), to)?;
            }
        }

        let dscp = arrived(&receivers.dscp, SENTINEL)?;
        let plain = arrived(&receivers.plain, SENTINEL)?;
        let marked = arrived(&receivers.marked, SENTINEL)?;
        let dropped = observe::texts(&observe::queued(&receivers.dropped)?);
        let unmarked = observe::texts(&observe::queued(&receivers.unmarked)?);
        case.detail(
            "received",
            serde_json::json!({
                "drop_port": dropped, "dscp_port": dscp, "plain_port": plain,
                "mark_port": marked, "unmarked_port": unmarked,
            }),
        );

        let payloads =
            |port: u16| -> Vec<String> { (0..DATAGRAMS).map(|i| format!("{port}:{i}")).collect() };
        let texts = |got: &[(String, u8)]| got.iter().map(|d| d.0.clone()).collect::<Vec<_>>();
        assert_eq!(
            dropped,
            Vec::<String>::new(),
            "datagrams to the dropped port {DROP_PORT}"
        );
        assert_eq!(
            texts(&dscp),
            payloads(DSCP_PORT),
            "datagrams to the DSCP-marked port"
        );
        assert_eq!(
            texts(&plain),
            payloads(PLAIN_PORT),
            "datagrams to the untouched port"
        );
        assert!(
            dscp.iter().all(|d| d.1 == TOS_EF),
            "TOS received on port {DSCP_PORT}: {dscp:?}, expected {TOS_EF:#x}"
        );
        assert!(
            plain.iter().all(|d| d.1 == 0),
            "TOS received on port {PLAIN_PORT}: {plain:?}, expected 0"
        );
        assert_eq!(
            texts(&marked),
            payloads(MARK_PORT),
            "datagrams to {SERVICE}:{MARK_PORT}, local only through the fwmark {MARK:#x} table"
        );
        assert_eq!(
            unmarked,
            Vec::<String>::new(),
            "unmarked datagrams to {SERVICE}:{UNMARKED_PORT} (no route without the mark)"
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let counts = (
            volatile(&bss.dropped),
            volatile(&bss.tos_rewritten),
            volatile(&bss.marked),
        );
        case.detail("dropped_tos_rewritten_marked", counts);
        assert_eq!(
            counts,
            (DATAGRAMS, DATAGRAMS + 1, DATAGRAMS + 1),
            "program counters (dropped; tos_rewritten and marked, each with a sentinel)"
        );
        Ok(())
    });
}

/// The receiver's sockets, one per flow, bound to 0.0.0.0 in namespace b (the caller is in it).
struct Receivers {
    dropped: UdpSocket,
    dscp: UdpSocket,
    plain: UdpSocket,
    marked: UdpSocket,
    unmarked: UdpSocket,
}

impl Receivers {
    fn bind() -> CaseResult<Self> {
        let bind = |port: u16| -> CaseResult<UdpSocket> {
            let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
                .or_error("binding a receiver")?;
            setsockopt(&sock, sockopt::IpRecvTos, &true).or_error("setting IP_RECVTOS")?;
            Ok(sock)
        };
        Ok(Receivers {
            dropped: bind(DROP_PORT)?,
            dscp: bind(DSCP_PORT)?,
            plain: bind(PLAIN_PORT)?,
            marked: bind(MARK_PORT)?,
            unmarked: bind(UNMARKED_PORT)?,
        })
    }
}

/// The next datagram on `sock` within `wait`, as text with the TOS byte it arrived with.
fn receive(sock: &UdpSocket, wait: Duration) -> CaseResult<Option<(String, u8)>> {
    let Some(d) = datagram::receive(sock, wait)? else {
        return Ok(None);
    };
    let tos = d.tos.ok_or_else(|| {
        CaseError::Fail(anyhow::anyhow!(
            "a datagram came without its IP_TOS message"
        ))
    })?;
    Ok(Some((d.text(), tos)))
}

/// What arrived on `sock` before the datagram `sentinel`, with the TOS bytes.
fn arrived(sock: &UdpSocket, sentinel: &str) -> CaseResult<Vec<(String, u8)>> {
    observe::until_sentinel(
        &format!("the datagram {sentinel:?} on {}", sock.local_addr()?),
        |wait| receive(sock, wait),
        |d| d.0 == sentinel,
    )
}

/// Which classifier a test-run row runs.
#[derive(Clone, Copy, Debug)]
enum Hook {
    Egress,
    Ingress,
}

/// What the classifier must do to the frame besides its verdict.
#[derive(Clone, Copy, Debug)]
enum Effect {
    /// The frame comes back byte for byte, skb->mark 0.
    Unchanged,
    /// Only the TOS byte (to [`TOS_EF`]) and the header checksum change.
    TosRewritten,
    /// The bytes are unchanged and skb->mark is [`MARK`].
    Marked,
}

#[rstest]
#[case::egress_drops_udp_to_drop_port(
    Hook::Egress,
    FLOW.udp4(DROP_PORT),
    TC_ACT_SHOT,
    Effect::Unchanged
)]
#[case::egress_drops_udp_after_ip_options(
    Hook::Egress,
    FLOW.udp4_with_options(DROP_PORT),
    TC_ACT_SHOT,
    Effect::Unchanged
)]
#[case::egress_rewrites_tos_of_dscp_port(
    Hook::Egress,
    FLOW.udp4(DSCP_PORT),
    TC_ACT_OK,
    Effect::TosRewritten
)]
#[case::egress_rewrites_tos_after_ip_options(
    Hook::Egress,
    FLOW.udp4_with_options(DSCP_PORT),
    TC_ACT_OK,
    Effect::TosRewritten
)]
#[case::egress_passes_other_udp(Hook::Egress, FLOW.udp4(PLAIN_PORT), TC_ACT_OK, Effect::Unchanged)]
#[case::egress_passes_tcp_to_drop_port(
    Hook::Egress,
    FLOW.tcp4(DROP_PORT),
    TC_ACT_OK,
    Effect::Unchanged
)]
#[case::egress_passes_ipv6_udp_to_drop_port(
    Hook::Egress,
    FLOW.udp6(DROP_PORT),
    TC_ACT_OK,
    Effect::Unchanged
)]
#[case::egress_passes_truncated_udp(
    Hook::Egress,
    FLOW.udp4_cut_in_udp_header(DROP_PORT),
    TC_ACT_OK,
    Effect::Unchanged
)]
#[case::ingress_marks_udp_to_mark_port(
    Hook::Ingress,
    FLOW.udp4(MARK_PORT),
    TC_ACT_OK,
    Effect::Marked
)]
#[case::ingress_leaves_other_udp_unmarked(
    Hook::Ingress,
    FLOW.udp4(UNMARKED_PORT),
    TC_ACT_OK,
    Effect::Unchanged
)]
#[case::ingress_leaves_drop_port_alone(
    Hook::Ingress,
    FLOW.udp4(DROP_PORT),
    TC_ACT_OK,
    Effect::Unchanged
)]
fn test_run(
    #[case] hook: Hook,
    #[case] frame: Vec<u8>,
    #[case] verdict: i32,
    #[case] effect: Effect,
) {
    let mut bytes = frame.clone();
    if let Effect::TosRewritten = effect {
        let ip = ETH_HLEN;
        let header_len = usize::from(frame[ip] & 0x0f) * 4;
        bytes[ip + 1] = TOS_EF;
        bytes[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
        let checksum = packet::ipv4_checksum(&bytes[ip..ip + header_len]);
        bytes[ip + 10..ip + 12].copy_from_slice(&checksum.to_be_bytes());
    }
    let row = Row::new(frame, verdict)
        .bytes(bytes)
        .context(vec![0; SK_BUFF_SIZE]);
    row.case(ProgramType::SchedCls, |case, row| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        let prog = match hook {
            Hook::Egress => &skel.progs.tc_egress,
            Hook::Ingress => &skel.progs.tc_ingress,
        };
        let ran = row.run(case, prog)?;
        if let Effect::TosRewritten = effect {
            let ip = ETH_HLEN;
            let header_len = usize::from(ran.data[ip] & 0x0f) * 4;
            assert_eq!(
                packet::ipv4_checksum(&ran.data[ip..ip + header_len]),
                0,
                "the rewritten IPv4 header's checksum must verify"
            );
        }
        let mark = ran
            .context
            .get(SK_BUFF_MARK..SK_BUFF_MARK + 4)
            .map_or(0, |m| u32::from_ne_bytes(m.try_into().expect("4 bytes")));
        case.detail("mark", mark);
        let expected_mark = if let Effect::Marked = effect { MARK } else { 0 };
        assert_eq!(mark, expected_mark, "skb->mark after {hook:?}");
        Ok(())
    });
}

/// `sizeof(struct __sk_buff)` in the UAPI headers the programs are built with (Linux 6.1); older
/// kernels accept a larger context whose tail is zero, and hand back their own size.
const SK_BUFF_SIZE: usize = 192;
/// `offsetof(struct __sk_buff, mark)`.
const SK_BUFF_MARK: usize = 8;
