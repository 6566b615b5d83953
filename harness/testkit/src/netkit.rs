//! Two fresh network namespaces joined by a netkit pair (Linux 6.7+, `CONFIG_NETKIT`): the primary
//! device in `a`, its peer in `b`, L3 mode, both default policies pass. A netkit device runs the
//! BPF programs of its side (BPF_NETKIT_PRIMARY on the primary, BPF_NETKIT_PEER on the peer) when
//! it transmits, before the packet enters the other side.

use nix::errno::Errno;

use crate::floors;
use crate::netlink::Request;
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

    /// Builds the pair with `a_addr` on the primary and `b_addr` on the peer (`ip addr` syntax).
    /// A kernel without netkit devices (it answers EOPNOTSUPP: unknown device kind) is judged by
    /// [`FLOOR`], and so is the fault switch naming it.
    pub fn new(a_addr: &str, b_addr: &str) -> CaseResult<Self> {
        if !floors::has(FLOOR, true) {
            return Err(floors::missing(FLOOR, "no netkit pair made"));
        }
        let a = NetNs::new()?;
        let b = NetNs::new()?;
        let request = Request::Netkit {
            name: Self::PRIMARY,
            peer: Self::PEER,
            peer_netns: Some(b.name()),
        };
        match a.rtnl().apply(&request) {
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
        a.ip(&format!("addr add {a_addr} dev {}", Self::PRIMARY))?;
        b.ip(&format!("addr add {b_addr} dev {}", Self::PEER))?;
        a.ip(&format!("link set {} up", Self::PRIMARY))?;
        b.ip(&format!("link set {} up", Self::PEER))?;
        Ok(NetkitPair { a, b })
    }
}
