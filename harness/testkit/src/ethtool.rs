//! Device offloads through the ethtool ioctl (`SIOCETHTOOL`), in-process: no ethtool binary.

use std::os::fd::AsRawFd;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use crate::outcome::{CaseError, CaseResult, OrError};

nix::ioctl_readwrite_bad!(siocethtool, libc::SIOCETHTOOL, libc::ifreq);

/// `struct ethtool_value`: a command and its value.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `ethtool -K <dev> tx on|off` (the legacy `ETHTOOL_STXCSUM`), read back with
/// `ETHTOOL_GTXCSUM`. The calling thread must be in the device's namespace.
pub fn set_tx_checksum(dev: &str, on: bool) -> CaseResult {
    const ETHTOOL_GTXCSUM: u32 = 0x16;
    const ETHTOOL_STXCSUM: u32 = 0x17;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .or_error("opening a socket for SIOCETHTOOL")?;
    let ethtool = |cmd: u32, data: u32| -> CaseResult<u32> {
        let mut value = EthtoolValue { cmd, data };
        // SAFETY: ifreq is plain data.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(dev.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (&raw mut value).cast();
        // SAFETY: a valid socket; ifreq points at an ethtool_value that outlives the call.
        unsafe { siocethtool(sock.as_raw_fd(), &mut ifr) }
            .or_error(&format!("SIOCETHTOOL {cmd:#x} on {dev}"))?;
        Ok(value.data)
    };
    ethtool(ETHTOOL_STXCSUM, u32::from(on))?;
    if ethtool(ETHTOOL_GTXCSUM, 0)? != u32::from(on) {
        return Err(CaseError::Error(anyhow::anyhow!(
            "tx checksum offload on {dev} did not turn {}",
            if on { "on" } else { "off" }
        )));
    }
    Ok(())
}
