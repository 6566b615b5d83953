//! tcx (`programs/src/bpf/tcx.bpf.c`): classifiers attached through tcx links, several on one hook,
//! in the order the links were placed.
//!
//! `drops_marks_and_orders_flows`: two namespaces joined by a veth pair, sender `10.10.0.1` (a),
//! receiver `10.10.0.2` (b); UDP datagrams go from a to b, one flow per port.
//! - `tcx_drop` on the sender's tcx egress **drops** UDP to [`DROP_PORT`]: none arrives, while the
//!   datagrams to [`PLAIN_PORT`] do.
//! - On the receiver's tcx ingress, `mark_a` sets skb->mark [`MARK_A`] on [`MARK_PORT`] and
//!   [`ORDER_PORT`], `mark_b` sets [`MARK_B`] on [`ORDER_PORT`]; both go on to the next program.
//!   The marks are proven by what they steer: in b the rule `fwmark MARK_A lookup 100` and the route
//!   `local 10.98.0.1 dev lo table 100` make the service address 10.98.0.1 local for packets marked
//!   [`MARK_A`] only. [`MARK_PORT`] arrives and [`UNMARKED_PORT`] (same address, no mark) does not.
//! - Order: `mark_a` is attached first; `mark_b` is attached **before** `mark_a`'s link, so
//!   `mark_a` runs last and [`ORDER_PORT`] arrives (mark A). Then `mark_b`'s link is replaced by
//!   one placed **after** `mark_a`'s: `mark_b` runs last, the mark is B, and [`ORDER_PORT`] no
//!   longer arrives, while [`MARK_PORT`] still does.
//!
//! Each phase ends with sentinels from the one sender socket, on one CPU, to each port that
//! receives (the plain port on 10.10.0.2 and the marked ports on 10.98.0.1): the flows that must not
//! arrive are on their route, veth queue and programs, so once the sentinels arrived, their
//! sockets are read without waiting. The programs' counters equal the datagrams of their flows.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{AsRawLibbpf, Link, Program, ProgramType};
use nix::errno::Errno;
use programs::tcx::{TcxSkel, TcxSkelBuilder};
use testkit::netlink::{Cidr, Selector};
use testkit::observe::{self, volatile};
use testkit::veth::VethPair;
use testkit::{Case, CaseError, CaseResult, NetNs, OrError, floors, link, probe};

/// UDP to this port is dropped on the sender's egress.
const DROP_PORT: u16 = 7501;
/// UDP to this port passes untouched (the control of the drop).
const PLAIN_PORT: u16 = 7502;
/// UDP to the service on this port gets mark A (from `mark_a` only).
const MARK_PORT: u16 = 7503;
/// UDP to the service on this port gets the mark of whichever marker runs last.
const ORDER_PORT: u16 = 7504;
/// UDP to the service on this port is not marked (the control of the marks).
const UNMARKED_PORT: u16 = 7505;
/// The mark the policy rule routes to the local service; the other mark has no rule.
const MARK_A: u32 = 0x2a;
const MARK_B: u32 = 0x2b;
const MARK_TABLE: u32 = 100;
const SENDER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
/// Local to the receiver only through the fwmark table.
const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
/// Datagrams sent per flow and phase.
const DATAGRAMS: u64 = 3;

/// Where a link goes among the hook's links.
#[derive(Clone, Copy)]
enum Place<'a> {
    /// Last (no relative link).
    Append,
    Before(&'a Link),
    After(&'a Link),
}

/// Attaches `prog` to the tcx hook its section names on `dev` of `ns` at `place`; a kernel
/// without tcx links is judged by the floor of `attach_type.tcx`.
fn attach(prog: &Program<'_>, ns: &NetNs, dev: &str, place: Place<'_>) -> CaseResult<Link> {
    if !floors::has("attach_type.tcx", true) {
        return Err(floors::missing("attach_type.tcx", "not attached"));
    }
    let _inside = ns.enter()?;
    let ifindex = ns.ifindex(dev)?;
    let (flags, relative) = match place {
        Place::Append => (0, None),
        Place::Before(link) => (libbpf_sys::BPF_F_BEFORE, Some(link)),
        Place::After(link) => (libbpf_sys::BPF_F_AFTER, Some(link)),
    };
    let opts = libbpf_sys::bpf_tcx_opts {
        sz: size_of::<libbpf_sys::bpf_tcx_opts>() as _,
        flags: flags | relative.map_or(0, |_| libbpf_sys::BPF_F_LINK),
        relative_fd: relative.map_or(0, |l| l.as_fd().as_raw_fd() as u32),
        ..Default::default()
    };
    // SAFETY: a loaded program and options of their declared size; `adopt` takes what libbpf
    // returned.
    let link = unsafe {
        link::adopt(libbpf_sys::bpf_program__attach_tcx(
            prog.as_libbpf_object().as_ptr(),
            ifindex as i32,
            &opts,
        ))
    };
    link.map_err(|e| match e {
        // Kernels before tcx know no BPF_TCX_* attach type.
        Errno::EINVAL | Errno::EOPNOTSUPP => {
            floors::missing("attach_type.tcx", format!("creating a tcx link: {e}"))
        }
        e => CaseError::Fail(anyhow::anyhow!("creating a tcx link on {dev}: {e}")),
    })
}

/// The receiver's sockets, one per flow, bound to 0.0.0.0 in namespace b (the caller is in it).
struct Receivers {
    dropped: UdpSocket,
    plain: UdpSocket,
    marked: UdpSocket,
    ordered: UdpSocket,
    unmarked: UdpSocket,
}

impl Receivers {
    fn bind() -> CaseResult<Self> {
        let bind = |port: u16| {
            UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
                .or_error("binding a receiver")
        };
        Ok(Receivers {
            dropped: bind(DROP_PORT)?,
            plain: bind(PLAIN_PORT)?,
            marked: bind(MARK_PORT)?,
            ordered: bind(ORDER_PORT)?,
            unmarked: bind(UNMARKED_PORT)?,
        })
    }
}

/// The flows of one phase: every flow, then a sentinel to each of `sentinels`, from one CPU.
fn send_phase(sender: &UdpSocket, phase: &str, sentinels: &[(Ipv4Addr, u16)]) -> CaseResult {
    let flows = [
        (RECEIVER, DROP_PORT),
        (RECEIVER, PLAIN_PORT),
        (SERVICE, MARK_PORT),
        (SERVICE, ORDER_PORT),
        (SERVICE, UNMARKED_PORT),
    ];
    let _one_cpu = observe::OneCpu::pin()?;
    for i in 0..DATAGRAMS {
        for (addr, port) in flows {
            sender.send_to(format!("{phase}:{port}:{i}").as_bytes(), (addr, port))?;
        }
    }
    for &to in sentinels {
        sender.send_to(b"sentinel", to)?;
    }
    Ok(())
}

fn payloads(phase: &str, port: u16) -> Vec<String> {
    (0..DATAGRAMS)
        .map(|i| format!("{phase}:{port}:{i}"))
        .collect()
}

/// The programs' counters: dropped, marked A, marked B.
fn counts(skel: &TcxSkel<'_>) -> (u64, u64, u64) {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    (
        volatile(&bss.dropped),
        volatile(&bss.marked_a),
        volatile(&bss.marked_b),
    )
}

#[test]
fn drops_marks_and_orders_flows() {
    Case::run(ProgramType::SchedCls, |case| {
        probe::prog_type(ProgramType::SchedCls)?;
        let mut object = MaybeUninit::uninit();
        let mut open = TcxSkelBuilder::default().open(&mut object)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has a .rodata section");
        rodata.drop_port = DROP_PORT;
        rodata.mark_port = MARK_PORT;
        rodata.order_port = ORDER_PORT;
        rodata.mark_a_value = MARK_A;
        rodata.mark_b_value = MARK_B;
        let skel = case.load(open)?;

        let pair = VethPair::new(Cidr::v4(SENDER, 24), Cidr::v4(RECEIVER, 24))?;
        pair.policy_routed_service(SERVICE, RECEIVER, Selector::FwMark(MARK_A), MARK_TABLE)?;
        let (a, b) = (&pair.a, &pair.b);
        let _drop = attach(&skel.progs.tcx_drop, a, VethPair::A_DEV, Place::Append)?;
        let link_a = attach(&skel.progs.mark_a, b, VethPair::B_DEV, Place::Append)?;
        let link_b = attach(
            &skel.progs.mark_b,
            b,
            VethPair::B_DEV,
            Place::Before(&link_a),
        )?;

        let rx = {
            let _inside = b.enter()?;
            Receivers::bind()?
        };
        let sender = {
            let _inside = a.enter()?;
            UdpSocket::bind(SocketAddrV4::new(SENDER, 0)).or_error("binding the sender")?
        };
        // Resolve the neighbour first, so no datagram waits in (or falls out of) ARP's queue.
        sender.send_to(b"warm-up", (RECEIVER, PLAIN_PORT))?;
        assert_eq!(
            observe::texts_before(&rx.plain, "warm-up")?,
            Vec::<String>::new(),
            "datagrams on port {PLAIN_PORT} before the warm-up"
        );

        // mark_b before mark_a: mark_a runs last, ORDER_PORT carries mark A and arrives.
        send_phase(
            &sender,
            "before",
            &[
                (RECEIVER, PLAIN_PORT),
                (SERVICE, MARK_PORT),
                (SERVICE, ORDER_PORT),
            ],
        )?;
        let plain = observe::texts_before(&rx.plain, "sentinel")?;
        let marked = observe::texts_before(&rx.marked, "sentinel")?;
        let ordered = observe::texts_before(&rx.ordered, "sentinel")?;
        let dropped = observe::texts(&observe::queued(&rx.dropped)?);
        let unmarked = observe::texts(&observe::queued(&rx.unmarked)?);
        let before = counts(&skel);
        case.detail(
            "before",
            serde_json::json!({
                "drop_port": dropped, "plain_port": plain, "mark_port": marked,
                "order_port": ordered, "unmarked_port": unmarked, "counters": before,
            }),
        );
        assert_eq!(
            dropped,
            Vec::<String>::new(),
            "datagrams to the dropped port {DROP_PORT}"
        );
        assert_eq!(
            plain,
            payloads("before", PLAIN_PORT),
            "datagrams to {PLAIN_PORT}"
        );
        assert_eq!(
            marked,
            payloads("before", MARK_PORT),
            "datagrams to {SERVICE}:{MARK_PORT}, local only through the fwmark {MARK_A:#x} table"
        );
        assert_eq!(
            ordered,
            payloads("before", ORDER_PORT),
            "datagrams to {SERVICE}:{ORDER_PORT} with mark_b placed before mark_a"
        );
        assert_eq!(
            unmarked,
            Vec::<String>::new(),
            "unmarked datagrams to {SERVICE}:{UNMARKED_PORT} (no route without the mark)"
        );
        assert_eq!(
            before,
            (DATAGRAMS, 2 * (DATAGRAMS + 1), DATAGRAMS + 1),
            "program counters (dropped; marked A: two flows and their sentinels; marked B: one)"
        );

        // mark_b after mark_a: mark_b runs last, ORDER_PORT carries mark B and has no route.
        // Detached by the link, not by closing its fd: a child another test forks meanwhile holds
        // a copy of the fd until it exits, and the hook would still hold mark_b (EEXIST).
        link_b.detach().or_error("detaching mark_b's link")?;
        drop(link_b);
        let _link_b = attach(
            &skel.progs.mark_b,
            b,
            VethPair::B_DEV,
            Place::After(&link_a),
        )?;
        send_phase(
            &sender,
            "after",
            &[(RECEIVER, PLAIN_PORT), (SERVICE, MARK_PORT)],
        )?;
        let plain = observe::texts_before(&rx.plain, "sentinel")?;
        let marked = observe::texts_before(&rx.marked, "sentinel")?;
        let ordered = observe::texts(&observe::queued(&rx.ordered)?);
        let dropped = observe::texts(&observe::queued(&rx.dropped)?);
        let unmarked = observe::texts(&observe::queued(&rx.unmarked)?);
        let after = counts(&skel);
        case.detail(
            "after",
            serde_json::json!({
                "drop_port": dropped, "plain_port": plain, "mark_port": marked,
                "order_port": ordered, "unmarked_port": unmarked, "counters": after,
            }),
        );
        assert_eq!(
            plain,
            payloads("after", PLAIN_PORT),
            "datagrams to {PLAIN_PORT}"
        );
        assert_eq!(
            marked,
            payloads("after", MARK_PORT),
            "datagrams to {SERVICE}:{MARK_PORT} with mark_b placed after mark_a"
        );
        assert_eq!(
            ordered,
            Vec::<String>::new(),
            "datagrams to {SERVICE}:{ORDER_PORT} with mark_b placed after mark_a (mark B: no route)"
        );
        assert_eq!(
            dropped,
            Vec::<String>::new(),
            "datagrams to the dropped port {DROP_PORT}"
        );
        assert_eq!(
            unmarked,
            Vec::<String>::new(),
            "unmarked datagrams to {SERVICE}:{UNMARKED_PORT}"
        );
        assert_eq!(
            (after.0 - before.0, after.1 - before.1, after.2 - before.2),
            (DATAGRAMS, 2 * DATAGRAMS + 1, DATAGRAMS),
            "program counters in the second phase (its one marked sentinel went to {MARK_PORT})"
        );
        Ok(())
    });
}
