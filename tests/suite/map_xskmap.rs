//! BPF_MAP_TYPE_XSKMAP (`programs/src/bpf/map_xskmap.bpf.c`): XDP redirects frames to an AF_XDP
//! socket, whose RX ring hands them to user space (the rings through the `xdpilone` crate).
//!
//! `frames_arrive_in_the_sockets_rx_ring`: a veth pair, a (`10.78.0.1`) — b (`10.78.0.2`);
//! an AF_XDP socket bound to b's veth, queue 0, in copy mode, with 16 frames in its fill ring, in
//! the map's slot 0; `to_socket` on b's veth (native). Three datagrams from a to b:40011 arrive
//! in the RX ring in order, each the frame a sent (Ethernet, IPv4, UDP from a's socket to
//! b:40011, its payload). Once user space deletes the slot, the next datagram to 40011 passes to b's
//! socket there and is the first it gets: the redirected ones never reached b's stack.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::num::NonZeroU32;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_xskmap::MapXskmapSkelBuilder;
use testkit::netlink::Cidr;
use testkit::observe::{self, OneCpu};
use testkit::veth::VethPair;
use testkit::xdp::{Mode, XdpAttachment};
use testkit::{Case, CaseError, CaseResult, OrError, packet, probe};
use xdpilone::{BufIdx, IfInfo, Socket, SocketConfig, Umem, UmemConfig};

const A: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const XSK_PORT: u16 = 40011;
/// Frames of the socket's memory, one page each.
const FRAMES: u32 = 16;

/// The socket's memory: page aligned, as AF_XDP wants it.
#[repr(C, align(4096))]
struct Area([u8; FRAMES as usize * 4096]);

/// An xdpilone error as a harness error.
fn xsk_error(what: &'static str) -> impl Fn(xdpilone::Errno) -> CaseError {
    move |e| CaseError::Error(anyhow::anyhow!("AF_XDP {what}: {e}"))
}

#[test]
fn frames_arrive_in_the_sockets_rx_ring() {
    Case::run(ProgramType::Xdp, |case| {
        probe::map_type(MapType::Xskmap, "map_type.xskmap")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.open_load(MapXskmapSkelBuilder::default(), &mut object, |open| {
            open.maps
                .rodata_data
                .as_deref_mut()
                .expect(".rodata")
                .xsk_port = XSK_PORT;
        })?;
        let pair = VethPair::new(Cidr::v4(A, 24), Cidr::v4(B, 24))?;
        let b_dev = pair.b.ifindex(VethPair::B_DEV)?;

        let mut area = Box::new(Area([0; FRAMES as usize * 4096]));
        let memory = NonNull::from(&mut area.0[..]);
        let (umem, mut device, mut rx, user) = {
            // The socket binds to the device in the creating task's namespace.
            let _inside = pair.b.enter()?;
            // SAFETY: `area` is page aligned and outlives the socket (dropped after it, below).
            let umem =
                unsafe { Umem::new(UmemConfig::default(), memory) }.map_err(xsk_error("umem"))?;
            let mut info = IfInfo::invalid();
            info.from_ifindex(b_dev).map_err(xsk_error("interface"))?;
            info.set_queue(0);
            let socket = Socket::with_shared(&info, &umem).map_err(xsk_error("socket"))?;
            let device = umem.fq_cq(&socket).map_err(xsk_error("fill ring"))?;
            let config = SocketConfig {
                rx_size: NonZeroU32::new(FRAMES),
                tx_size: None,
                bind_flags: SocketConfig::XDP_BIND_COPY,
            };
            let user = umem.rx_tx(&socket, &config).map_err(xsk_error("rings"))?;
            let rx = user.map_rx().map_err(xsk_error("RX ring"))?;
            umem.bind(&user).map_err(xsk_error("bind"))?;
            (umem, device, rx, user)
        };
        {
            let mut fill = device.fill(FRAMES);
            let offsets = (0..FRAMES).filter_map(|i| umem.frame(BufIdx(i)).map(|f| f.offset));
            assert_eq!(
                fill.insert(offsets),
                FRAMES,
                "frames given to the fill ring"
            );
            fill.commit();
        }
        skel.maps.xsks.update(
            &0u32.to_ne_bytes(),
            &user.as_raw_fd().to_ne_bytes(),
            MapFlags::ANY,
        )?;

        let _xdp = XdpAttachment::veth(
            &pair.b,
            VethPair::B_DEV,
            &skel.progs.to_socket,
            Mode::Native,
        )?;
        let b_rx = {
            let _inside = pair.b.enter()?;
            UdpSocket::bind(SocketAddrV4::new(B, XSK_PORT)).or_error("binding b's socket")?
        };
        let sender = {
            let _inside = pair.a.enter()?;
            UdpSocket::bind(SocketAddrV4::new(A, 0)).or_error("binding a's sender")?
        };
        let from = match sender.local_addr()? {
            std::net::SocketAddr::V4(addr) => addr,
            other => panic!("an IPv4 sender: {other}"),
        };
        let _one_cpu = OneCpu::pin()?;
        let to = SocketAddrV4::new(B, XSK_PORT);
        for n in 0..3 {
            sender.send_to(format!("xsk-{n}").as_bytes(), to)?;
        }

        let mut frames = Vec::new();
        while frames.len() < 3 {
            // SAFETY: the socket's fd stays open for the wait (`user` lives to the end).
            let fd = unsafe { BorrowedFd::borrow_raw(user.as_raw_fd()) };
            if !observe::readable(fd, observe::MUST_ARRIVE)? {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "{} frames in the RX ring within {:?}",
                    frames.len(),
                    observe::MUST_ARRIVE
                )));
            }
            let mut read = rx.receive(FRAMES);
            while let Some(desc) = read.read() {
                let start = desc.addr as usize;
                // SAFETY: the kernel handed this chunk back through the RX ring and writes it no
                // more until it is given to the fill ring again; it lies inside `area`.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        memory.cast::<u8>().as_ptr().add(start),
                        desc.len as usize,
                    )
                };
                frames.push(bytes.to_vec());
            }
            read.release();
        }
        let want: Vec<Datagram> = (0..3)
            .map(|n| (from, to, format!("xsk-{n}").into_bytes()))
            .collect();
        let got: Vec<Datagram> = frames
            .iter()
            .map(|f| datagram(f))
            .collect::<CaseResult<_>>()?;
        assert_eq!(got, want, "the frames a sent, in order");

        skel.maps.xsks.delete(&0u32.to_ne_bytes())?;
        sender.send_to(b"after", to)?;
        let reached = observe::texts_before(&b_rx, "after")?;
        assert_eq!(
            reached,
            Vec::<String>::new(),
            "redirected datagrams that reached b's stack"
        );
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        case.detail("redirected", bss.redirected);
        assert_eq!(bss.redirected, 3, "the program's count");
        drop((rx, device, user, umem));
        drop(area);
        Ok(())
    });
}

/// A UDP datagram: source, destination, payload.
type Datagram = (SocketAddrV4, SocketAddrV4, Vec<u8>);

/// The datagram in an Ethernet frame of IPv4 (no options) and UDP.
fn datagram(frame: &[u8]) -> CaseResult<Datagram> {
    let fail = |what: &str| CaseError::Fail(anyhow::anyhow!("{what}: {}", packet::hex(frame)));
    if frame.len() < 42 || frame[12..14] != [0x08, 0x00] || frame[14] != 0x45 || frame[23] != 17 {
        return Err(fail("not an Ethernet frame of IPv4 (no options) and UDP"));
    }
    let addr = |ip: usize, port: usize| {
        let ip: [u8; 4] = frame[ip..ip + 4].try_into().expect("4 bytes");
        SocketAddrV4::new(
            ip.into(),
            u16::from_be_bytes([frame[port], frame[port + 1]]),
        )
    };
    let udp_len = usize::from(u16::from_be_bytes([frame[38], frame[39]]));
    let payload = frame
        .get(42..34 + udp_len)
        .ok_or_else(|| fail("a UDP length beyond the frame"))?;
    Ok((addr(26, 34), addr(30, 36), payload.to_vec()))
}
