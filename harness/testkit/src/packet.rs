//! Crafted packets for `BPF_PROG_TEST_RUN` cases: Ethernet frames carrying IPv4 (valid header
//! checksum, optional IP options and fragment bits) or IPv6, with UDP or TCP headers.
//!
//! ```
//! use testkit::packet::{Ipv4, ethernet, udp, ETH_P_IP};
//! let frame = ethernet(ETH_P_IP, &Ipv4::new([10, 0, 0, 1], [10, 0, 0, 2], 17).build(&udp(40000, 53, b"x")));
//! assert_eq!(frame.len(), 14 + 20 + 8 + 1);
//! ```

use std::net::Ipv4Addr;

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// Length of an Ethernet header.
pub const ETH_HLEN: usize = 14;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// Source MAC of crafted frames.
pub const ETH_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Destination MAC of crafted frames.
pub const ETH_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// An Ethernet frame `ETH_DST ← ETH_SRC` of `ethertype` around `payload`.
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + payload.len());
    f.extend_from_slice(&ETH_DST);
    f.extend_from_slice(&ETH_SRC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header to build packets with.
#[derive(Clone, Debug)]
pub struct Ipv4 {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Protocol of the payload (`IPPROTO_*`).
    pub protocol: u8,
    /// Type of service byte (DSCP and ECN).
    pub tos: u8,
    /// Flags and fragment offset, host order (default: DF, `0x4000`).
    pub frag_off: u16,
    /// IP options, a multiple of 4 bytes (each 4 bytes add one to the IHL).
    pub options: Vec<u8>,
}

impl Ipv4 {
    /// A header `src → dst` of `protocol`, TOS 0, DF set, no options.
    pub fn new(src: [u8; 4], dst: [u8; 4], protocol: u8) -> Self {
        Ipv4 {
            src,
            dst,
            protocol,
            tos: 0,
            frag_off: 0x4000,
            options: Vec::new(),
        }
    }

    /// The packet: this header (total length, TTL 64 and a valid checksum filled in) + `payload`.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        assert!(
            self.options.len().is_multiple_of(4),
            "IP options pad to 4 bytes"
        );
        let header_len = 20 + self.options.len();
        let mut p = Vec::with_capacity(header_len + payload.len());
        p.push(0x40 | (header_len / 4) as u8);
        p.push(self.tos);
        p.extend_from_slice(&((header_len + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 1]); // identification
        p.extend_from_slice(&self.frag_off.to_be_bytes());
        p.extend_from_slice(&[64, self.protocol, 0, 0]); // TTL, protocol, checksum
        p.extend_from_slice(&self.src);
        p.extend_from_slice(&self.dst);
        p.extend_from_slice(&self.options);
        let checksum = ipv4_checksum(&p);
        p[10..12].copy_from_slice(&checksum.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }
}

/// The IPv4 header checksum of `header` (its checksum field taken as it is: a header with a valid
/// checksum gives 0).
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv6 packet `src → dst` with `next_header`, hop limit 64 and `flow_label`, around `payload`.
pub fn ipv6(
    src: [u8; 16],
    dst: [u8; 16],
    next_header: u8,
    flow_label: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend_from_slice(&(0x6000_0000 | (flow_label & 0x000f_ffff)).to_be_bytes());
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next_header, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// A UDP datagram `sport → dport` around `payload` (checksum 0: not computed).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

/// A 20-byte TCP SYN header `sport → dport` (data offset 5, checksum 0).
pub fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut s = Vec::with_capacity(20);
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]); // seq, ack
    s.extend_from_slice(&[0x50, 0x02]); // data offset 5, SYN
    s.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
    s
}

/// The UDP checksum over the IPv4 pseudo-header of `ip_header` and the datagram `udp` (0 when the
/// datagram's own checksum verifies).
pub fn udp4_checksum(ip_header: &[u8], udp: &[u8]) -> u16 {
    let mut p = Vec::with_capacity(12 + udp.len());
    p.extend_from_slice(&ip_header[12..20]); // source, destination
    p.extend_from_slice(&[0, IPPROTO_UDP]);
    p.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    p.extend_from_slice(udp);
    ipv4_checksum(&p)
}

/// IPv6 source of [`Flow`] frames, fd00::1.
pub const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// IPv6 destination of [`Flow`] frames, fd00::2.
pub const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// The frames of a test-run table: Ethernet frames of one flow, IPv4 `src → dst` (IPv6
/// [`SRC6`] → [`DST6`]) from port `sport`, carrying `payload`, to the port each row names.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// Source port.
    pub sport: u16,
    /// UDP payload.
    pub payload: &'static [u8],
}

impl Flow {
    fn ipv4(&self, protocol: u8) -> Ipv4 {
        Ipv4::new(self.src.octets(), self.dst.octets(), protocol)
    }

    /// IPv4 UDP to `dport` (UDP checksum 0: none).
    pub fn udp4(&self, dport: u16) -> Vec<u8> {
        ethernet(ETH_P_IP, &self.ipv4(IPPROTO_UDP).build(&self.udp(dport)))
    }

    /// [`Flow::udp4`] with a valid UDP checksum.
    pub fn udp4_checksummed(&self, dport: u16) -> Vec<u8> {
        let ip = self.ipv4(IPPROTO_UDP);
        let mut udp = self.udp(dport);
        let sum = udp4_checksum(&ip.build(&udp)[..20], &udp);
        udp[6..8].copy_from_slice(&(if sum == 0 { 0xffff } else { sum }).to_be_bytes());
        ethernet(ETH_P_IP, &ip.build(&udp))
    }

    /// [`Flow::udp4`] with 4 bytes of IP options (NOP, NOP, NOP, end of options: IHL 6).
    pub fn udp4_with_options(&self, dport: u16) -> Vec<u8> {
        let mut ip = self.ipv4(IPPROTO_UDP);
        ip.options = vec![1, 1, 1, 0];
        ethernet(ETH_P_IP, &ip.build(&self.udp(dport)))
    }

    /// [`Flow::udp4`] cut inside its UDP header (3 of its 8 bytes).
    pub fn udp4_cut_in_udp_header(&self, dport: u16) -> Vec<u8> {
        let mut f = self.udp4(dport);
        f.truncate(ETH_HLEN + 20 + 3);
        f
    }

    /// IPv4 TCP SYN to `dport`.
    pub fn tcp4(&self, dport: u16) -> Vec<u8> {
        ethernet(
            ETH_P_IP,
            &self.ipv4(IPPROTO_TCP).build(&tcp_syn(self.sport, dport)),
        )
    }

    /// IPv6 UDP to `dport`, flow label 0.
    pub fn udp6(&self, dport: u16) -> Vec<u8> {
        ethernet(
            ETH_P_IPV6,
            &ipv6(SRC6, DST6, IPPROTO_UDP, 0, &self.udp(dport)),
        )
    }

    fn udp(&self, dport: u16) -> Vec<u8> {
        udp(self.sport, dport, self.payload)
    }
}

/// `bytes` in hex, for assertions whose difference a reader should see byte by byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let p = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 2], IPPROTO_UDP).build(&udp(1, 2, b"abc"));
        assert_eq!(ipv4_checksum(&p[..20]), 0);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 20 + 8 + 3);
        let mut with_options = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 2], IPPROTO_UDP);
        with_options.options = vec![1, 1, 1, 0];
        let p = with_options.build(&[]);
        assert_eq!(p[0], 0x46);
        assert_eq!(ipv4_checksum(&p[..24]), 0);
    }

    #[test]
    fn udp4_checksum_verifies() {
        let flow = Flow {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            sport: 40000,
            payload: b"ping",
        };
        let f = flow.udp4_checksummed(53);
        assert_ne!(&f[ETH_HLEN + 26..ETH_HLEN + 28], &[0, 0]);
        assert_eq!(
            udp4_checksum(&f[ETH_HLEN..ETH_HLEN + 20], &f[ETH_HLEN + 20..]),
            0
        );
    }
}
