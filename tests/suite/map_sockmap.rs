//! BPF_MAP_TYPE_SOCKMAP's own rules (`programs/src/bpf/map_sockmap.bpf.c`); sk_skb.rs and
//! sk_skb_verdict.rs have the redirects through it.
//!
//! `holds_only_sockets_in_a_state_it_takes`: in a fresh namespace, a loopback TCP connection
//! (client C, accepted S) and its listener L. C (established) and L (listening, 5.7+) go in;
//! user space reads each slot back (a socket cookie). Refused, each with its errno: a TCP socket
//! neither connected nor listening (`EOPNOTSUPP`), a descriptor that is not a socket
//! (`ENOTSOCK`), `BPF_NOEXIST` on a filled slot (`EEXIST`), `BPF_EXIST` on an empty one
//! (`ENOENT`), slot 4 of 4 (`E2BIG`). Once C is closed, the kernel has taken it out of the map:
//! its slot is empty, L's is not.

use std::fs::File;
use std::mem::MaybeUninit;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use programs::map_sockmap::MapSockmapSkelBuilder;
use testkit::{Case, NetNs, OrError, errno, floors, observe, probe};

#[test]
fn holds_only_sockets_in_a_state_it_takes() {
    Case::run(ProgramType::SkSkb, |case| {
        probe::map_type(MapType::Sockmap, "map_type.sockmap")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapSockmapSkelBuilder::default().open(&mut object)?)?;
        let ns = NetNs::new()?;
        let (listener, client, server, unconnected) = {
            let _inside = ns.enter()?;
            let listener = TcpListener::bind("127.0.0.1:0").or_error("listening")?;
            let client = TcpStream::connect(listener.local_addr()?).or_error("connecting")?;
            let (server, _) = listener.accept().or_error("accepting")?;
            let unconnected = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::empty(),
                None,
            )
            .or_error("a TCP socket")?;
            (listener, client, server, unconnected)
        };
        let socks = &skel.maps.socks;
        let slot = |i: u32| i.to_ne_bytes();
        let fd = |f: &dyn AsFd| (f.as_fd().as_raw_fd() as u64).to_ne_bytes();
        let refused = |r: libbpf_rs::Result<()>| r.err().and_then(|e| errno::of_libbpf(&e));

        socks.update(&slot(0), &fd(&client), MapFlags::ANY)?;
        if let Some(e) = refused(socks.update(&slot(1), &fd(&listener), MapFlags::ANY)) {
            return Err(floors::missing(
                "map_type.sockmap_tcp_listener",
                format!("a listening TCP socket into a SOCKMAP: {}", errno::name(e)),
            ));
        }
        let cookie = |i: u32| socks.lookup(&slot(i), MapFlags::ANY);
        assert!(
            cookie(0)?.is_some() && cookie(1)?.is_some(),
            "slots 0 and 1 filled"
        );

        let file = File::open("/proc/self/stat").or_error("a file")?;
        let refusals = [
            (
                "neither connected nor listening",
                refused(socks.update(&slot(2), &fd(&unconnected), MapFlags::ANY)),
            ),
            (
                "not a socket",
                refused(socks.update(&slot(2), &fd(&file), MapFlags::ANY)),
            ),
            (
                "BPF_NOEXIST on a filled slot",
                refused(socks.update(&slot(0), &fd(&server), MapFlags::NO_EXIST)),
            ),
            (
                "BPF_EXIST on an empty slot",
                refused(socks.update(&slot(3), &fd(&server), MapFlags::EXIST)),
            ),
            (
                "slot 4 of 4",
                refused(socks.update(&slot(4), &fd(&server), MapFlags::ANY)),
            ),
        ];
        case.detail("refusals", format!("{refusals:?}"));
        let want = [
            libc::EOPNOTSUPP,
            libc::ENOTSOCK,
            libc::EEXIST,
            libc::ENOENT,
            libc::E2BIG,
        ];
        for ((what, got), want) in refusals.iter().zip(want) {
            assert_eq!(*got, Some(want), "{what}");
        }
        // The last reference to C goes with this close (or, should a test of another thread
        // fork meanwhile, with the child's close of its inherited copy): awaited.
        drop(client);
        let gone = observe::poll(observe::MUST_ARRIVE, || {
            matches!(cookie(0), Ok(None)).then_some(())
        });
        assert!(gone.is_some(), "C closed: its slot is still filled");
        assert!(cookie(1)?.is_some(), "L still in slot 1");
        drop(server);
        Ok(())
    });
}
