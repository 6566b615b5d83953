//! xdp_redirect (`programs/src/bpf/xdp_redirect.bpf.c`): XDP programs that redirect frames
//! through a DEVMAP and a CPUMAP, proven by what arrives. (Its siblings: `xdp_adjust`,
//! `xdp_metadata`.)
//!
//! Every sender sets SO_NO_CHECK (UDP checksum 0): a frame that leaves XDP as an `xdp_frame`
//! (redirected) loses veth's checksum offload state, and a partial checksum would then be
//! verified and dropped (see `xdp.rs`). The flows of a case go from one socket, or one thread
//! pinned to one CPU, so a sentinel sent last on a flow's path settles every frame ahead of it.
//!
//! `redirects_through_devmap`: three namespaces, a (`10.14.0.1`) — b (`10.14.0.2`, and
//! `10.15.0.1` on a second pair) — c (`10.15.0.2`); a routes 10.15.0.0/24 via b. `xdp_redirect_dev`
//! on b's veth1 (native) gives datagrams to REDIRECT_PORT the MACs of the second pair and
//! redirects them to veth2 through the DEVMAP; `xdp_pass` on veth3 (its peer, in c) lets veth
//! take them. c's socket receives them; AF_PACKET captures show each frame arriving in c is the
//! frame a sent with only the MACs changed (TTL and checksum untouched: not routed by b's stack),
//! and b's veth1 capture, read up to a sentinel that b's program passes, holds none of them.
//!
//! `redirects_through_cpumap`: a veth pair; the sender pins itself to CPU S; `xdp_redirect_cpu`
//! redirects datagrams to CPU_PORT to the CPUMAP entry of CPU T (another CPU when there is one),
//! whose own program (`cpumap_rewrite`, BPF_XDP_CPUMAP) readdresses them to REWRITTEN_PORT. They
//! arrive there, not on CPU_PORT, and the connected receiving socket's SO_INCOMING_CPU is T: the
//! CPUMAP entry's kthread, bound to T, delivered them. A passed flow's CPU is recorded, not
//! judged: veth's NAPI runs where it was first scheduled, usually S, but a frame the kernel sends
//! from a on another CPU at that moment (neighbour or IPv6 traffic) moves it there. (Under a
//! one-CPU VM, S = T: the rewrite, which only the CPUMAP entry's program does, still proves the
//! path.)
//!
//! The object's CPUMAP entries carry a program (8-byte values), which kernels before 5.9 refuse at
//! load (the matrix starts at 5.10).
//!
//! `test_run_redirect_rewrites_macs`: BPF_PROG_TEST_RUN of `xdp_redirect_dev` on a crafted frame:
//! the verdict (XDP_REDIRECT), the frame handed back with the MACs rewritten, and the counter.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::libbpf_sys::{self, XDP_REDIRECT};
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::xdp_redirect::{XdpRedirectSkel, XdpRedirectSkelBuilder};
use testkit::capture::{Capture, Frame, hwaddr};
use testkit::netlink::{Cidr, Route};
use testkit::observe::{self, volatile};
use testkit::packet::{Flow, hex};
use testkit::test_run::Row;
use testkit::veth::VethPair;
use testkit::xdp::{Mode, XdpAttachment};
use testkit::{Case, CaseError, CaseResult, NetNs, OrError, floors, probe, sockopt};

/// Plain UDP, untouched (warm-up, passed flows, the local sentinel).
const PLAIN_PORT: u16 = 7605;
/// UDP to this port is redirected through the DEVMAP.
const REDIRECT_PORT: u16 = 7606;
/// UDP to this port is redirected through the CPUMAP ...
const CPU_PORT: u16 = 7607;
/// ... whose entry's program readdresses it here.
const REWRITTEN_PORT: u16 = 7608;
/// The senders' UDP source port.
const SENDER_PORT: u16 = 7600;
/// Datagrams per flow.
const DATAGRAMS: u64 = 3;
const SENTINEL: &[u8] = b"sentinel";
/// Sender and receiver of the CPUMAP case and the test-run frame.
const SENDER: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 1);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 2);

/// What the object's constants are set to besides the ports.
#[derive(Default)]
struct Setup {
    /// `redirect_src_mac`, `redirect_dst_mac`.
    macs: ([u8; 6], [u8; 6]),
    cpu_target: u32,
}

fn open_and_load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    setup: Setup,
) -> CaseResult<XdpRedirectSkel<'obj>> {
    probe::helper(
        ProgramType::Xdp,
        libbpf_sys::BPF_FUNC_redirect_map,
        "bpf_redirect_map",
    )?;
    probe::map_type(MapType::Devmap, "map_type.devmap")?;
    probe::map_type(MapType::Cpumap, "map_type.cpumap")?;
    case.open_load(XdpRedirectSkelBuilder::default(), object, |open| {
        let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
        rodata.redirect_port = REDIRECT_PORT;
        rodata.cpu_port = CPU_PORT;
        rodata.cpu_rewritten_port = REWRITTEN_PORT;
        rodata.cpu_target = setup.cpu_target;
        (rodata.redirect_src_mac, rodata.redirect_dst_mac) = setup.macs;
    })
}

/// The programs' counters.
#[derive(Debug, Default, PartialEq)]
struct Counters {
    redirected_dev: u64,
    redirected_cpu: u64,
    cpumap_rewritten: u64,
}

impl Counters {
    fn read(skel: &XdpRedirectSkel<'_>) -> Self {
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        Counters {
            redirected_dev: volatile(&bss.redirected_dev),
            redirected_cpu: volatile(&bss.redirected_cpu),
            cpumap_rewritten: volatile(&bss.cpumap_rewritten),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "redirected_dev": self.redirected_dev, "redirected_cpu": self.redirected_cpu,
            "cpumap_rewritten": self.cpumap_rewritten,
        })
    }
}

/// A UDP socket bound to `addr` that sends without checksums (SO_NO_CHECK).
fn sender(addr: SocketAddrV4) -> CaseResult<UdpSocket> {
    let sock = UdpSocket::bind(addr).or_error("binding the sender")?;
    sockopt::no_udp_checksum(&sock).or_error("SO_NO_CHECK")?;
    Ok(sock)
}

/// The CPU that last delivered a packet to a connected UDP socket (SO_INCOMING_CPU).
fn incoming_cpu(sock: &UdpSocket) -> CaseResult<u32> {
    rustix::net::sockopt::socket_incoming_cpu(sock).or_error("SO_INCOMING_CPU")
}

fn payloads(flow: &str) -> Vec<String> {
    (0..DATAGRAMS).map(|i| format!("{flow}:{i}")).collect()
}

/// The datagrams on `sock` before the one whose payload is `sentinel`, and their sources.
fn before(sock: &UdpSocket, sentinel: &[u8]) -> CaseResult<(Vec<Vec<u8>>, Vec<SocketAddr>)> {
    Ok(observe::datagrams_before(sock, sentinel)?
        .into_iter()
        .unzip())
}

fn texts(datagrams: &[Vec<u8>]) -> Vec<String> {
    datagrams
        .iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect()
}

/// Namespace c of the DEVMAP case, behind b on a second veth pair.
const B2: Ipv4Addr = Ipv4Addr::new(10, 15, 0, 1);
const C: Ipv4Addr = Ipv4Addr::new(10, 15, 0, 2);
const A_DEVMAP: Ipv4Addr = Ipv4Addr::new(10, 14, 0, 1);
const B_DEVMAP: Ipv4Addr = Ipv4Addr::new(10, 14, 0, 2);

#[test]
fn redirects_through_devmap() {
    Case::run(ProgramType::Xdp, |case| {
        let pair = VethPair::new(Cidr::v4(A_DEVMAP, 24), Cidr::v4(B_DEVMAP, 24))?;
        let c = NetNs::new()?;
        let (a, b) = (&pair.a, &pair.b);
        b.add_veth("veth2", "veth3", &c)?;
        b.add_address("veth2", Cidr::v4(B2, 24))?;
        c.add_address("veth3", Cidr::v4(C, 24))?;
        b.link_up("veth2")?;
        c.link_up("veth3")?;
        a.add_route(&Route::to(Cidr::v4(Ipv4Addr::new(10, 15, 0, 0), 24)).via(B_DEVMAP))?;
        c.add_route(&Route::to(Cidr::v4(Ipv4Addr::new(10, 14, 0, 0), 24)).via(B2))?;
        let veth2_mac = {
            let _inside = b.enter()?;
            hwaddr("veth2")?
        };
        let veth3_mac = {
            let _inside = c.enter()?;
            hwaddr("veth3")?
        };

        let mut object = MaybeUninit::uninit();
        let setup = Setup {
            macs: (veth2_mac, veth3_mac),
            ..Setup::default()
        };
        let skel = open_and_load(case, &mut object, setup)?;
        let veth2 = b.ifindex("veth2")?;
        {
            // A DEVMAP resolves the ifindex in the updating task's namespace.
            let _inside = b.enter()?;
            skel.maps
                .tx_port
                .update(&0u32.to_ne_bytes(), &veth2.to_ne_bytes(), MapFlags::ANY)?;
        }
        let _redirect = XdpAttachment::veth(
            b,
            VethPair::B_DEV,
            &skel.progs.xdp_redirect_dev,
            Mode::Native,
        )?;
        let _target_peer = XdpAttachment::veth(&c, "veth3", &skel.progs.xdp_pass, Mode::Native)?;

        let (c_rx, c_capture) = {
            let _inside = c.enter()?;
            (
                UdpSocket::bind(SocketAddrV4::new(C, REDIRECT_PORT))
                    .or_error("binding c's receiver")?,
                Capture::open(c.ifindex("veth3")?)?,
            )
        };
        let (b_rx, b_capture) = {
            let _inside = b.enter()?;
            (
                UdpSocket::bind(SocketAddrV4::new(B_DEVMAP, PLAIN_PORT))
                    .or_error("binding b's receiver")?,
                Capture::open(b.ifindex(VethPair::B_DEV)?)?,
            )
        };
        let (udp, a_capture) = {
            let _inside = a.enter()?;
            (
                sender(SocketAddrV4::new(A_DEVMAP, SENDER_PORT))?,
                Capture::open(a.ifindex(VethPair::A_DEV)?)?,
            )
        };

        // b's address resolves the gateway; the program passes it (and ARP).
        udp.send_to(b"warm-up", (B_DEVMAP, PLAIN_PORT))?;
        assert_eq!(
            before(&b_rx, b"warm-up")?.0.len(),
            0,
            "datagrams at b before the warm-up"
        );
        {
            let _one_cpu = observe::OneCpu::pin()?;
            for i in 0..DATAGRAMS {
                udp.send_to(format!("redirect:{i}").as_bytes(), (C, REDIRECT_PORT))?;
            }
            udp.send_to(SENTINEL, (C, REDIRECT_PORT))?;
            udp.send_to(SENTINEL, (B_DEVMAP, PLAIN_PORT))?;
        }

        let (at_c, sources) = before(&c_rx, SENTINEL)?;
        let (at_b, _) = before(&b_rx, SENTINEL)?;
        case.detail("received_in_c", texts(&at_c));
        assert_eq!(
            texts(&at_c),
            payloads("redirect"),
            "datagrams at {C}:{REDIRECT_PORT}"
        );
        for from in &sources {
            assert_eq!(*from, SocketAddr::from((A_DEVMAP, SENDER_PORT)), "source");
        }
        assert_eq!(texts(&at_b), Vec::<String>::new(), "datagrams at b");

        let is_redirect_sentinel =
            |f: &Frame| f.dport() == REDIRECT_PORT && f.bytes.ends_with(SENTINEL);
        let sent: Vec<Frame> = observe::until_sentinel(
            "the sentinel's frame leaving a",
            |wait| a_capture.next(wait),
            |f| f.outgoing && is_redirect_sentinel(f),
        )?
        .into_iter()
        .filter(|f| f.outgoing && f.dport() == REDIRECT_PORT)
        .collect();
        let arrived: Vec<Frame> = observe::until_sentinel(
            "the sentinel's frame arriving in c",
            |wait| c_capture.next(wait),
            |f| !f.outgoing && is_redirect_sentinel(f),
        )?
        .into_iter()
        .filter(|f| !f.outgoing && f.dport() == REDIRECT_PORT)
        .collect();
        let at_veth1: Vec<Frame> = observe::until_sentinel(
            "b's sentinel frame on veth1",
            |wait| b_capture.next(wait),
            |f| !f.outgoing && f.dport() == PLAIN_PORT && f.bytes.ends_with(SENTINEL),
        )?
        .into_iter()
        .filter(|f| f.dport() == REDIRECT_PORT)
        .collect();
        case.detail("captured_leaving_a", sent.len());
        case.detail("captured_arriving_in_c", arrived.len());
        case.detail("captured_on_b_veth1", at_veth1.len());
        if let (Some(out), Some(came)) = (sent.first(), arrived.first()) {
            case.detail("first_frame_leaving_a", hex(&out.bytes));
            case.detail("first_frame_arriving_in_c", hex(&came.bytes));
        }
        assert_eq!(sent.len(), DATAGRAMS as usize, "frames leaving a");
        assert_eq!(arrived.len(), DATAGRAMS as usize, "frames arriving in c");
        for (out, came) in sent.iter().zip(&arrived) {
            let mut expected = out.bytes.clone();
            expected[..6].copy_from_slice(&veth3_mac);
            expected[6..12].copy_from_slice(&veth2_mac);
            assert_eq!(
                hex(&came.bytes),
                hex(&expected),
                "a frame in c against the frame a sent, with veth2 → veth3 MACs"
            );
        }
        assert_eq!(
            at_veth1.len(),
            0,
            "frames to {REDIRECT_PORT} that b's stack saw on veth1"
        );

        let counters = Counters::read(&skel);
        case.detail("counters", counters.json());
        assert_eq!(
            counters,
            Counters {
                redirected_dev: DATAGRAMS + 1,
                ..Counters::default()
            },
            "program counters (the flow and its sentinel redirected)"
        );
        Ok(())
    });
}

#[test]
fn redirects_through_cpumap() {
    Case::run(ProgramType::Xdp, |case| {
        let cpus: Vec<usize> = observe::OneCpu::allowed()?.into_iter().take(2).collect();
        let sender_cpu = cpus[0];
        let target_cpu = *cpus.last().expect("a thread runs on some CPU");
        case.detail("sender_cpu", sender_cpu);
        case.detail("target_cpu", target_cpu);

        let mut object = MaybeUninit::uninit();
        let setup = Setup {
            cpu_target: target_cpu as u32,
            ..Setup::default()
        };
        let skel = open_and_load(case, &mut object, setup)?;
        if !floors::has("attach_type.xdp_cpumap", true) {
            return Err(floors::missing("attach_type.xdp_cpumap", "not attached"));
        }
        // struct bpf_cpumap_val: the queue size, then the entry program's fd.
        let value = [
            256u32.to_ne_bytes(),
            skel.progs.cpumap_rewrite.as_fd().as_raw_fd().to_ne_bytes(),
        ]
        .concat();
        let key = (target_cpu as u32).to_ne_bytes();
        match skel.maps.cpus.update(&key, &value, MapFlags::ANY) {
            Ok(()) => {}
            // Kernels before CPUMAP programs take no program fd in the entry.
            Err(e) if matches!(e.kind(), libbpf_rs::ErrorKind::InvalidInput) => {
                return Err(floors::missing(
                    "attach_type.xdp_cpumap",
                    format!("a CPUMAP entry with a program: {e:#}"),
                ));
            }
            Err(e) => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "filling the CPUMAP entry of CPU {target_cpu}: {e:#}"
                )));
            }
        }

        let pair = VethPair::new(Cidr::v4(SENDER, 24), Cidr::v4(RECEIVER, 24))?;
        let _xdp = XdpAttachment::veth(
            &pair.b,
            VethPair::B_DEV,
            &skel.progs.xdp_redirect_cpu,
            Mode::Native,
        )?;
        let sender_addr = SocketAddrV4::new(SENDER, SENDER_PORT);
        let (cpu_rx, rewritten_rx, plain_rx) = {
            let _inside = pair.b.enter()?;
            // Connected: UDP notes the incoming CPU of connected sockets only.
            let connected = |port: u16| -> CaseResult<UdpSocket> {
                let s = UdpSocket::bind(SocketAddrV4::new(RECEIVER, port))
                    .or_error("binding a receiver")?;
                s.connect(sender_addr).or_error("connecting a receiver")?;
                Ok(s)
            };
            (
                UdpSocket::bind(SocketAddrV4::new(RECEIVER, CPU_PORT))
                    .or_error("binding a receiver")?,
                connected(REWRITTEN_PORT)?,
                connected(PLAIN_PORT)?,
            )
        };
        let udp = {
            let _inside = pair.a.enter()?;
            sender(sender_addr)?
        };

        {
            let _pinned = observe::OneCpu::on(sender_cpu)?;
            udp.send_to(b"warm-up", (RECEIVER, PLAIN_PORT))?;
            assert_eq!(
                before(&plain_rx, b"warm-up")?.0.len(),
                0,
                "datagrams at {PLAIN_PORT} before the warm-up"
            );
            for i in 0..DATAGRAMS {
                udp.send_to(format!("cpu:{i}").as_bytes(), (RECEIVER, CPU_PORT))?;
                udp.send_to(format!("plain:{i}").as_bytes(), (RECEIVER, PLAIN_PORT))?;
            }
            udp.send_to(SENTINEL, (RECEIVER, CPU_PORT))?;
            udp.send_to(SENTINEL, (RECEIVER, PLAIN_PORT))?;
        }

        let (rewritten, _) = before(&rewritten_rx, SENTINEL)?;
        let (plain, _) = before(&plain_rx, SENTINEL)?;
        let unrewritten = observe::queued(&cpu_rx)?;
        let cpus_seen = (incoming_cpu(&rewritten_rx)?, incoming_cpu(&plain_rx)?);
        case.detail(
            "received",
            serde_json::json!({
                "rewritten_port": texts(&rewritten), "cpu_port": observe::texts(&unrewritten),
                "plain_port": texts(&plain),
                "incoming_cpu_rewritten_plain": cpus_seen,
            }),
        );
        assert_eq!(
            texts(&rewritten),
            payloads("cpu"),
            "datagrams readdressed to {REWRITTEN_PORT} by the CPUMAP entry's program"
        );
        assert_eq!(
            observe::texts(&unrewritten),
            Vec::<String>::new(),
            "datagrams at {CPU_PORT} (all went through the CPUMAP entry)"
        );
        assert_eq!(
            texts(&plain),
            payloads("plain"),
            "datagrams at {PLAIN_PORT}"
        );
        assert_eq!(
            cpus_seen.0, target_cpu as u32,
            "the CPU that delivered the redirected flow (SO_INCOMING_CPU)"
        );

        let counters = Counters::read(&skel);
        case.detail("counters", counters.json());
        assert_eq!(
            counters,
            Counters {
                redirected_cpu: DATAGRAMS + 1,
                cpumap_rewritten: DATAGRAMS + 1,
                ..Counters::default()
            },
            "program counters (the flow and its sentinel)"
        );
        Ok(())
    });
}

/// The MACs `xdp_redirect_dev` writes in the test-run row.
const TEST_RUN_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const TEST_RUN_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x02];

#[test]
fn test_run_redirect_rewrites_macs() {
    let frame = Flow {
        src: SENDER,
        dst: RECEIVER,
        sport: SENDER_PORT,
        payload: b"payload",
    }
    .udp4(REDIRECT_PORT);
    let mut out = frame.clone();
    out[..6].copy_from_slice(&TEST_RUN_DST_MAC);
    out[6..12].copy_from_slice(&TEST_RUN_SRC_MAC);
    let row = Row::new(frame, XDP_REDIRECT as i32)
        .bytes(out)
        .counters([("redirected_dev", 1)]);
    row.case(ProgramType::Xdp, |case, row| {
        let mut object = MaybeUninit::uninit();
        let setup = Setup {
            macs: (TEST_RUN_SRC_MAC, TEST_RUN_DST_MAC),
            ..Setup::default()
        };
        let skel = open_and_load(case, &mut object, setup)?;
        // A filled slot (loopback is in every namespace): the helper then answers XDP_REDIRECT;
        // a test run does not transmit.
        skel.maps
            .tx_port
            .update(&0u32.to_ne_bytes(), &1u32.to_ne_bytes(), MapFlags::ANY)?;
        row.run_counted(case, &skel.progs.xdp_redirect_dev, || {
            Ok(vec![(
                "redirected_dev",
                Counters::read(&skel).redirected_dev,
            )])
        })
        .map(drop)
    });
}
