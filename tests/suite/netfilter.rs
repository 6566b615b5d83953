//! netfilter (`programs/src/bpf/netfilter.bpf.c`): a BPF netfilter hook, attached with a netfilter
//! link at NF_INET_LOCAL_IN (IPv4) of a fresh network namespace.
//!
//! `drops_one_flow_until_detached`: a sender in the namespace sends [`DATAGRAMS`] datagrams to
//! each of two loopback ports, [`DROP_PORT`] and [`PASS_PORT`], then a sentinel to [`PASS_PORT`],
//! all from one socket on one CPU. While the link is attached the [`PASS_PORT`] socket receives
//! its datagrams and the sentinel, and the [`DROP_PORT`] socket, read without waiting once the
//! sentinel (behind the dropped datagrams on the same path: socket, loopback backlog, LOCAL_IN)
//! arrived, holds nothing. The program's counters are exact: [`DATAGRAMS`] dropped, the passed
//! flow and its sentinel accepted. Dropping the link restores the flow: the same datagrams reach
//! [`DROP_PORT`] before a sentinel sent behind them there, and the counters no longer move.
//!
//! No test-run cases: the behaviour under test is the hook's verdict on real traffic.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{ErrorKind, Link, NF_INET_LOCAL_IN, NFPROTO_IPV4, NetfilterOpts, ProgramType};
use programs::netfilter::NetfilterSkelBuilder;
use testkit::observe::{self, volatile};
use testkit::{Case, CaseError, CaseResult, NetNs, OrError, floors, probe};

/// UDP to this port is dropped at LOCAL_IN.
const DROP_PORT: u16 = 7401;
/// UDP to this port passes (the control flow).
const PASS_PORT: u16 = 7402;
/// Datagrams sent per flow.
const DATAGRAMS: u64 = 3;
/// The hook's priority (any but the first and last, which the kernel keeps for itself).
const PRIORITY: i32 = -128;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Attaches `prog` at IPv4 LOCAL_IN of the calling thread's namespace.
fn attach_local_in(prog: &libbpf_rs::ProgramMut<'_>) -> libbpf_rs::Result<Link> {
    prog.attach_netfilter_with_opts(NetfilterOpts {
        protocol_family: NFPROTO_IPV4,
        hooknum: NF_INET_LOCAL_IN,
        priority: PRIORITY,
        ..Default::default()
    })
}

#[test]
fn drops_one_flow_until_detached() {
    Case::run(ProgramType::Netfilter, |case| {
        probe::prog_type(ProgramType::Netfilter)?;
        let ns = NetNs::new()?;
        let _inside = ns.enter()?;
        let bind = |port: u16| UdpSocket::bind(addr(port)).or_error("binding a receiver");
        let (dropped_rx, passed_rx) = (bind(DROP_PORT)?, bind(PASS_PORT)?);
        let sender = bind(0)?;

        let mut object = MaybeUninit::uninit();
        let mut open = NetfilterSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has a .rodata section")
            .drop_port = DROP_PORT;
        let skel = case.load(open)?;
        if !floors::has("attach_type.netfilter_link", true) {
            return Err(floors::missing(
                "attach_type.netfilter_link",
                "not attached",
            ));
        }
        let link = match attach_local_in(&skel.progs.drop_one_flow) {
            Ok(link) => link,
            // The program type loads, but the kernel has no netfilter links.
            Err(e) if matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::InvalidInput) => {
                return Err(floors::missing(
                    "attach_type.netfilter_link",
                    format!("attaching a netfilter link: {e:#}"),
                ));
            }
            Err(e) => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "attaching a netfilter link: {e:#}"
                )));
            }
        };

        let send_flows = |phase: &str, sentinel_to: u16| -> CaseResult {
            let _one_cpu = observe::OneCpu::pin()?;
            for i in 0..DATAGRAMS {
                for port in [DROP_PORT, PASS_PORT] {
                    sender.send_to(format!("{phase}:{port}:{i}").as_bytes(), addr(port))?;
                }
            }
            sender.send_to(b"sentinel", addr(sentinel_to))?;
            Ok(())
        };
        let expected = |phase: &str, port: u16| -> Vec<String> {
            (0..DATAGRAMS)
                .map(|i| format!("{phase}:{port}:{i}"))
                .collect()
        };
        let counts = || {
            let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
            (volatile(&bss.dropped), volatile(&bss.passed_udp))
        };

        send_flows("attached", PASS_PORT)?;
        let passed = observe::texts_before(&passed_rx, "sentinel")?;
        let dropped = observe::texts(&observe::queued(&dropped_rx)?);
        let attached = counts();
        case.detail("attached_received", serde_json::json!([dropped, passed]));
        case.detail("attached_dropped_passed", attached);
        assert_eq!(
            passed,
            expected("attached", PASS_PORT),
            "datagrams to {PASS_PORT} while attached"
        );
        assert_eq!(
            dropped,
            Vec::<String>::new(),
            "datagrams to {DROP_PORT} while attached"
        );
        assert_eq!(
            attached,
            (DATAGRAMS, DATAGRAMS + 1),
            "the program's counters (dropped; passed, with the sentinel)"
        );

        // Detached by the link, not only by closing its fd: a child another test forks meanwhile
        // holds a copy of the fd until it exits.
        link.detach().or_error("detaching the link")?;
        drop(link);
        send_flows("detached", DROP_PORT)?;
        let dropped = observe::texts_before(&dropped_rx, "sentinel")?;
        let passed = observe::texts(&observe::queued(&passed_rx)?);
        case.detail("detached_received", serde_json::json!([dropped, passed]));
        assert_eq!(
            dropped,
            expected("detached", DROP_PORT),
            "datagrams to {DROP_PORT} after detaching"
        );
        assert_eq!(
            passed,
            expected("detached", PASS_PORT),
            "datagrams to {PASS_PORT} after detaching"
        );
        assert_eq!(counts(), attached, "the program's counters after detaching");
        Ok(())
    });
}
