//! xdp_devmap (`programs/src/bpf/xdp_devmap.bpf.c`): an XDP program in a DEVMAP entry
//! (BPF_XDP_DEVMAP, Linux 5.8+) runs on the frames redirected through that entry, between the
//! redirect and the target device's transmit. (The CPUMAP twin, BPF_XDP_CPUMAP, is
//! `xdp_redirect::redirects_through_cpumap`.)
//!
//! `entry_program_answers_redirected_frames`: a veth pair, sender `10.22.0.1` (a) and `10.22.0.2`
//! (b). `redirect_udp` on b's veth1 (native) redirects UDP to [`ECHO_PORT`] through the DEVMAP's
//! entry, which names veth1 itself and carries `echo_back`: the frames go back out of veth1 to a.
//! `echo_back` turns each into its answer (addresses and ports swapped) or, for payloads starting
//! with `x`, drops it. From one socket on one CPU, a sends [`DATAGRAMS`] datagrams and as many
//! `x` ones, interleaved, then a sentinel: its socket receives exactly the answers to the
//! datagrams, from b's [`ECHO_PORT`], before the sentinel's (without the entry's program the
//! frames would reach a addressed to b and be discarded, so each answer is the program's doing);
//! b's socket on [`ECHO_PORT`] received nothing (read once the sentinel was back: the frames
//! never reached b's stack). The entry's program saw veth1 as both the ingress and the egress
//! interface (`egress_ifindex` is the devmap program's own field), and the counters are exact.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::xdp_devmap::XdpDevmapSkelBuilder;
use testkit::netlink::Cidr;
use testkit::observe::{self, volatile};
use testkit::veth::VethPair;
use testkit::xdp::{Mode, XdpAttachment};
use testkit::{Case, OrError, attach_type, probe};

const DEVMAP_PROG: &str = "attach_type.xdp_devmap";
const A: Ipv4Addr = Ipv4Addr::new(10, 22, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 22, 0, 2);
/// UDP to this port is redirected through the DEVMAP entry.
const ECHO_PORT: u16 = 7401;
/// Plain UDP (the warm-up that resolves b's address).
const PLAIN_PORT: u16 = 7402;
const SENDER_PORT: u16 = 7400;
/// Datagrams answered (and as many dropped by the entry's program).
const DATAGRAMS: u64 = 3;
const SENTINEL: &[u8] = b"sentinel";

/// The datagrams of the case: `echo:i` (answered) and `x:i` (dropped), interleaved.
fn datagrams() -> Vec<String> {
    (0..DATAGRAMS)
        .flat_map(|i| [format!("echo:{i}"), format!("x:{i}")])
        .collect()
}

#[test]
fn entry_program_answers_redirected_frames() {
    Case::run(ProgramType::Xdp, |case| {
        probe::prog_type(ProgramType::Xdp)?;
        probe::map_type(MapType::Devmap, "map_type.devmap")?;
        let mut object = MaybeUninit::uninit();
        let mut open = XdpDevmapSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata")
            .echo_port = ECHO_PORT;
        let skel = attach_type::load(case, DEVMAP_PROG, open)?;

        let pair = VethPair::new(Cidr::v4(A, 24), Cidr::v4(B, 24))?;
        let veth1 = pair.b.ifindex(VethPair::B_DEV)?;
        // struct bpf_devmap_val: the target ifindex, then the entry program's fd.
        let value = [
            veth1.to_ne_bytes(),
            skel.progs.echo_back.as_fd().as_raw_fd().to_ne_bytes(),
        ]
        .concat();
        {
            // A DEVMAP resolves the ifindex in the updating task's namespace.
            let _inside = pair.b.enter()?;
            attach_type::libbpf(DEVMAP_PROG, "a DEVMAP entry with a program", || {
                skel.maps
                    .tx_ports
                    .update(&0u32.to_ne_bytes(), &value, MapFlags::ANY)
            })?;
        }
        let _redirect = XdpAttachment::veth(
            &pair.b,
            VethPair::B_DEV,
            &skel.progs.redirect_udp,
            Mode::Native,
        )?;
        let _peer =
            XdpAttachment::veth(&pair.a, VethPair::A_DEV, &skel.progs.xdp_pass, Mode::Native)?;

        let (echo_rx, plain_rx) = {
            let _inside = pair.b.enter()?;
            let bind = |port| UdpSocket::bind((B, port)).or_error("binding b's receiver");
            (bind(ECHO_PORT)?, bind(PLAIN_PORT)?)
        };
        let sender = {
            let _inside = pair.a.enter()?;
            let s = UdpSocket::bind(SocketAddrV4::new(A, SENDER_PORT))
                .or_error("binding the sender")?;
            testkit::sockopt::no_udp_checksum(&s).or_error("SO_NO_CHECK")?;
            s
        };

        sender.send_to(b"warm-up", (B, PLAIN_PORT))?;
        assert_eq!(
            observe::datagrams_before(&plain_rx, b"warm-up")?.len(),
            0,
            "datagrams at b before the warm-up"
        );
        let sent = datagrams();
        {
            let _one_cpu = observe::OneCpu::pin()?;
            for d in &sent {
                sender.send_to(d.as_bytes(), (B, ECHO_PORT))?;
            }
            sender.send_to(SENTINEL, (B, ECHO_PORT))?;
        }
        let answers = observe::datagrams_before(&sender, SENTINEL)?;
        let at_b = observe::queued(&echo_rx)?;
        case.detail("answers", observe::texts(&answers));
        case.detail("at_b", observe::texts(&at_b));
        let answered: Vec<String> = sent
            .iter()
            .filter(|d| !d.starts_with('x'))
            .cloned()
            .collect();
        assert_eq!(
            observe::texts(&answers),
            answered,
            "answers a received before the sentinel's"
        );
        for (_, from) in &answers {
            assert_eq!(
                *from,
                SocketAddr::from((B, ECHO_PORT)),
                "an answer's source"
            );
        }
        assert_eq!(
            observe::texts(&at_b),
            Vec::<String>::new(),
            "datagrams at b's {ECHO_PORT}"
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let seen = serde_json::json!({
            "redirected": volatile(&bss.redirected),
            "devmap_echoed": volatile(&bss.devmap_echoed),
            "devmap_dropped": volatile(&bss.devmap_dropped),
            "ingress_ifindex": volatile(&bss.devmap_ingress_ifindex),
            "egress_ifindex": volatile(&bss.devmap_egress_ifindex),
        });
        case.detail("program", &seen);
        assert_eq!(
            seen,
            serde_json::json!({
                "redirected": 2 * DATAGRAMS + 1, "devmap_echoed": DATAGRAMS + 1,
                "devmap_dropped": DATAGRAMS, "ingress_ifindex": veth1, "egress_ifindex": veth1,
            }),
            "the programs' counters and the interfaces the entry's program saw"
        );
        Ok(())
    });
}
