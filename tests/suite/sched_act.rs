//! sched_act (`programs/src/bpf/sched_act.bpf.c`): a tc action program (act_bpf) that drops UDP
//! to one port (`TC_ACT_SHOT`) and lets everything else go on (`TC_ACT_OK`).
//!
//! `drops_one_flow`: two namespaces joined by a veth pair, sender `10.9.0.1` (namespace a) and
//! receiver `10.9.0.2` (namespace b). The skeleton loads both programs (so their verifier
//! statistics are recorded) and pins them in a bpffs directory of the case's own; iproute2's tc,
//! run inside b, attaches them to the receiver's clsact ingress as a cls_bpf filter for IPv4 whose
//! action is the action program: `tc filter add dev veth1 ingress protocol ip bpf object-pinned
//! <match_all> action bpf object-pinned <act_drop_port>`.
//! `match_all` is a classic-mode classifier returning -1 ("match, default class"), so cls_bpf runs
//! the action on every packet it sees. (cls_bpf + act_bpf rather than matchall + act_bpf: the VM
//! guests load only cls_bpf and act_bpf.) `protocol ip` keeps what the kernel sends by itself on
//! the link (ARP, IPv6 router solicitations, MLD, DAD) away from the filter: nothing but the test's
//! datagrams is IPv4 there, so both programs' counts are exact. The pins are removed right after,
//! the filter keeps the programs, and deleting the namespaces removes filter, qdisc and programs.
//! UDP datagrams to port 7101 never arrive; those to port 7102 all do, read up to a sentinel sent
//! last to 7102. The sentinel follows the dropped flow on its path (sender socket, route, veth
//! queue, both programs, which pass it), so once it arrived the socket of 7101 is read without
//! waiting. The programs' counters equal what was sent.
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN of both programs on crafted Ethernet frames
//! checks the verdicts (`TC_ACT_SHOT` 2, `TC_ACT_OK` 0, -1 for the classifier) and that the frame
//! comes back unchanged.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use libbpf_rs::ProgramType;
use programs::sched_act::{SchedActSkel, SchedActSkelBuilder};
use rstest::rstest;
use testkit::netlink::Cidr;
use testkit::observe::{self, volatile};
use testkit::packet::Flow;
use testkit::pins::PinDir;
use testkit::test_run::Row;
use testkit::veth::VethPair;
use testkit::{Case, CaseResult, OrError, probe};

/// UDP to this port is dropped by the action.
const DROP_PORT: u16 = 7101;
/// UDP to this port passes (the control flow).
const PASS_PORT: u16 = 7102;
const SENDER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
/// The frames of the test-run rows.
const FLOW: Flow = Flow {
    src: SENDER,
    dst: RECEIVER,
    sport: 40000,
    payload: b"payload",
};
/// The payload of the datagram sent last, to [`PASS_PORT`].
const SENTINEL: &str = "sentinel";
/// Datagrams sent per flow.
const DATAGRAMS: u64 = 3;
/// `TC_ACT_OK` and `TC_ACT_SHOT` (linux/pkt_cls.h).
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<SchedActSkel<'obj>> {
    probe::prog_type(ProgramType::SchedAct)?;
    probe::prog_type(ProgramType::SchedCls)?;
    case.open_load(SchedActSkelBuilder::default(), object, |open| {
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.drop_port = DROP_PORT;
    })
}

#[test]
fn drops_one_flow() {
    Case::run(ProgramType::SchedAct, |case| {
        let mut object = MaybeUninit::uninit();
        let mut skel = open_and_load(case, &mut object)?;
        // The attach points are optional kernel parts (built in, or modules the VM guests load).
        probe::config_enabled("CONFIG_NET_SCH_INGRESS")?;
        probe::config_enabled("CONFIG_NET_CLS_BPF")?;
        probe::config_enabled("CONFIG_NET_ACT_BPF")?;

        let pair = VethPair::new(Cidr::v4(SENDER, 24), Cidr::v4(RECEIVER, 24))?;
        pair.b.add_clsact(VethPair::B_DEV)?;
        let receivers = {
            // tc runs as a child of this thread, so inside b, yet with this process's mounts
            // (`tc -n`/`ip netns exec` remount /sys and lose bpffs, and with it the pins).
            let _inside = pair.b.enter()?;
            let pins = PinDir::new("sched_act")?;
            let classifier = pins.join("match_all");
            let action = pins.join("act_drop_port");
            skel.progs
                .match_all
                .pin(&classifier)
                .or_error("pinning match_all")?;
            skel.progs
                .act_drop_port
                .pin(&action)
                .or_error("pinning act_drop_port")?;
            testkit::netns::attach_tool(
                "tc",
                &[
                    "filter",
                    "add",
                    "dev",
                    VethPair::B_DEV,
                    "ingress",
                    "protocol",
                    "ip",
                    "pref",
                    "1",
                    "handle",
                    "1",
                    "bpf",
                    "object-pinned",
                    &classifier.to_string_lossy(),
                    "action",
                    "bpf",
                    "object-pinned",
                    &action.to_string_lossy(),
                ],
            )?;
            let bind = |port| {
                UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
                    .or_error("binding a receiver")
            };
            (bind(DROP_PORT)?, bind(PASS_PORT)?)
        };
        let (rx_drop, rx_pass) = receivers;
        let sender = {
            let _inside = pair.a.enter()?;
            UdpSocket::bind(SocketAddrV4::new(SENDER, 0)).or_error("binding the sender")?
        };

        // Resolve the neighbour first, so no datagram waits in (or falls out of) ARP's queue.
        sender.send_to(b"warm-up", (RECEIVER, PASS_PORT))?;
        assert_eq!(
            observe::texts_before(&rx_pass, "warm-up")?,
            Vec::<String>::new(),
            "datagrams to port {PASS_PORT} before the warm-up"
        );
        {
            let _one_cpu = observe::OneCpu::pin()?;
            for i in 0..DATAGRAMS {
                for port in [DROP_PORT, PASS_PORT] {
                    sender.send_to(format!("{port}:{i}").as_bytes(), (RECEIVER, port))?;
                }
            }
            sender.send_to(SENTINEL.as_bytes(), (RECEIVER, PASS_PORT))?;
        }
        let passed = observe::texts_before(&rx_pass, SENTINEL)?;
        let dropped = observe::texts(&observe::queued(&rx_drop)?);
        case.detail("received_pass_port", &passed);
        case.detail("received_drop_port", &dropped);
        let expected: Vec<String> = (0..DATAGRAMS).map(|i| format!("{PASS_PORT}:{i}")).collect();
        assert_eq!(passed, expected, "datagrams to port {PASS_PORT}");
        assert_eq!(
            dropped,
            Vec::<String>::new(),
            "datagrams to the dropped port {DROP_PORT}"
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let (matched, udp_seen, shot) = (
            volatile(&bss.matched),
            volatile(&bss.udp_seen),
            volatile(&bss.dropped),
        );
        case.detail("matched", matched);
        case.detail("udp_seen", udp_seen);
        case.detail("dropped", shot);
        // The warm-up datagram, DATAGRAMS per flow and the sentinel: all the IPv4 there is.
        let sent = 1 + 2 * DATAGRAMS + 1;
        assert_eq!(matched, sent, "IPv4 packets the classifier matched");
        assert_eq!(udp_seen, sent, "UDP datagrams the action saw");
        assert_eq!(shot, DATAGRAMS, "datagrams the action dropped");
        Ok(())
    });
}

/// Which program a test-run row runs.
#[derive(Clone, Copy, Debug)]
enum Prog {
    /// The action, `act_drop_port`.
    Action,
    /// The classifier that carries it, `match_all`.
    Classifier,
}

#[rstest]
#[case::action_drops_udp_to_drop_port(Prog::Action, FLOW.udp4(DROP_PORT), TC_ACT_SHOT)]
#[case::action_drops_udp_after_ip_options(
    Prog::Action,
    FLOW.udp4_with_options(DROP_PORT),
    TC_ACT_SHOT
)]
#[case::action_passes_other_udp(Prog::Action, FLOW.udp4(PASS_PORT), TC_ACT_OK)]
#[case::action_passes_tcp_to_drop_port(Prog::Action, FLOW.tcp4(DROP_PORT), TC_ACT_OK)]
#[case::action_passes_ipv6_udp_to_drop_port(Prog::Action, FLOW.udp6(DROP_PORT), TC_ACT_OK)]
#[case::action_passes_truncated_udp(
    Prog::Action,
    FLOW.udp4_cut_in_udp_header(DROP_PORT),
    TC_ACT_OK
)]
#[case::classifier_matches_everything(Prog::Classifier, FLOW.udp4(DROP_PORT), -1)]
fn test_run(#[case] which: Prog, #[case] frame: Vec<u8>, #[case] verdict: i32) {
    let prog_type = match which {
        Prog::Action => ProgramType::SchedAct,
        Prog::Classifier => ProgramType::SchedCls,
    };
    let row = Row::new(frame, verdict).unchanged();
    row.case(prog_type, |case, row| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object)?;
        let prog = match which {
            Prog::Action => &skel.progs.act_drop_port,
            Prog::Classifier => &skel.progs.match_all,
        };
        row.run(case, prog).map(drop)
    });
}
