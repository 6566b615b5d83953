//! Two fresh network namespaces joined by a netkit pair (Linux 6.7+, `CONFIG_NETKIT`): the primary
//! device in `a`, its peer in `b`, L3 mode, both default policies pass. A netkit device runs the
//! BPF programs of its side (BPF_NETKIT_PRIMARY on the primary, BPF_NETKIT_PEER on the peer) when
//! it transmits, before the packet enters the other side.

use std::ptr::NonNull;

use libbpf_rs::{AsRawLibbpf, Link, Program, libbpf_sys};
use nix::errno::Errno;

use crate::floors;
use crate::netlink::Cidr;
use crate::netns::NetNs;
use crate::outcome::{CaseError, CaseResult};

/// The floor of netkit devices and their links (one commit, one option).
pub const FLOOR: &str = "attach_type.netkit_primary";

/// Namespaces `a` (primary `nk0`) and `b` (peer `nk1`), both up with an address each; dropping it
/// deletes both namespaces and the pair with them.
pub struct NetkitPair {
    /// Holds the primary device, [`NetkitPair::PRIMARY`].
    pub a: NetNs,
    /// Holds the peer device, [`NetkitPair::PEER`].
    pub b: NetNs,
}

impl NetkitPair {
    pub const PRIMARY: &'static str = "nk0";
    pub const PEER: &'static str = "nk1";

    /// Builds the pair with `a_addr` on the primary and `b_addr` on the peer. A kernel without
    /// netkit devices (it answers EOPNOTSUPP: unknown device kind) is judged by [`FLOOR`], and so
    /// is the fault switch naming it.
    pub fn new(a_addr: Cidr, b_addr: Cidr) -> CaseResult<Self> {
        if !floors::has(FLOOR, true) {
            return Err(floors::missing(FLOOR, "no netkit pair made"));
        }
        let a = NetNs::new()?;
        let b = NetNs::new()?;
        match a.add_netkit(Self::PRIMARY, Self::PEER, &b) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(Errno::EOPNOTSUPP as i32) => {
                return Err(floors::missing(
                    FLOOR,
                    format!("creating a netkit pair: {e} (no netkit device kind)"),
                ));
            }
            Err(e) => {
                return Err(CaseError::Error(anyhow::anyhow!(
                    "creating a netkit pair: {e}"
                )));
            }
        }
        a.add_address(Self::PRIMARY, a_addr)?;
        b.add_address(Self::PEER, b_addr)?;
        a.link_up(Self::PRIMARY)?;
        b.link_up(Self::PEER)?;
        Ok(NetkitPair { a, b })
    }
}

/// Creates a netkit link for `prog` (BPF_LINK_CREATE with the program's expected attach type,
/// BPF_NETKIT_PRIMARY or BPF_NETKIT_PEER) on device `dev` of `ns`, or the kernel's errno. Both
/// kinds are created on the primary device; the kernel refuses the peer's ifindex (EACCES).
pub fn link(prog: &Program<'_>, ns: &NetNs, dev: &str) -> CaseResult<Result<Link, Errno>> {
    let _inside = ns.enter()?;
    let ifindex = ns.ifindex(dev)?;
    let opts = libbpf_sys::bpf_netkit_opts {
        sz: size_of::<libbpf_sys::bpf_netkit_opts>() as _,
        ..Default::default()
    };
    // SAFETY: a loaded program and options of their declared size; libbpf returns NULL and sets
    // errno on failure.
    let link = unsafe {
        libbpf_sys::bpf_program__attach_netkit(
            prog.as_libbpf_object().as_ptr(),
            ifindex as i32,
            &opts,
        )
    };
    Ok(match NonNull::new(link) {
        // SAFETY: a link libbpf just made, owned by nobody else.
        Some(link) => Ok(unsafe { Link::from_ptr(link) }),
        None => Err(Errno::last()),
    })
}
