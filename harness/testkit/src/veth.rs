//! Topologies of fresh network namespaces joined by veth pairs: [`VethPair`], the smallest where
//! packets really cross a wire (an Ethernet device's egress on one side, ingress on the other),
//! and [`Line`], the smallest where they are routed through a router.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::netlink::{Cidr, Route, Rule, Selector};
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

    /// Builds the pair with `a_addr` on `veth0` and `b_addr` on `veth1`.
    pub fn new(a_addr: Cidr, b_addr: Cidr) -> CaseResult<Self> {
        let a = NetNs::new()?;
        let b = NetNs::new()?;
        a.add_veth(Self::A_DEV, Self::B_DEV, &b)?;
        a.add_address(Self::A_DEV, a_addr)?;
        b.add_address(Self::B_DEV, b_addr)?;
        a.link_up(Self::A_DEV)?;
        b.link_up(Self::B_DEV)?;
        Ok(VethPair { a, b })
    }

    /// Makes `service` a destination that `a` routes via `b_addr` but that is local to `b` only in
    /// routing table `table`, which a policy rule matching `selector` picks: a socket on `service`
    /// in `b` receives a packet if and only if the rule matched it.
    pub fn policy_routed_service(
        &self,
        service: Ipv4Addr,
        b_addr: Ipv4Addr,
        selector: Selector,
        table: u32,
    ) -> CaseResult {
        let service = Cidr::host(service);
        self.a.add_route(&Route::to(service).via(b_addr))?;
        self.b.add_rule(&Rule {
            selector,
            table,
            pref: 100,
        })?;
        self.b
            .add_route(&Route::local(service).dev("lo").table(table))
    }
}

/// Three namespaces in a row, `a` — `r` — `b`, joined by two veth pairs (`ar0`|`ra0` and
/// `rb0`|`br0`), `r` forwarding between them. Dropping it deletes the namespaces and with them
/// the pairs and the routes made in them.
pub struct Line {
    /// The sender's end, holding [`Line::A_DEV`].
    pub a: NetNs,
    /// The router, holding [`Line::R_A_DEV`] and [`Line::R_B_DEV`].
    pub r: NetNs,
    /// The receiver's end, holding [`Line::B_DEV`].
    pub b: NetNs,
}

/// The addresses of a [`Line`]: `a`'s, `r`'s towards `a` and towards `b`, `b`'s.
#[derive(Clone, Copy, Debug)]
pub struct LineAddrs<A> {
    pub a: A,
    pub r_a: A,
    pub r_b: A,
    pub b: A,
}

impl Line {
    /// The interface in `a`, towards `r`.
    pub const A_DEV: &'static str = "ar0";
    /// The interface in `r` towards `a`.
    pub const R_A_DEV: &'static str = "ra0";
    /// The interface in `r` towards `b`.
    pub const R_B_DEV: &'static str = "rb0";
    /// The interface in `b`, towards `r`.
    pub const B_DEV: &'static str = "br0";
    /// The IPv4 line's addresses, on /24 links.
    pub const V4: LineAddrs<Ipv4Addr> = LineAddrs {
        a: Ipv4Addr::new(10, 9, 1, 1),
        r_a: Ipv4Addr::new(10, 9, 1, 2),
        r_b: Ipv4Addr::new(10, 9, 2, 1),
        b: Ipv4Addr::new(10, 9, 2, 2),
    };
    /// The IPv6 line's addresses, on /64 links.
    pub const V6: LineAddrs<Ipv6Addr> = LineAddrs {
        a: Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1),
        r_a: Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2),
        r_b: Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1),
        b: Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 2),
    };

    /// The IPv4 line ([`Line::V4`]): `b` holds `b_local` on its loopback, and `a` and `r` route
    /// the net `routed` towards `b`.
    pub fn ipv4(routed: Cidr, b_local: &[Ipv4Addr]) -> CaseResult<Self> {
        let line = Self::new(Self::V4, routed, b_local)?;
        line.r.sysctl(None, "net/ipv4/ip_forward", "1")?;
        Ok(line)
    }

    /// The IPv6 line ([`Line::V6`]) likewise.
    pub fn ipv6(routed: Cidr, b_local: &[Ipv6Addr]) -> CaseResult<Self> {
        let line = Self::new(Self::V6, routed, b_local)?;
        line.r.sysctl(
            Some("kconfig.CONFIG_IPV6"),
            "net/ipv6/conf/all/forwarding",
            "1",
        )?;
        Ok(line)
    }

    fn new<A: Into<IpAddr> + Copy>(
        addrs: LineAddrs<A>,
        routed: Cidr,
        b_local: &[A],
    ) -> CaseResult<Self> {
        let (a, r, b) = (NetNs::new()?, NetNs::new()?, NetNs::new()?);
        a.add_veth(Self::A_DEV, Self::R_A_DEV, &r)?;
        r.add_veth(Self::R_B_DEV, Self::B_DEV, &b)?;
        let link = if addrs.a.into().is_ipv6() { 64 } else { 24 };
        for (ns, dev, addr) in [
            (&a, Self::A_DEV, addrs.a),
            (&r, Self::R_A_DEV, addrs.r_a),
            (&r, Self::R_B_DEV, addrs.r_b),
            (&b, Self::B_DEV, addrs.b),
        ] {
            ns.add_address(dev, Cidr::new(addr.into(), link))?;
            ns.link_up(dev)?;
        }
        for local in b_local {
            b.add_address("lo", Cidr::host(*local))?;
        }
        for (ns, via) in [(&a, addrs.r_a), (&r, addrs.b)] {
            ns.add_route(&Route::to(routed).via(via))?;
        }
        Ok(Line { a, r, b })
    }
}
