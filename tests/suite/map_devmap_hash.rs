//! BPF_MAP_TYPE_DEVMAP_HASH (`programs/src/bpf/map_devmap_hash.bpf.c`): XDP redirects through
//! devices stored under sparse keys, proven by what arrives.
//!
//! `redirects_by_sparse_key`: a veth pair, a (`10.77.0.1`) — b (`10.77.0.2`); `bounce` on b's
//! veth (native), `pass` on a's (a veth takes redirected frames only with XDP on). The map holds
//! b's own device under the key 40001 (of 8 slots): a datagram to b:40001 is sent back out of b's
//! device with its addresses swapped, and the sender's socket receives it from b:40001; one to
//! b:40002 (no such key) passes to b's socket there. Once user space deletes the key, the next
//! datagram to 40001 reaches b's socket on 40001, and it is the first there: the three bounced
//! ones, sent ahead of it on the same path from one CPU, never reached b's stack. A device index
//! that does not exist is refused (`EINVAL`).

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_devmap_hash::MapDevmapHashSkelBuilder;
use testkit::netlink::Cidr;
use testkit::observe::{self, OneCpu};
use testkit::veth::VethPair;
use testkit::xdp::{Mode, XdpAttachment};
use testkit::{Case, CaseResult, OrError, errno, probe, sockopt};

const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The key that holds b's device, and one that holds nothing.
const BOUNCE_PORT: u16 = 40001;
const PASS_PORT: u16 = 40002;

#[test]
fn redirects_by_sparse_key() {
    Case::run(ProgramType::Xdp, |case| {
        probe::map_type(MapType::DevmapHash, "map_type.devmap_hash")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapDevmapHashSkelBuilder::default().open(&mut object)?)?;
        let pair = VethPair::new(Cidr::v4(A, 24), Cidr::v4(B, 24))?;
        let b_dev = pair.b.ifindex(VethPair::B_DEV)?;
        {
            // A device map resolves the index in the updating task's namespace.
            let _inside = pair.b.enter()?;
            let key = u32::from(BOUNCE_PORT).to_ne_bytes();
            skel.maps
                .ports
                .update(&key, &b_dev.to_ne_bytes(), MapFlags::ANY)?;
            let e = skel
                .maps
                .ports
                .update(&7u32.to_ne_bytes(), &u32::MAX.to_ne_bytes(), MapFlags::ANY)
                .expect_err("a device index that does not exist");
            assert_eq!(errno::of_libbpf(&e), Some(libc::EINVAL), "{e:#}");
        }
        let _bounce =
            XdpAttachment::veth(&pair.b, VethPair::B_DEV, &skel.progs.bounce, Mode::Native)?;
        let _pass = XdpAttachment::veth(&pair.a, VethPair::A_DEV, &skel.progs.pass, Mode::Native)?;
        let (b_bounce, b_pass) = {
            let _inside = pair.b.enter()?;
            let bind = |port| UdpSocket::bind(SocketAddrV4::new(B, port)).or_error("binding b");
            (bind(BOUNCE_PORT)?, bind(PASS_PORT)?)
        };
        let sender = {
            let _inside = pair.a.enter()?;
            UdpSocket::bind(SocketAddrV4::new(A, 0)).or_error("binding a's sender")?
        };
        sockopt::no_udp_checksum(&sender).or_error("SO_NO_CHECK")?;
        let _one_cpu = OneCpu::pin()?;
        let send = |port: u16, text: &str| -> CaseResult {
            sender
                .send_to(text.as_bytes(), SocketAddrV4::new(B, port))
                .or_error("sending")?;
            Ok(())
        };

        for n in 0..3 {
            send(BOUNCE_PORT, &format!("bounce-{n}"))?;
        }
        send(PASS_PORT, "pass")?;
        let back = observe::datagrams_before(&sender, b"bounce-2")?;
        assert_eq!(
            observe::texts(&back),
            ["bounce-0", "bounce-1"],
            "bounced back to the sender, in order"
        );
        assert!(
            back.iter()
                .all(|(_, from)| *from == SocketAddrV4::new(B, BOUNCE_PORT).into()),
            "from b:{BOUNCE_PORT}: {back:?}"
        );
        assert_eq!(
            observe::texts_before(&b_pass, "pass")?,
            Vec::<String>::new()
        );

        skel.maps
            .ports
            .delete(&u32::from(BOUNCE_PORT).to_ne_bytes())?;
        send(BOUNCE_PORT, "after-delete")?;
        let reached = observe::texts_before(&b_bounce, "after-delete")?;
        assert_eq!(
            reached,
            Vec::<String>::new(),
            "bounced datagrams that reached b's stack"
        );
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        case.detail("bounced_passed", [bss.bounced, bss.passed]);
        assert_eq!((bss.bounced, bss.passed), (3, 2), "the program's count");
        Ok(())
    });
}
