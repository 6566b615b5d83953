//! XDP programs attached by netlink to an interface of a test namespace, detached when dropped.

use std::os::fd::AsFd;

use libbpf_rs::{ErrorKind, Program, Xdp, XdpFlags};

use crate::floors;
use crate::netns::NetNs;
use crate::outcome::{CaseError, CaseResult, OrError};

/// One XDP attachment.
pub struct XdpAttachment<'a> {
    ns: &'a NetNs,
    xdp: Xdp<'a>,
    ifindex: i32,
    /// `XDP_FLAGS_*` bits of the attachment.
    flags: u32,
}

impl<'a> XdpAttachment<'a> {
    /// Attaches `prog` to `dev` of `ns` in the mode of `flags` (`XdpFlags::DRV_MODE`,
    /// `SKB_MODE`). `floor` is that mode's feature id (`attach_type.xdp_native_veth`,
    /// `attach_type.xdp_generic`): a kernel that refuses the mode (EOPNOTSUPP, EINVAL) is judged
    /// by it, and the fault switch reaches it.
    pub fn new(
        ns: &'a NetNs,
        dev: &str,
        prog: &'a Program<'_>,
        flags: XdpFlags,
        floor: &str,
    ) -> CaseResult<Self> {
        if !floors::has(floor, true) {
            return Err(floors::missing(floor, "not attached"));
        }
        let ifindex = ns.ifindex(dev)? as i32;
        let bits = flags.bits();
        let xdp = Xdp::new(prog.as_fd());
        let _inside = ns.enter()?;
        match xdp.attach(ifindex, flags | XdpFlags::UPDATE_IF_NOEXIST) {
            Ok(()) => Ok(XdpAttachment {
                ns,
                xdp,
                ifindex,
                flags: bits,
            }),
            Err(e) if matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::InvalidInput) => {
                Err(floors::missing(
                    floor,
                    format!("attaching XDP to {dev} (flags {bits:#x}): {e:#}"),
                ))
            }
            Err(e) => Err(CaseError::Fail(anyhow::anyhow!(
                "attaching XDP to {dev} (flags {bits:#x}): {e:#}"
            ))),
        }
    }

    /// The attach mode the kernel reports for the interface (`XDP_ATTACHED_DRV` 1,
    /// `XDP_ATTACHED_SKB` 2, …).
    pub fn reported_mode(&self) -> CaseResult<u8> {
        let _inside = self.ns.enter()?;
        let opts = self
            .xdp
            .query(self.ifindex, XdpFlags::NONE)
            .or_error("querying the interface's XDP program")?;
        Ok(opts.attach_mode)
    }
}

impl Drop for XdpAttachment<'_> {
    fn drop(&mut self) {
        // Deleting the namespace would detach it too; this frees the program without waiting.
        if let Ok(_inside) = self.ns.enter() {
            let _ = self
                .xdp
                .detach(self.ifindex, XdpFlags::from_bits_truncate(self.flags));
        }
    }
}
