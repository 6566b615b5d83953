//! xdp_features (`programs/src/bpf/xdp_features.bpf.c`): XDP programs that rewrite frames
//! (bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_adjust_meta) and redirect them through a
//! DEVMAP and a CPUMAP, proven by what arrives.
//!
//! Every sender sets SO_NO_CHECK (UDP checksum 0): a frame that leaves XDP as an `xdp_frame`
//! (redirected) loses veth's checksum offload state, and a partial checksum would then be
//! verified and dropped (see `xdp.rs`). The flows of a case go from one socket, or one thread
//! pinned to one CPU, so a sentinel sent last on a flow's path settles every frame ahead of it.
//!
//! `rewrites_frames_{native,generic}`: a veth pair, sender `10.13.0.1` (a), receiver `10.13.0.2`
//! (b), `xdp_rewrite` on the receiver's veth (native or generic mode) and `tc_read_meta` on its tc
//! ingress. [`DATAGRAMS`] of each flow, then a sentinel on each flow that arrives:
//! - IPIP: a raw IPPROTO_IPIP socket in a sends inner packets `10.13.0.1:INNER_SPORT →
//!   10.13.0.2:STRIP_PORT`. The program strips the outer header: the receiver's UDP socket gets
//!   the inner datagrams from `10.13.0.1:INNER_SPORT` (only the inner header names that port), and
//!   a raw IPPROTO_IPIP socket in b, which sees every IPIP packet the stack gets, gets none.
//! - trim: each datagram to TRIM_PORT arrives without its last [`CUT`] bytes (so the program
//!   fixed the IP and UDP lengths too, or the stack would drop it).
//! - metadata: datagrams to the service `10.97.0.1:META_PORT` whose first 4 bytes are the mark
//!   [`MARK_A`] or [`MARK_B`] (native byte order). `xdp_rewrite` copies those bytes into the
//!   metadata, `tc_read_meta` turns the metadata into skb->mark, and the fwmark rule makes the
//!   service local for mark A only: the A datagrams arrive, the B ones do not, and neither do
//!   datagrams with the A bytes to NO_META_PORT (no metadata there, so no mark).
//!
//! The programs' counters are exact.
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
//! arrive there, not on CPU_PORT, and the connected receiving socket's SO_INCOMING_CPU is T,
//! while a passed flow's socket reports S. (Under a one-CPU VM, S = T: the rewrite, which only
//! the CPUMAP entry's program does, still proves the path.)
//!
//! The object loads whole in every case; its CPUMAP entries carry a program (8-byte values), which
//! kernels before 5.9 refuse at load (the matrix starts at 5.10).
//!
//! `test_run_*` (rstest table): BPF_PROG_TEST_RUN of `xdp_rewrite` and `xdp_redirect_dev` on
//! crafted frames: the verdict, the frame handed back byte for byte (a trimmed frame against one
//! built with the shorter payload: lengths and a valid IP header checksum; from 5.15 behind the
//! metadata the program added) and the counters.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::libbpf_sys::{XDP_PASS, XDP_REDIRECT};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramInput, ProgramType, TC_INGRESS, TcHookBuilder};
use libbpf_rs::{XdpFlags, libbpf_sys::bpf_cpumap_val};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use programs::xdp_features::{XdpFeaturesSkel, XdpFeaturesSkelBuilder};
use rstest::rstest;
use testkit::capture::{Capture, Frame, hwaddr};
use testkit::netlink::{Cidr, Route, Selector};
use testkit::observe::{self, volatile};
use testkit::packet::hex;
use testkit::packet::{self, ETH_HLEN, ETH_P_IP, IPPROTO_UDP, Ipv4};
use testkit::veth::VethPair;
use testkit::xdp::XdpAttachment;
use testkit::{Case, CaseError, CaseResult, NetNs, OrError, floors, probe};

/// UDP to this port (inside IPIP) is what the stripped packets carry.
const STRIP_PORT: u16 = 7601;
/// UDP to this port loses its last [`CUT`] bytes.
const TRIM_PORT: u16 = 7602;
/// UDP to this port gets its first 4 payload bytes as XDP metadata.
const META_PORT: u16 = 7603;
/// UDP to this port gets no metadata (the control of the marks).
const NO_META_PORT: u16 = 7604;
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
/// The source port of the inner (IPIP) datagrams.
const INNER_SPORT: u16 = 7609;
/// What `xdp_rewrite` cuts off a TRIM_PORT datagram (TRIM_BYTES in the program).
const CUT: &[u8] = b"~cut";
/// The fwmark the policy rule routes to the local service; mark B has no rule.
const MARK_A: u32 = 0x2a;
const MARK_B: u32 = 0x2b;
const MARK_TABLE: u32 = 100;
/// Local to the receiver only through the fwmark table.
const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 1);
/// Datagrams per flow.
const DATAGRAMS: u64 = 3;
const SENTINEL: &[u8] = b"sentinel";
/// Sender and receiver of the one-pair cases and the test-run frames.
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
) -> CaseResult<XdpFeaturesSkel<'obj>> {
    // The object loads only whole: every helper and map type of all its programs.
    for (helper, name) in [
        (libbpf_sys::BPF_FUNC_xdp_adjust_head, "bpf_xdp_adjust_head"),
        (libbpf_sys::BPF_FUNC_xdp_adjust_tail, "bpf_xdp_adjust_tail"),
        (libbpf_sys::BPF_FUNC_xdp_adjust_meta, "bpf_xdp_adjust_meta"),
        (libbpf_sys::BPF_FUNC_redirect_map, "bpf_redirect_map"),
    ] {
        probe::helper(ProgramType::Xdp, helper, name)?;
    }
    probe::prog_type(ProgramType::SchedCls)?;
    probe::map_type(MapType::Devmap, "map_type.devmap")?;
    probe::map_type(MapType::Cpumap, "map_type.cpumap")?;
    let mut open = XdpFeaturesSkelBuilder::default().open(object)?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .expect("the object has a .rodata section");
    rodata.trim_port = TRIM_PORT;
    rodata.meta_port = META_PORT;
    rodata.redirect_port = REDIRECT_PORT;
    rodata.cpu_port = CPU_PORT;
    rodata.cpu_rewritten_port = REWRITTEN_PORT;
    rodata.cpu_target = setup.cpu_target;
    (rodata.redirect_src_mac, rodata.redirect_dst_mac) = setup.macs;
    case.load(open)
}

/// The programs' counters.
#[derive(Debug, Default, PartialEq)]
struct Counters {
    stripped: u64,
    trimmed: u64,
    meta_set: u64,
    meta_read: u64,
    redirected_dev: u64,
    redirected_cpu: u64,
    cpumap_rewritten: u64,
}

impl Counters {
    fn read(skel: &XdpFeaturesSkel<'_>) -> Self {
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        Counters {
            stripped: volatile(&bss.stripped),
            trimmed: volatile(&bss.trimmed),
            meta_set: volatile(&bss.meta_set),
            meta_read: volatile(&bss.meta_read),
            redirected_dev: volatile(&bss.redirected_dev),
            redirected_cpu: volatile(&bss.redirected_cpu),
            cpumap_rewritten: volatile(&bss.cpumap_rewritten),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "stripped": self.stripped, "trimmed": self.trimmed, "meta_set": self.meta_set,
            "meta_read": self.meta_read, "redirected_dev": self.redirected_dev,
            "redirected_cpu": self.redirected_cpu, "cpumap_rewritten": self.cpumap_rewritten,
        })
    }
}

/// XDP in driver (native) or generic (skb) mode.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Native,
    Generic,
}

impl Mode {
    fn flags(self) -> XdpFlags {
        match self {
            Mode::Native => XdpFlags::DRV_MODE,
            Mode::Generic => XdpFlags::SKB_MODE,
        }
    }

    /// What the kernel reports for an interface with a program in this mode (`XDP_ATTACHED_*`).
    fn reported(self) -> u8 {
        match self {
            Mode::Native => 1,
            Mode::Generic => 2,
        }
    }

    fn floor(self) -> &'static str {
        match self {
            Mode::Native => "attach_type.xdp_native_veth",
            Mode::Generic => "attach_type.xdp_generic",
        }
    }
}

/// A UDP socket bound to `addr` that sends without checksums (SO_NO_CHECK).
fn sender(addr: SocketAddrV4) -> CaseResult<UdpSocket> {
    let sock = UdpSocket::bind(addr).or_error("binding the sender")?;
    set_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).or_error("SO_NO_CHECK")?;
    Ok(sock)
}

fn set_int(fd: RawFd, level: i32, name: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: a valid socket and an int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The CPU that last delivered a packet to a connected UDP socket (SO_INCOMING_CPU).
fn incoming_cpu(sock: &UdpSocket) -> CaseResult<i32> {
    let mut value: i32 = -1;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: a valid socket and an int of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_INCOMING_CPU,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).or_error("SO_INCOMING_CPU");
    }
    Ok(value)
}

/// A raw IPv4 socket of `protocol` (the calling thread's namespace), non-blocking.
fn raw_socket(protocol: i32) -> CaseResult<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            protocol,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).or_error("opening a raw socket");
    }
    // SAFETY: a fresh, valid fd.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sends `payload` on the raw socket to `dst` (the kernel adds the IP header).
fn send_raw(fd: &OwnedFd, payload: &[u8], dst: Ipv4Addr) -> CaseResult {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(dst).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid socket, a buffer and an address of the sizes passed.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(CaseError::Fail(anyhow::anyhow!(
            "sending on the raw IPIP socket: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// The packets queued on a non-blocking raw socket now.
fn raw_queued(fd: &OwnedFd) -> CaseResult<usize> {
    let mut count = 0;
    loop {
        let mut buf = [0u8; 2048];
        // SAFETY: a valid socket and a buffer of the size passed.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            count += 1;
            continue;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Ok(count);
        }
        return Err(e).or_error("reading the raw socket");
    }
}

/// An inner IPv4/UDP packet `SENDER:INNER_SPORT → RECEIVER:STRIP_PORT` (UDP checksum 0).
fn inner_packet(payload: &[u8]) -> Vec<u8> {
    Ipv4::new(SENDER.octets(), RECEIVER.octets(), IPPROTO_UDP).build(&packet::udp(
        INNER_SPORT,
        STRIP_PORT,
        payload,
    ))
}

/// `mark` (native byte order, as the programs read it) followed by `text`.
fn marked(mark: u32, text: &str) -> Vec<u8> {
    let mut p = mark.to_ne_bytes().to_vec();
    p.extend_from_slice(text.as_bytes());
    p
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

#[rstest]
#[case::native(Mode::Native)]
#[case::generic(Mode::Generic)]
fn rewrites_frames(#[case] mode: Mode) {
    Case::run(ProgramType::Xdp, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = open_and_load(case, &mut object, Setup::default())?;
        probe::config_enabled("CONFIG_NET_SCH_INGRESS")?;
        probe::config_enabled("CONFIG_NET_CLS_BPF")?;

        let pair = VethPair::new(Cidr::v4(SENDER, 24), Cidr::v4(RECEIVER, 24))?;
        pair.policy_routed_service(SERVICE, RECEIVER, Selector::FwMark(MARK_A), MARK_TABLE)?;
        let (a, b) = (&pair.a, &pair.b);
        let xdp = XdpAttachment::new(
            b,
            VethPair::B_DEV,
            &skel.progs.xdp_rewrite,
            mode.flags(),
            mode.floor(),
        )?;
        let reported = xdp.reported_mode()?;
        case.detail("reported_attach_mode", reported);
        assert_eq!(
            reported,
            mode.reported(),
            "XDP attach mode the kernel reports (1 driver, 2 generic)"
        );

        let (strip_rx, trim_rx, meta_rx, no_meta_rx, plain_rx, ipip_rx) = {
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
            (
                bind(STRIP_PORT)?,
                bind(TRIM_PORT)?,
                bind(META_PORT)?,
                bind(NO_META_PORT)?,
                bind(PLAIN_PORT)?,
                raw_socket(libc::IPPROTO_IPIP)?,
            )
        };
        let (udp, ipip) = {
            let _inside = a.enter()?;
            (
                sender(SocketAddrV4::new(SENDER, SENDER_PORT))?,
                raw_socket(libc::IPPROTO_IPIP)?,
            )
        };

        // Resolve the neighbour first, so no datagram waits in (or falls out of) ARP's queue.
        udp.send_to(b"warm-up", (RECEIVER, PLAIN_PORT))?;
        assert_eq!(
            before(&plain_rx, b"warm-up")?.0.len(),
            0,
            "datagrams on port {PLAIN_PORT} before the warm-up"
        );

        {
            let _one_cpu = observe::OneCpu::pin()?;
            for i in 0..DATAGRAMS {
                send_raw(
                    &ipip,
                    &inner_packet(format!("strip:{i}").as_bytes()),
                    RECEIVER,
                )?;
                let mut trim = format!("trim:{i}").into_bytes();
                trim.extend_from_slice(CUT);
                udp.send_to(&trim, (RECEIVER, TRIM_PORT))?;
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
            send_raw(&ipip, &inner_packet(SENTINEL), RECEIVER)?;
            udp.send_to(&[SENTINEL, CUT].concat(), (RECEIVER, TRIM_PORT))?;
            udp.send_to(&marked(MARK_A, "sentinel"), (SERVICE, META_PORT))?;
        }

        let (stripped, sources) = before(&strip_rx, SENTINEL)?;
        let unstripped = raw_queued(&ipip_rx)?;
        let (trimmed, _) = before(&trim_rx, SENTINEL)?;
        let (meta, _) = before(&meta_rx, &marked(MARK_A, "sentinel"))?;
        let no_meta = observe::queued(&no_meta_rx)?;
        let meta_texts: Vec<String> = meta
            .iter()
            .map(|d| format!("{:#x}/{}", d[0], String::from_utf8_lossy(&d[4..])))
            .collect();
        case.detail(
            "received",
            serde_json::json!({
                "strip_port": texts(&stripped), "ipip_packets_in_b": unstripped,
                "trim_port": texts(&trimmed), "meta_port": meta_texts,
                "no_meta_port": observe::texts(&no_meta),
            }),
        );
        assert_eq!(
            texts(&stripped),
            payloads("strip"),
            "inner datagrams at {STRIP_PORT}"
        );
        for from in &sources {
            assert_eq!(
                *from,
                SocketAddr::from((SENDER, INNER_SPORT)),
                "source of an inner datagram (its port is only in the inner header)"
            );
        }
        assert_eq!(
            unstripped, 0,
            "IPIP packets reaching b's stack (a raw IPPROTO_IPIP socket sees each)"
        );
        assert_eq!(
            texts(&trimmed),
            payloads("trim"),
            "datagrams at {TRIM_PORT}, each without its last {} bytes",
            CUT.len()
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

        let counters = Counters::read(&skel);
        case.detail("counters", counters.json());
        assert_eq!(
            counters,
            Counters {
                stripped: DATAGRAMS + 1,
                trimmed: DATAGRAMS + 1,
                meta_set: 2 * DATAGRAMS + 1,
                meta_read: 2 * DATAGRAMS + 1,
                ..Counters::default()
            },
            "program counters (each flow with its sentinel; metadata on the A and B flows)"
        );
        Ok(())
    });
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
        let native = Mode::Native;
        let _redirect = XdpAttachment::new(
            b,
            VethPair::B_DEV,
            &skel.progs.xdp_redirect_dev,
            native.flags(),
            native.floor(),
        )?;
        let _target_peer = XdpAttachment::new(
            &c,
            "veth3",
            &skel.progs.xdp_pass,
            native.flags(),
            native.floor(),
        )?;

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

/// Pins the calling thread to `cpu` until dropped, then restores its affinity.
struct PinnedTo(CpuSet);

impl PinnedTo {
    fn cpu(cpu: usize) -> CaseResult<Self> {
        let me = Pid::from_raw(0);
        let previous = sched_getaffinity(me).or_error("reading the thread's CPU affinity")?;
        let mut only = CpuSet::new();
        only.set(cpu).or_error("naming a CPU")?;
        sched_setaffinity(me, &only).or_error("pinning the thread")?;
        Ok(PinnedTo(previous))
    }
}

impl Drop for PinnedTo {
    fn drop(&mut self) {
        let _ = sched_setaffinity(Pid::from_raw(0), &self.0);
    }
}

#[test]
fn redirects_through_cpumap() {
    Case::run(ProgramType::Xdp, |case| {
        let allowed = sched_getaffinity(Pid::from_raw(0)).or_error("reading CPU affinity")?;
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| allowed.is_set(c).unwrap_or(false))
            .take(2)
            .collect();
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
        let entry = bpf_cpumap_val {
            qsize: 256,
            bpf_prog: libbpf_sys::bpf_cpumap_val__bindgen_ty_1 {
                fd: skel.progs.cpumap_rewrite.as_fd().as_raw_fd(),
            },
        };
        // SAFETY: bpf_cpumap_val is plain data of that size.
        let value = unsafe {
            std::slice::from_raw_parts(
                (&entry as *const bpf_cpumap_val).cast::<u8>(),
                size_of::<bpf_cpumap_val>(),
            )
        };
        let key = (target_cpu as u32).to_ne_bytes();
        match skel.maps.cpus.update(&key, value, MapFlags::ANY) {
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
        let native = Mode::Native;
        let _xdp = XdpAttachment::new(
            &pair.b,
            VethPair::B_DEV,
            &skel.progs.xdp_redirect_cpu,
            native.flags(),
            native.floor(),
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
            let _pinned = PinnedTo::cpu(sender_cpu)?;
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
            cpus_seen,
            (target_cpu as i32, sender_cpu as i32),
            "the CPUs that delivered the redirected and the passed flow (SO_INCOMING_CPU)"
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

/// An IPIP frame around [`inner_packet`], the outer header with `options`.
fn ipip_frame(options: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut outer = Ipv4::new(SENDER.octets(), RECEIVER.octets(), libc::IPPROTO_IPIP as u8);
    outer.options = options.to_vec();
    packet::ethernet(ETH_P_IP, &outer.build(inner))
}

/// One test-run row: the program, the frame, the verdict, the frame handed back (behind the
/// metadata `meta` where the kernel hands that back too: `test_run.xdp_data_meta_out`) and the
/// counters `(stripped, trimmed, meta_set, redirected_dev)`.
struct Row {
    redirect: bool,
    frame: Vec<u8>,
    verdict: u32,
    meta: Vec<u8>,
    out: Vec<u8>,
    counts: (u64, u64, u64, u64),
}

fn strips(options: &[u8]) -> Row {
    let inner = inner_packet(b"payload");
    Row {
        redirect: false,
        frame: ipip_frame(options, &inner),
        verdict: XDP_PASS,
        meta: Vec::new(),
        out: packet::ethernet(ETH_P_IP, &inner),
        counts: (1, 0, 0, 0),
    }
}

fn trims() -> Row {
    let mut frame = udp_frame(TRIM_PORT, b"payload~cut");
    // A valid UDP checksum, which the program must clear.
    let udp_at = ETH_HLEN + 20;
    let sum = packet::udp4_checksum(&frame[ETH_HLEN..udp_at], &frame[udp_at..]);
    frame[udp_at + 6..udp_at + 8].copy_from_slice(&sum.to_be_bytes());
    Row {
        redirect: false,
        frame,
        verdict: XDP_PASS,
        meta: Vec::new(),
        out: udp_frame(TRIM_PORT, b"payload"),
        counts: (0, 1, 0, 0),
    }
}

fn unchanged(frame: Vec<u8>) -> Row {
    Row {
        redirect: false,
        out: frame.clone(),
        frame,
        verdict: XDP_PASS,
        meta: Vec::new(),
        counts: (0, 0, 0, 0),
    }
}

fn sets_meta() -> Row {
    let frame = udp_frame(META_PORT, &marked(MARK_A, "payload"));
    Row {
        redirect: false,
        out: frame.clone(),
        frame,
        verdict: XDP_PASS,
        meta: MARK_A.to_ne_bytes().to_vec(),
        counts: (0, 0, 1, 0),
    }
}

fn padded(frame: Vec<u8>) -> Vec<u8> {
    [frame, vec![0, 0]].concat()
}

fn cut(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    frame.truncate(len);
    frame
}

fn redirects() -> Row {
    let frame = udp_frame(REDIRECT_PORT, b"payload");
    let mut out = frame.clone();
    out[..6].copy_from_slice(&TEST_RUN_DST_MAC);
    out[6..12].copy_from_slice(&TEST_RUN_SRC_MAC);
    Row {
        redirect: true,
        frame,
        verdict: XDP_REDIRECT,
        meta: Vec::new(),
        out,
        counts: (0, 0, 0, 1),
    }
}

/// The MACs `xdp_redirect_dev` writes in the test-run rows.
const TEST_RUN_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const TEST_RUN_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x02];

#[rstest]
#[case::strips_ipip(strips(&[]))]
#[case::strips_ipip_after_outer_options(strips(&[1, 1, 1, 0]))]
#[case::passes_ipip_cut_in_inner_header(unchanged(cut(ipip_frame(&[], &inner_packet(b"payload")), ETH_HLEN + 20 + 10))
)]
#[case::trims_udp_payload(trims())]
#[case::passes_short_udp_to_trim_port(unchanged(udp_frame(TRIM_PORT, b"cut")))]
#[case::passes_padded_udp_to_trim_port(unchanged(padded(udp_frame(TRIM_PORT, b"payload~cut"))))]
#[case::passes_other_udp(unchanged(udp_frame(PLAIN_PORT, b"payload~cut")))]
#[case::sets_meta(sets_meta())]
#[case::passes_short_udp_to_meta_port(unchanged(udp_frame(META_PORT, b"abc")))]
#[case::redirect_rewrites_macs(redirects())]
fn test_run(#[case] row: Row) {
    Case::run(ProgramType::Xdp, |case| {
        let mut object = MaybeUninit::uninit();
        let setup = Setup {
            macs: (TEST_RUN_SRC_MAC, TEST_RUN_DST_MAC),
            ..Setup::default()
        };
        let skel = open_and_load(case, &mut object, setup)?;
        let prog = if row.redirect {
            // A filled slot (loopback is in every namespace): the helper then answers
            // XDP_REDIRECT; a test run does not transmit.
            skel.maps
                .tx_port
                .update(&0u32.to_ne_bytes(), &1u32.to_ne_bytes(), MapFlags::ANY)?;
            &skel.progs.xdp_redirect_dev
        } else {
            &skel.progs.xdp_rewrite
        };
        let mut data_out = vec![0u8; row.frame.len() + 256];
        let input = ProgramInput {
            data_in: Some(&row.frame),
            data_out: Some(&mut data_out),
            ..Default::default()
        };
        let output = testkit::test_run::run("xdp", prog, input)?;
        let retval = output.return_value;
        let out = output.data.as_deref().unwrap_or_default().to_vec();
        case.detail("retval", retval);
        case.detail("frame_out", hex(&out));
        assert_eq!(retval, row.verdict, "verdict");
        let meta_out = floors::reached("test_run.xdp_data_meta_out");
        let expected = if meta_out {
            [row.meta.as_slice(), &row.out].concat()
        } else {
            row.out.clone()
        };
        assert_eq!(
            hex(&out),
            hex(&expected),
            "the frame handed back ({})",
            if meta_out {
                "behind any metadata the program added"
            } else {
                "the packet only"
            }
        );
        let c = Counters::read(&skel);
        case.detail("counters", c.json());
        assert_eq!(
            (c.stripped, c.trimmed, c.meta_set, c.redirected_dev),
            row.counts,
            "counters (stripped, trimmed, meta_set, redirected_dev)"
        );
        testkit::test_run::measure(case, prog, &row.frame, None).map(drop)
    });
}
