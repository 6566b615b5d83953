//! XDP programs attached by netlink to an interface of a test namespace, detached when dropped.

use std::os::fd::AsFd;

use libbpf_rs::{ErrorKind, Program, Xdp, XdpFlags};

use crate::floors;
use crate::netns::NetNs;
use crate::outcome::{CaseError, CaseResult, OrError};

/// XDP in driver (native) or generic (skb) mode.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Driver mode (`XDP_FLAGS_DRV_MODE`): veth runs the program on its own receive path.
    Native,
    /// Generic mode (`XDP_FLAGS_SKB_MODE`): the core runs it on the skb, for any device.
    Generic,
}

impl Mode {
    /// The attach flags of the mode.
    pub fn flags(self) -> XdpFlags {
        match self {
            Mode::Native => XdpFlags::DRV_MODE,
            Mode::Generic => XdpFlags::SKB_MODE,
        }
    }

    /// What the kernel reports for an interface with a program in this mode (`XDP_ATTACHED_*`).
    pub fn reported(self) -> u8 {
        match self {
            Mode::Native => 1,
            Mode::Generic => 2,
        }
    }

    /// The mode's feature id on a veth.
    pub fn floor(self) -> &'static str {
        match self {
            Mode::Native => "attach_type.xdp_native_veth",
            Mode::Generic => "attach_type.xdp_generic",
        }
    }
}

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

    /// Attaches `prog` to the veth `dev` of `ns` in `mode`, judged by the mode's floor.
    pub fn veth(ns: &'a NetNs, dev: &str, prog: &'a Program<'_>, mode: Mode) -> CaseResult<Self> {
        Self::new(ns, dev, prog, mode.flags(), mode.floor())
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
