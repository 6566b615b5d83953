//! netkit_peer (`programs/src/bpf/netkit_peer.bpf.c`): the peer program of a netkit pair
//! (BPF_NETKIT_PEER, Linux 6.7+, `CONFIG_NETKIT`) decides per flow whether what the peer device
//! transmits reaches the primary. (`netkit` covers the primary's program.)
//!
//! `peer_drops_one_flow_until_detached`: a netkit pair between two fresh namespaces, primary
//! `nk0` (`10.24.0.1`, namespace a) and peer `nk1` (`10.24.0.2`, namespace b), L3 mode. A peer
//! link is refused on the peer's own ifindex (EACCES: only the primary manages programs) and
//! created on the primary's. Each phase sends [`DATAGRAMS`] datagrams to each of [`DROP_PORT`] and
//! [`PASS_PORT`] from one socket on one CPU, then sentinels to the ports that must receive:
//! - b → a with the link: the [`PASS_PORT`] datagrams and their sentinel arrive; the
//!   [`DROP_PORT`] socket, read once the sentinel (behind them on the same path) arrived, holds
//!   nothing; the program counted [`DATAGRAMS`] dropped and [`DATAGRAMS`] + 1 passed;
//! - a → b with the link: the primary transmits, the peer program does not run: both flows
//!   arrive and the counters stay;
//! - b → a after the link is dropped: both flows arrive, the counters stay.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use libbpf_rs::ProgramType;
use libbpf_rs::skel::SkelBuilder;
use nix::errno::Errno;
use programs::netkit_peer::{NetkitPeerSkel, NetkitPeerSkelBuilder};
use testkit::netkit::NetkitPair;
use testkit::netlink::Cidr;
use testkit::observe::{self, volatile};
use testkit::{Case, CaseResult, NetNs, OrError, attach_type, probe};

const NETKIT_PEER: &str = "attach_type.netkit_peer";
/// UDP to this port is dropped by the peer program.
const DROP_PORT: u16 = 7601;
/// UDP to this port passes (the control flow).
const PASS_PORT: u16 = 7602;
const PRIMARY_ADDR: Ipv4Addr = Ipv4Addr::new(10, 24, 0, 1);
const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 24, 0, 2);
/// Datagrams per flow and phase.
const DATAGRAMS: u64 = 3;
const SENTINEL: &str = "sentinel";

/// The receivers of one namespace: (drop port, pass port).
fn receivers(ns: &NetNs, addr: Ipv4Addr) -> CaseResult<(UdpSocket, UdpSocket)> {
    let _inside = ns.enter()?;
    let bind = |port| UdpSocket::bind((addr, port)).or_error("binding a receiver");
    Ok((bind(DROP_PORT)?, bind(PASS_PORT)?))
}

/// The flows of one phase to `to`, then a sentinel to each port of `sentinels`, from one CPU.
fn send_phase(sender: &UdpSocket, phase: &str, to: Ipv4Addr, sentinels: &[u16]) -> CaseResult {
    let _one_cpu = observe::OneCpu::pin()?;
    for i in 0..DATAGRAMS {
        for port in [DROP_PORT, PASS_PORT] {
            sender.send_to(format!("{phase}:{port}:{i}").as_bytes(), (to, port))?;
        }
    }
    for &port in sentinels {
        sender.send_to(SENTINEL.as_bytes(), (to, port))?;
    }
    Ok(())
}

fn payloads(phase: &str, port: u16) -> Vec<String> {
    (0..DATAGRAMS)
        .map(|i| format!("{phase}:{port}:{i}"))
        .collect()
}

/// The program's counters: dropped, passed.
fn counts(skel: &NetkitPeerSkel<'_>) -> (u64, u64) {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    (volatile(&bss.dropped), volatile(&bss.passed))
}

/// What the two receivers of a phase got before their sentinels (the drop port's read once the
/// pass port's sentinel arrived when it has none).
fn received(
    (drop_rx, pass_rx): &(UdpSocket, UdpSocket),
    drop_sentinel: bool,
) -> CaseResult<(Vec<String>, Vec<String>)> {
    let pass = observe::texts_before(pass_rx, SENTINEL)?;
    let dropped = if drop_sentinel {
        observe::texts_before(drop_rx, SENTINEL)?
    } else {
        observe::texts(&observe::queued(drop_rx)?)
    };
    Ok((dropped, pass))
}

#[test]
fn peer_drops_one_flow_until_detached() {
    Case::run(ProgramType::SchedCls, |case| {
        probe::prog_type(ProgramType::SchedCls)?;
        let mut object = MaybeUninit::uninit();
        let mut open = NetkitPeerSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata")
            .drop_port = DROP_PORT;
        let skel = case.load(open)?;
        let pair = NetkitPair::new(Cidr::v4(PRIMARY_ADDR, 24), Cidr::v4(PEER_ADDR, 24))?;
        let prog = &skel.progs.peer_verdict;

        let on_peer = testkit::netkit::link(prog, &pair.b, NetkitPair::PEER)?.map(drop);
        case.detail("link_on_peer_ifindex", format!("{on_peer:?}"));
        let on_primary = testkit::netkit::link(prog, &pair.a, NetkitPair::PRIMARY)?;
        let link = attach_type::errno(NETKIT_PEER, "a BPF_NETKIT_PEER link on nk0", || on_primary)?;
        assert_eq!(
            on_peer,
            Err(Errno::EACCES),
            "a BPF_NETKIT_PEER link on the peer's own ifindex"
        );

        let at_a = receivers(&pair.a, PRIMARY_ADDR)?;
        let at_b = receivers(&pair.b, PEER_ADDR)?;
        let sender = |ns: &NetNs, from: Ipv4Addr| -> CaseResult<UdpSocket> {
            let _inside = ns.enter()?;
            UdpSocket::bind(SocketAddrV4::new(from, 0)).or_error("binding a sender")
        };
        let (from_a, from_b) = (sender(&pair.a, PRIMARY_ADDR)?, sender(&pair.b, PEER_ADDR)?);

        // b → a: the peer transmits, its program drops one flow.
        send_phase(&from_b, "peer", PRIMARY_ADDR, &[PASS_PORT])?;
        let (dropped, passed) = received(&at_a, false)?;
        let after_peer = counts(&skel);
        case.detail(
            "peer_to_primary",
            serde_json::json!({"drop_port": dropped, "pass_port": passed, "counters": after_peer}),
        );
        assert_eq!(
            dropped,
            Vec::<String>::new(),
            "datagrams the peer sent to {DROP_PORT}"
        );
        assert_eq!(
            passed,
            payloads("peer", PASS_PORT),
            "datagrams the peer sent to {PASS_PORT}"
        );
        assert_eq!(
            after_peer,
            (DATAGRAMS, DATAGRAMS + 1),
            "program counters (dropped; passed with the sentinel)"
        );

        // a → b: the primary transmits; the peer's program does not run.
        send_phase(&from_a, "primary", PEER_ADDR, &[DROP_PORT, PASS_PORT])?;
        let (to_drop, to_pass) = received(&at_b, true)?;
        case.detail(
            "primary_to_peer",
            serde_json::json!({"drop_port": to_drop, "pass_port": to_pass}),
        );
        assert_eq!(
            to_drop,
            payloads("primary", DROP_PORT),
            "datagrams to {DROP_PORT}"
        );
        assert_eq!(
            to_pass,
            payloads("primary", PASS_PORT),
            "datagrams to {PASS_PORT}"
        );
        assert_eq!(
            counts(&skel),
            after_peer,
            "counters after the primary's datagrams"
        );

        // b → a without the link: nothing is dropped.
        // Detached by the link, not only by closing its fd: a child another test forks meanwhile
        // holds a copy of the fd until it exits.
        link.detach().or_error("detaching the link")?;
        drop(link);
        send_phase(&from_b, "detached", PRIMARY_ADDR, &[DROP_PORT, PASS_PORT])?;
        let (to_drop, to_pass) = received(&at_a, true)?;
        case.detail(
            "detached",
            serde_json::json!({"drop_port": to_drop, "pass_port": to_pass}),
        );
        assert_eq!(
            to_drop,
            payloads("detached", DROP_PORT),
            "datagrams to {DROP_PORT}"
        );
        assert_eq!(
            to_pass,
            payloads("detached", PASS_PORT),
            "datagrams to {PASS_PORT}"
        );
        assert_eq!(counts(&skel), after_peer, "counters once the link is gone");
        Ok(())
    });
}
