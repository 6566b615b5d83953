//! xdp_link (`programs/src/bpf/xdp_link.bpf.c`): XDP attached through a BPF link
//! (BPF_LINK_CREATE with BPF_XDP, Linux 5.9+), which owns the interface's XDP slot until it is
//! dropped, and whose program is swapped in place (BPF_LINK_UPDATE). (`xdp` attaches through
//! netlink.)
//!
//! `link_owns_the_interface_until_dropped`: a veth pair, sender `10.23.0.1` (a), receiver
//! `10.23.0.2` (b); a link puts `drop_port` on b's veth1 (flags 0: the driver's mode). Each phase
//! sends [`DATAGRAMS`] datagrams to [`PORT`] and to [`OTHER_PORT`] from one socket on one CPU,
//! then sentinels to the ports that must receive:
//! - linked: the [`OTHER_PORT`] datagrams arrive, [`PORT`]'s socket, read once the sentinel behind
//!   them arrived, holds nothing; netlink reports the link's program on veth1, and a netlink
//!   attach of another program is refused with EBUSY;
//! - after BPF_LINK_UPDATE to `count_port`: both flows arrive, netlink reports `count_port`,
//!   `count_port` counted the [`PORT`] datagrams and `drop_port` nothing more;
//! - after the link is dropped: veth1 has no XDP program, both flows arrive, no counter moves.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{Program, ProgramType, Xdp, XdpFlags};
use nix::errno::Errno;
use programs::xdp_link::{XdpLinkSkel, XdpLinkSkelBuilder};
use testkit::netlink::Cidr;
use testkit::observe::{self, volatile};
use testkit::raw_load::prog_info;
use testkit::veth::VethPair;
use testkit::{Case, CaseResult, NetNs, OrError, attach_type, errno, probe};

const XDP_LINK: &str = "attach_type.xdp_link";
const A: Ipv4Addr = Ipv4Addr::new(10, 23, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 23, 0, 2);
/// UDP to this port is what the programs drop or count.
const PORT: u16 = 7501;
/// Plain UDP (the control flow).
const OTHER_PORT: u16 = 7502;
/// Datagrams per flow and phase.
const DATAGRAMS: u64 = 3;
const SENTINEL: &str = "sentinel";

/// The flows of one phase, then a sentinel to each port of `sentinels`, from one CPU.
fn send_phase(sender: &UdpSocket, phase: &str, sentinels: &[u16]) -> CaseResult {
    let _one_cpu = observe::OneCpu::pin()?;
    for i in 0..DATAGRAMS {
        for port in [PORT, OTHER_PORT] {
            sender.send_to(format!("{phase}:{port}:{i}").as_bytes(), (B, port))?;
        }
    }
    for &port in sentinels {
        sender.send_to(SENTINEL.as_bytes(), (B, port))?;
    }
    Ok(())
}

fn payloads(phase: &str, port: u16) -> Vec<String> {
    (0..DATAGRAMS)
        .map(|i| format!("{phase}:{port}:{i}"))
        .collect()
}

/// The id of the program netlink reports on veth1 (0: none).
fn reported(ns: &NetNs, ifindex: i32, any: &Program<'_>) -> CaseResult<u32> {
    let _inside = ns.enter()?;
    Xdp::new(any.as_fd())
        .query_id(ifindex, XdpFlags::NONE)
        .or_error("querying veth1's XDP program")
}

fn id(prog: &Program<'_>) -> CaseResult<u32> {
    Ok(prog_info(prog.as_fd())
        .or_error("reading a program's info")?
        .id)
}

/// (dropped by `drop_port`, counted by `count_port`).
fn counts(skel: &XdpLinkSkel<'_>) -> (u64, u64) {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    (volatile(&bss.dropped), volatile(&bss.passed))
}

#[test]
fn link_owns_the_interface_until_dropped() {
    Case::run(ProgramType::Xdp, |case| {
        probe::prog_type(ProgramType::Xdp)?;
        let mut object = MaybeUninit::uninit();
        let mut open = XdpLinkSkelBuilder::default().open(&mut object)?;
        open.maps.rodata_data.as_deref_mut().expect(".rodata").port = PORT;
        let skel = case.load(open)?;
        let (drop_port, count_port) = (&skel.progs.drop_port, &skel.progs.count_port);

        let pair = VethPair::new(Cidr::v4(A, 24), Cidr::v4(B, 24))?;
        let veth1 = pair.b.ifindex(VethPair::B_DEV)? as i32;
        let mut link = {
            let _inside = pair.b.enter()?;
            attach_type::libbpf(XDP_LINK, "BPF_LINK_CREATE with BPF_XDP on veth1", || {
                drop_port.attach_xdp(veth1)
            })?
        };
        let (port_rx, other_rx) = {
            let _inside = pair.b.enter()?;
            let bind = |port| UdpSocket::bind((B, port)).or_error("binding a receiver");
            (bind(PORT)?, bind(OTHER_PORT)?)
        };
        let sender = {
            let _inside = pair.a.enter()?;
            UdpSocket::bind(SocketAddrV4::new(A, 0)).or_error("binding the sender")?
        };

        // Linked: drop_port runs; netlink sees it and cannot replace it.
        send_phase(&sender, "linked", &[OTHER_PORT])?;
        let other = observe::texts_before(&other_rx, SENTINEL)?;
        let at_port = observe::texts(&observe::queued(&port_rx)?);
        let on_veth1 = reported(&pair.b, veth1, count_port)?;
        let netlink = {
            let _inside = pair.b.enter()?;
            Xdp::new(count_port.as_fd()).attach(veth1, XdpFlags::NONE)
        };
        let netlink = netlink.map_err(|e| errno::of_libbpf(&e).map(Errno::from_raw));
        case.detail(
            "linked",
            serde_json::json!({
                "port": at_port, "other_port": other, "counts": counts(&skel),
                "netlink_attach": format!("{netlink:?}"),
            }),
        );
        assert_eq!(at_port, Vec::<String>::new(), "datagrams at {PORT}, linked");
        assert_eq!(
            other,
            payloads("linked", OTHER_PORT),
            "datagrams at {OTHER_PORT}"
        );
        assert_eq!(
            on_veth1,
            id(drop_port)?,
            "the program netlink reports on veth1"
        );
        assert_eq!(
            netlink,
            Err(Some(Errno::EBUSY)),
            "a netlink attach while the link holds veth1"
        );
        assert_eq!(counts(&skel), (DATAGRAMS, 0), "(dropped, counted), linked");

        // Updated: count_port runs in the same link.
        link.update_prog(count_port)
            .map_err(|e| testkit::CaseError::Fail(anyhow::anyhow!("BPF_LINK_UPDATE: {e:#}")))?;
        send_phase(&sender, "updated", &[PORT, OTHER_PORT])?;
        let at_port = observe::texts_before(&port_rx, SENTINEL)?;
        let other = observe::texts_before(&other_rx, SENTINEL)?;
        case.detail(
            "updated",
            serde_json::json!({"port": at_port, "other_port": other, "counts": counts(&skel)}),
        );
        assert_eq!(
            at_port,
            payloads("updated", PORT),
            "datagrams at {PORT}, updated"
        );
        assert_eq!(
            other,
            payloads("updated", OTHER_PORT),
            "datagrams at {OTHER_PORT}"
        );
        assert_eq!(
            reported(&pair.b, veth1, count_port)?,
            id(count_port)?,
            "the program netlink reports on veth1 after the update"
        );
        assert_eq!(
            counts(&skel),
            (DATAGRAMS, DATAGRAMS + 1),
            "(dropped, counted with the sentinel), updated"
        );

        // Dropped: nothing runs on veth1.
        // Detached by the link, not only by closing its fd: a child another test forks meanwhile
        // holds a copy of the fd until it exits.
        link.detach().or_error("detaching the link")?;
        drop(link);
        assert_eq!(
            reported(&pair.b, veth1, count_port)?,
            0,
            "the program netlink reports on veth1 once the link is dropped"
        );
        send_phase(&sender, "unlinked", &[PORT, OTHER_PORT])?;
        let at_port = observe::texts_before(&port_rx, SENTINEL)?;
        let other = observe::texts_before(&other_rx, SENTINEL)?;
        assert_eq!(
            at_port,
            payloads("unlinked", PORT),
            "datagrams at {PORT}, unlinked"
        );
        assert_eq!(
            other,
            payloads("unlinked", OTHER_PORT),
            "datagrams at {OTHER_PORT}"
        );
        assert_eq!(
            counts(&skel),
            (DATAGRAMS, DATAGRAMS + 1),
            "(dropped, counted) once the link is dropped"
        );
        Ok(())
    });
}
