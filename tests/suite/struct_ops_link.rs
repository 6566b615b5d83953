//! struct_ops_link (`programs/src/bpf/struct_ops_link.bpf.c`): a struct_ops map registered through
//! a BPF link (BPF_LINK_CREATE with BPF_STRUCT_OPS, Linux 6.4+), the link then switched to
//! another map in place (BPF_LINK_UPDATE) and dropped. (`struct_ops` registers its maps by
//! updating their element, without a link.)
//!
//! `link_registers_swaps_and_unregisters`, in a fresh network namespace: two TCP congestion
//! controls of one name unique to this process, `first` and `second`, in maps made for links. The
//! link on `first` reports the struct_ops link type and `first`'s map id; a loopback connection
//! whose client selects the name (TCP_CONGESTION, read back) is initialised by `first` once.
//! After BPF_LINK_UPDATE to `second` the link reports `second`'s map id and the next such
//! connection is initialised by `second` once, `first` not again. Once the link is dropped,
//! selecting the name fails with ENOENT (unregistered).

use std::ffi::{CStr, OsString};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};

use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::skel::{Skel, SkelBuilder};
use libbpf_rs::{AsRawLibbpf, Link, MapCore, ProgramType, libbpf_sys};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrStorage, connect, getsockopt, setsockopt, socket,
    sockopt::TcpCongestion,
};
use programs::struct_ops_link::{StructOpsLinkSkel, StructOpsLinkSkelBuilder};
use testkit::observe::volatile;
use testkit::{Case, CaseError, CaseResult, NetNs, OrError, attach_type};

const STRUCT_OPS_LINK: &str = "attach_type.struct_ops_link";

/// The map id a struct_ops link reports.
fn linked_map(link: &Link) -> CaseResult<u32> {
    match link.info().or_error("reading the link's info")?.info {
        LinkTypeInfo::StructOps(info) => Ok(info.map_id),
        other => Err(CaseError::Fail(anyhow::anyhow!(
            "the link's type: {other:?}, not a struct_ops link"
        ))),
    }
}

/// A client socket that selects `name`, connected to `listener` (and accepted): the name it reads
/// back.
fn connect_selecting(
    listener: &TcpListener,
    name: &str,
) -> CaseResult<(OsString, TcpStream, TcpStream)> {
    let sock: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&sock, TcpCongestion, &OsString::from(name))?;
    let to: SocketAddr = listener.local_addr()?;
    connect(sock.as_raw_fd(), &SockaddrStorage::from(to))?;
    let read_back = getsockopt(&sock, TcpCongestion)?;
    let (server, _) = listener.accept()?;
    Ok((read_back, TcpStream::from(sock), server))
}

/// BPF_LINK_UPDATE of the struct_ops `link` to the object's map `map`. libbpf's
/// bpf_link__update_map (libbpf-rs has no wrapper) first writes the map's value, which is what
/// makes it registrable (a struct_ops map holds its callbacks only once its one element is set).
fn update_map(skel: &StructOpsLinkSkel<'_>, link: &Link, map: &CStr) -> CaseResult {
    let object = skel.object().as_libbpf_object();
    // SAFETY: a loaded object and a NUL-terminated name; libbpf returns NULL when there is no
    // such map.
    let map_ptr =
        unsafe { libbpf_sys::bpf_object__find_map_by_name(object.as_ptr(), map.as_ptr()) };
    if map_ptr.is_null() {
        return Err(CaseError::Error(anyhow::anyhow!(
            "no map {map:?} in the object"
        )));
    }
    // SAFETY: a live link and a map of the same loaded object; libbpf returns 0 or a negative
    // errno.
    let rc = unsafe { libbpf_sys::bpf_link__update_map(link.as_libbpf_object().as_ptr(), map_ptr) };
    if rc < 0 {
        return Err(CaseError::Fail(anyhow::anyhow!(
            "BPF_LINK_UPDATE of the struct_ops link to {map:?}: {}",
            Errno::from_raw(-rc)
        )));
    }
    Ok(())
}

/// (first's inits, second's inits).
fn inits(skel: &StructOpsLinkSkel<'_>) -> (u32, u32) {
    let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
    (volatile(&bss.first_inits), volatile(&bss.second_inits))
}

#[test]
fn link_registers_swaps_and_unregisters() {
    Case::run(ProgramType::StructOps, |case| {
        // Algorithm names are global to the machine (TCP_CA_NAME_MAX 16 with the NUL).
        let name = format!("bpfconfl{}", std::process::id());
        case.detail("name", &name);
        let mut object = MaybeUninit::uninit();
        let mut open = StructOpsLinkSkelBuilder::default().open(&mut object)?;
        let mut field = [0; 16];
        for (slot, byte) in field.iter_mut().zip(name.bytes()) {
            *slot = byte as _;
        }
        open.struct_ops.first_mut().name = field;
        open.struct_ops.second_mut().name = field;
        let mut skel = attach_type::load(case, STRUCT_OPS_LINK, open)?;
        let ids = (
            skel.maps.first.info().or_error("first's info")?.info.id,
            skel.maps.second.info().or_error("second's info")?.info.id,
        );

        let ns = NetNs::new()?;
        let _inside = ns.enter()?;
        let listener = TcpListener::bind("127.0.0.1:0")?;

        let link = attach_type::libbpf(STRUCT_OPS_LINK, "a struct_ops link on `first`", || {
            skel.maps.first.attach_struct_ops()
        })?;
        assert_eq!(linked_map(&link)?, ids.0, "the map the new link reports");
        let (selected, c1, s1) = connect_selecting(&listener, &name)?;
        assert_eq!(
            selected,
            OsString::from(&name),
            "the congestion control read back"
        );
        assert_eq!(
            inits(&skel),
            (1, 0),
            "inits (first, second) after one connection"
        );

        update_map(&skel, &link, c"second")?;
        assert_eq!(
            linked_map(&link)?,
            ids.1,
            "the map the link reports after the update"
        );
        let (selected, c2, s2) = connect_selecting(&listener, &name)?;
        assert_eq!(
            selected,
            OsString::from(&name),
            "the congestion control read back"
        );
        assert_eq!(
            inits(&skel),
            (1, 1),
            "inits (first, second) after the second connection"
        );

        drop((c1, s1, c2, s2));
        testkit::link::release(link);
        let after = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        assert_eq!(
            setsockopt(&after, TcpCongestion, &OsString::from(&name)),
            Err(Errno::ENOENT),
            "selecting {name} once the link is dropped"
        );
        Ok(())
    });
}
