//! Two fresh network namespaces joined by a veth pair: the smallest topology where packets
//! really cross a wire (an Ethernet device's egress on one side, ingress on the other).

use std::net::Ipv4Addr;

use crate::netns::NetNs;
use crate::outcome::CaseResult;

/// Namespaces `a` and `b`, joined by `veth0` (in `a`) and `veth1` (in `b`), both up with an
/// address each. Dropping it deletes both namespaces and with them the pair, its qdiscs and
/// filters, and the routes and rules made in them.
pub struct VethPair {
    /// The first namespace, holding [`VethPair::A_DEV`].
    pub a: NetNs,
    /// The second namespace, holding [`VethPair::B_DEV`].
    pub b: NetNs,
}

impl VethPair {
    /// The interface in `a`.
    pub const A_DEV: &'static str = "veth0";
    /// The interface in `b`.
    pub const B_DEV: &'static str = "veth1";

    /// Builds the pair with `a_addr` on `veth0` and `b_addr` on `veth1` (`ip addr` syntax, e.g.
    /// `10.9.0.1/24`).
    pub fn new(a_addr: &str, b_addr: &str) -> CaseResult<Self> {
        let a = NetNs::new()?;
        let b = NetNs::new()?;
        a.ip(&format!(
            "link add {} type veth peer name {} netns {}",
            Self::A_DEV,
            Self::B_DEV,
            b.name()
        ))?;
        a.ip(&format!("addr add {a_addr} dev {}", Self::A_DEV))?;
        b.ip(&format!("addr add {b_addr} dev {}", Self::B_DEV))?;
        a.ip(&format!("link set {} up", Self::A_DEV))?;
        b.ip(&format!("link set {} up", Self::B_DEV))?;
        Ok(VethPair { a, b })
    }

    /// Makes `service` a destination that `a` routes via `b_addr` but that is local to `b` only in
    /// routing table `table`, which the policy rule `selector` (`ip rule` syntax, e.g.
    /// `fwmark 0x2a`, `ipproto udp dport 7201`) picks: a socket on `service` in `b` receives a
    /// packet if and only if the rule matched it.
    pub fn policy_routed_service(
        &self,
        service: Ipv4Addr,
        b_addr: Ipv4Addr,
        selector: &str,
        table: u32,
    ) -> CaseResult {
        self.a.ip(&format!("route add {service}/32 via {b_addr}"))?;
        self.b
            .ip(&format!("rule add {selector} lookup {table} pref 100"))?;
        self.b
            .ip(&format!("route add local {service} dev lo table {table}"))
    }
}
