//! netkit (`programs/src/bpf/netkit.bpf.c`): the primary program of a netkit pair, attached with a
//! BPF_NETKIT_PRIMARY link (Linux 6.7+, `CONFIG_NETKIT`), decides per flow whether what the primary
//! device transmits reaches the peer.
//!
//! `primary_drops_one_flow_until_detached`: a netkit pair between two fresh namespaces, primary
//! `nk0` (`10.17.0.1`, namespace a) and peer `nk1` (`10.17.0.2`, namespace b), L3 mode. Each phase
//! sends [`DATAGRAMS`] datagrams to each of [`DROP_PORT`] and [`PASS_PORT`] from one socket on one
//! CPU, then sentinels to the ports that must receive:
//! - a → b with the link: the [`PASS_PORT`] datagrams and their sentinel arrive, the
//!   [`DROP_PORT`] socket, read once the sentinel (behind them on the same path: socket, primary's
//!   transmit, program) arrived, holds nothing; the program counted [`DATAGRAMS`] dropped and
//!   [`DATAGRAMS`] + 1 passed;
//! - b → a with the link: the peer transmits, the primary program does not run: both flows arrive
//!   (sentinels on both ports) and the counters stay;
//! - a → b after the link is dropped: both flows arrive, the counters stay.
//!
//! No test-run cases: the program's verdicts are netkit's (NETKIT_PASS/NETKIT_DROP on a real
//! transmit); its classification is that of `sched_cls`/`tcx`.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{Link, Program, ProgramType};
use nix::errno::Errno;
use programs::netkit::{NetkitSkel, NetkitSkelBuilder};
use testkit::netkit::{FLOOR, NetkitPair};
use testkit::netlink::Cidr;
use testkit::observe::{self, volatile};
use testkit::{Case, CaseError, CaseResult, NetNs, OrError, floors, probe};

/// UDP to this port is dropped by the primary program.
const DROP_PORT: u16 = 7701;
/// UDP to this port passes (the control flow).
const PASS_PORT: u16 = 7702;
const PRIMARY_ADDR: Ipv4Addr = Ipv4Addr::new(10, 17, 0, 1);
const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 17, 0, 2);
/// Datagrams per flow and phase.
const DATAGRAMS: u64 = 3;

/// Attaches `prog` as the primary program of the netkit pair whose primary device is `dev` of
/// `ns`; a kernel without netkit links is judged by the netkit floor.
fn attach_primary(prog: &Program<'_>, ns: &NetNs, dev: &str) -> CaseResult<Link> {
    if !floors::has(FLOOR, true) {
        return Err(floors::missing(FLOOR, "not attached"));
    }
    match testkit::netkit::link(prog, ns, dev)? {
        Ok(link) => Ok(link),
        // Kernels before netkit know no BPF_NETKIT_PRIMARY attach type.
        Err(e @ (Errno::EINVAL | Errno::EOPNOTSUPP)) => Err(floors::missing(
            FLOOR,
            format!("creating a netkit link: {e}"),
        )),
        Err(e) => Err(CaseError::Fail(anyhow::anyhow!(
            "creating a netkit link on {dev}: {e}"
        ))),
    }
}

/// The receivers of one namespace, bound to 0.0.0.0 (the caller is in it).
struct Receivers {
    drop: UdpSocket,
    pass: UdpSocket,
}

impl Receivers {
    fn bind(ns: &NetNs) -> CaseResult<Self> {
        let _inside = ns.enter()?;
        let bind = |port: u16| {
            UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
                .or_error("binding a receiver")
        };
        Ok(Receivers {
            drop: bind(DROP_PORT)?,
            pass: bind(PASS_PORT)?,
        })
    }
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
        sender.send_to(b"sentinel", (to, port))?;
    }
    Ok(())
}

fn payloads(phase: &str, port: u16) -> Vec<String> {
    (0..DATAGRAMS)
        .map(|i| format!("{phase}:{port}:{i}"))
        .collect()
}

/// The program's counters: dropped, passed.
fn counts(skel: &NetkitSkel<'_>) -> (u64, u64) {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    (volatile(&bss.dropped), volatile(&bss.passed))
}

#[test]
fn primary_drops_one_flow_until_detached() {
    Case::run(ProgramType::SchedCls, |case| {
        probe::prog_type(ProgramType::SchedCls)?;
        let mut object = MaybeUninit::uninit();
        let mut open = NetkitSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has a .rodata section")
            .drop_port = DROP_PORT;
        let skel = case.load(open)?;

        let pair = NetkitPair::new(Cidr::v4(PRIMARY_ADDR, 24), Cidr::v4(PEER_ADDR, 24))?;
        let link = attach_primary(&skel.progs.primary_verdict, &pair.a, NetkitPair::PRIMARY)?;
        let (at_a, at_b) = (Receivers::bind(&pair.a)?, Receivers::bind(&pair.b)?);
        let send = |ns: &NetNs, from: Ipv4Addr| -> CaseResult<UdpSocket> {
            let _inside = ns.enter()?;
            UdpSocket::bind(SocketAddrV4::new(from, 0)).or_error("binding a sender")
        };
        let (from_a, from_b) = (send(&pair.a, PRIMARY_ADDR)?, send(&pair.b, PEER_ADDR)?);

        // a → b: the primary transmits, its program drops one flow.
        send_phase(&from_a, "primary", PEER_ADDR, &[PASS_PORT])?;
        let passed = observe::texts_before(&at_b.pass, "sentinel")?;
        let dropped = observe::texts(&observe::queued(&at_b.drop)?);
        let after_primary = counts(&skel);
        case.detail(
            "primary_to_peer",
            serde_json::json!({
                "drop_port": dropped, "pass_port": passed, "counters": after_primary,
            }),
        );
        assert_eq!(
            dropped,
            Vec::<String>::new(),
            "datagrams the primary sent to {DROP_PORT}"
        );
        assert_eq!(
            passed,
            payloads("primary", PASS_PORT),
            "datagrams the primary sent to {PASS_PORT}"
        );
        assert_eq!(
            after_primary,
            (DATAGRAMS, DATAGRAMS + 1),
            "program counters (dropped; passed with the sentinel)"
        );

        // b → a: the peer transmits; the primary's program does not run.
        send_phase(&from_b, "peer", PRIMARY_ADDR, &[DROP_PORT, PASS_PORT])?;
        let to_drop = observe::texts_before(&at_a.drop, "sentinel")?;
        let to_pass = observe::texts_before(&at_a.pass, "sentinel")?;
        case.detail(
            "peer_to_primary",
            serde_json::json!({"drop_port": to_drop, "pass_port": to_pass}),
        );
        assert_eq!(
            to_drop,
            payloads("peer", DROP_PORT),
            "datagrams the peer sent to {DROP_PORT}"
        );
        assert_eq!(
            to_pass,
            payloads("peer", PASS_PORT),
            "datagrams the peer sent to {PASS_PORT}"
        );
        assert_eq!(
            counts(&skel),
            after_primary,
            "program counters after the peer's datagrams"
        );

        // a → b without the link: nothing is dropped.
        // Detached by the link, not only by closing its fd: a child another test forks meanwhile
        // holds a copy of the fd until it exits.
        link.detach().or_error("detaching the link")?;
        drop(link);
        send_phase(&from_a, "detached", PEER_ADDR, &[DROP_PORT, PASS_PORT])?;
        let to_drop = observe::texts_before(&at_b.drop, "sentinel")?;
        let to_pass = observe::texts_before(&at_b.pass, "sentinel")?;
        case.detail(
            "detached",
            serde_json::json!({"drop_port": to_drop, "pass_port": to_pass}),
        );
        assert_eq!(
            to_drop,
            payloads("detached", DROP_PORT),
            "datagrams to {DROP_PORT} once the link is gone"
        );
        assert_eq!(
            to_pass,
            payloads("detached", PASS_PORT),
            "datagrams to {PASS_PORT} once the link is gone"
        );
        assert_eq!(
            counts(&skel),
            after_primary,
            "program counters once the link is gone"
        );
        Ok(())
    });
}
