//! rtnetlink in-process: the links, addresses, routes, rules and qdiscs of a test topology, each
//! a typed request built from netlink-packet-route's messages (no `ip` or `tc`: under emulation
//! every process start costs seconds). [`crate::NetNs`] makes them in its namespace.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoNetkit, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage, RulePortRange};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_packet_route::{AddressFamily, IpProtocol, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// An address with a prefix length: an interface's address and its link's net (`10.9.0.1/24`),
/// or a route's destination (`10.10.0.0/16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// `addr/len`; a length past the family's address panics.
    pub const fn new(addr: IpAddr, len: u8) -> Self {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        assert!(len <= max, "prefix length longer than the address");
        Cidr { addr, len }
    }

    pub const fn v4(addr: Ipv4Addr, len: u8) -> Self {
        Self::new(IpAddr::V4(addr), len)
    }

    pub const fn v6(addr: Ipv6Addr, len: u8) -> Self {
        Self::new(IpAddr::V6(addr), len)
    }

    /// The address alone (`/32`, `/128`).
    pub fn host(addr: impl Into<IpAddr>) -> Self {
        let addr = addr.into();
        Self::new(addr, if addr.is_ipv4() { 32 } else { 128 })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A route to add: unicast or local, in the main table unless [`Route::table`] says otherwise.
#[derive(Clone, Copy, Debug)]
pub struct Route<'a> {
    dst: Cidr,
    local: bool,
    via: Option<IpAddr>,
    dev: Option<&'a str>,
    table: u32,
}

/// RT_TABLE_MAIN: where `ip route add` puts a route without `table`.
const MAIN_TABLE: u32 = 254;

impl<'a> Route<'a> {
    /// A unicast route to `dst`.
    pub fn to(dst: Cidr) -> Self {
        Route {
            dst,
            local: false,
            via: None,
            dev: None,
            table: MAIN_TABLE,
        }
    }

    /// A local route: packets to `dst` are delivered to this namespace's sockets.
    pub fn local(dst: Cidr) -> Self {
        Route {
            local: true,
            ..Self::to(dst)
        }
    }

    /// Through gateway `gw` (of `dst`'s family).
    pub fn via(self, gw: impl Into<IpAddr>) -> Self {
        Route {
            via: Some(gw.into()),
            ..self
        }
    }

    /// Out of interface `dev`.
    pub fn dev(self, dev: &'a str) -> Self {
        Route {
            dev: Some(dev),
            ..self
        }
    }

    /// In routing table `table`.
    pub fn table(self, table: u32) -> Self {
        Route { table, ..self }
    }
}

/// What an IPv4 policy [`Rule`] matches.
#[derive(Clone, Copy, Debug)]
pub enum Selector {
    /// Packets whose mark is this (`fwmark`).
    FwMark(u32),
    /// UDP to this destination port (`ipproto udp dport`, Linux 4.17+).
    UdpDport(u16),
}

/// An IPv4 policy rule: packets matching `selector` are routed by table `table`; rules are
/// tried in increasing `pref`.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub selector: Selector,
    pub table: u32,
    pub pref: u32,
}

fn family(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A table id as the fixed-size header field takes it (RT_TABLE_UNSPEC: see the attribute).
fn header_table(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(0)
}

/// The address message, with iproute2's defaults: scope host for 127/8, global otherwise; IPv6
/// addresses skip duplicate address detection, so they are usable at once.
fn address_message(index: u32, addr: Cidr) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(addr.addr);
    msg.header.prefix_len = addr.len;
    msg.header.index = index;
    msg.header.scope = match addr.addr {
        IpAddr::V4(a) if a.is_loopback() => AddressScope::Host,
        _ => AddressScope::Universe,
    };
    if addr.addr.is_ipv6() {
        msg.header.flags = AddressHeaderFlags::Nodad;
    }
    msg.attributes = vec![
        AddressAttribute::Local(addr.addr),
        AddressAttribute::Address(addr.addr),
    ];
    msg
}

/// The route message (`oif`: the index of [`Route::dev`]), with iproute2's defaults: protocol
/// boot; scope host for local IPv4 routes, link for IPv4 routes without a gateway, universe
/// otherwise.
fn route_message(route: &Route, oif: Option<u32>) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(route.dst.addr);
    msg.header.destination_prefix_length = route.dst.len;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.table = header_table(route.table);
    msg.header.kind = if route.local {
        RouteType::Local
    } else {
        RouteType::Unicast
    };
    msg.header.scope = match (route.dst.addr, route.local, route.via) {
        (IpAddr::V6(_), _, _) => RouteScope::Universe,
        (_, true, _) => RouteScope::Host,
        (_, false, None) => RouteScope::Link,
        (_, false, Some(_)) => RouteScope::Universe,
    };
    msg.attributes.push(RouteAttribute::Table(route.table));
    msg.attributes
        .push(RouteAttribute::Destination(route.dst.addr.into()));
    if let Some(gw) = route.via {
        msg.attributes.push(RouteAttribute::Gateway(gw.into()));
    }
    if let Some(oif) = oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    msg
}

fn rule_message(rule: &Rule) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.table = header_table(rule.table);
    msg.header.action = RuleAction::ToTable;
    msg.attributes.push(RuleAttribute::Table(rule.table));
    match rule.selector {
        Selector::FwMark(mark) => msg.attributes.push(RuleAttribute::FwMark(mark)),
        Selector::UdpDport(port) => {
            msg.attributes
                .push(RuleAttribute::IpProtocol(IpProtocol::Udp));
            msg.attributes
                .push(RuleAttribute::DestinationPortRange(RulePortRange {
                    start: port,
                    end: port,
                }));
        }
    }
    msg.attributes.push(RuleAttribute::Priority(rule.pref));
    msg
}

/// An rtnetlink socket of the network namespace it was opened in.
pub(crate) struct Rtnl {
    socket: Mutex<Socket>,
    /// The sequence number of the last request (replies to earlier ones are skipped).
    seq: AtomicU32,
}

/// Create, failing if it exists (as `ip … add`).
const CREATE: u16 = NLM_F_CREATE | NLM_F_EXCL;

impl Rtnl {
    /// Opens the socket in the calling thread's network namespace (it stays that namespace's).
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl {
            socket: Mutex::new(socket),
            seq: AtomicU32::new(0),
        })
    }

    /// A veth pair: `name` here, `peer` in the namespace `peer_ns`.
    pub fn add_veth(&self, name: &str, peer: &str, peer_ns: BorrowedFd<'_>) -> io::Result<()> {
        let peer = InfoVeth::Peer(peer_message(peer, peer_ns));
        self.add_link(name, InfoKind::Veth, InfoData::Veth(peer))
    }

    /// A netkit pair: primary `name` here, `peer` in the namespace `peer_ns`; L3 mode, both
    /// policies pass (the kernel's defaults).
    pub fn add_netkit(&self, name: &str, peer: &str, peer_ns: BorrowedFd<'_>) -> io::Result<()> {
        let peer = vec![InfoNetkit::Peer(peer_message(peer, peer_ns))];
        self.add_link(name, InfoKind::Netkit, InfoData::Netkit(peer))
    }

    fn add_link(&self, name: &str, kind: InfoKind, data: InfoData) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind), LinkInfo::Data(data)]),
        ];
        self.request(RouteNetlinkMessage::NewLink(msg), CREATE)
            .map(drop)
    }

    /// Sets interface `dev` up.
    pub fn set_up(&self, dev: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = self.ifindex(dev)?;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Adds `addr` to interface `dev`.
    pub fn add_address(&self, dev: &str, addr: Cidr) -> io::Result<()> {
        let msg = address_message(self.ifindex(dev)?, addr);
        self.request(RouteNetlinkMessage::NewAddress(msg), CREATE)
            .map(drop)
    }

    pub fn add_route(&self, route: &Route) -> io::Result<()> {
        let oif = route.dev.map(|dev| self.ifindex(dev)).transpose()?;
        let msg = route_message(route, oif);
        self.request(RouteNetlinkMessage::NewRoute(msg), CREATE)
            .map(drop)
    }

    pub fn add_rule(&self, rule: &Rule) -> io::Result<()> {
        self.request(RouteNetlinkMessage::NewRule(rule_message(rule)), CREATE)
            .map(drop)
    }

    /// Adds a clsact qdisc to interface `dev` (the ingress and egress hooks of TC filters).
    pub fn add_clsact(&self, dev: &str) -> io::Result<()> {
        let mut msg = TcMessage::default();
        msg.header.index = self.ifindex(dev)? as i32;
        msg.header.handle = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        msg.header.parent = TcHandle::CLSACT;
        msg.attributes.push(TcAttribute::Kind("clsact".into()));
        self.request(RouteNetlinkMessage::NewQueueDiscipline(msg), CREATE)
            .map(drop)
    }
    /// The index of interface `dev` in this socket's namespace.
    pub fn ifindex(&self, dev: &str) -> io::Result<u32> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(dev.into()));
        self.request(RouteNetlinkMessage::GetLink(msg), 0)?
            .into_iter()
            .find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })
            .ok_or_else(|| io::Error::other(format!("no reply describes interface {dev}")))
    }

    /// Sends `msg` and collects the replies up to the kernel's acknowledgement (an error
    /// acknowledgement is the error).
    fn request(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut msg = NetlinkMessage::from(msg);
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        msg.header.sequence_number = seq;
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        socket.send(&buf, 0)?;
        let mut replies = Vec::new();
        loop {
            let (data, _) = socket.recv_from_full()?;
            let mut rest = data.as_slice();
            while !rest.is_empty() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let len = (reply.header.length as usize).next_multiple_of(4);
                rest = rest.get(len..).unwrap_or_default();
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::Error(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }
}

/// The peer of a pair: its name and the namespace it is made in (the fd is read during the
/// request only).
fn peer_message(name: &str, netns: BorrowedFd<'_>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes = vec![
        LinkAttribute::IfName(name.into()),
        LinkAttribute::NetNsFd(netns.as_raw_fd()),
    ];
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_lengths() {
        let net = Cidr::v4(Ipv4Addr::new(10, 10, 0, 0), 16);
        assert_eq!(net.to_string(), "10.10.0.0/16");
        assert_eq!(Cidr::host(Ipv6Addr::LOCALHOST).len, 128);
        assert_eq!(Cidr::host(Ipv4Addr::LOCALHOST).len, 32);
        assert!(std::panic::catch_unwind(|| Cidr::v4(Ipv4Addr::LOCALHOST, 33)).is_err());
    }

    #[test]
    fn routes_take_iproute2s_scopes() {
        let net = Cidr::v4(Ipv4Addr::new(10, 10, 0, 0), 16);
        let gw = Ipv4Addr::new(10, 9, 1, 2);
        let scope = |route: &Route| route_message(route, None).header.scope;
        assert_eq!(scope(&Route::to(net).via(gw)), RouteScope::Universe);
        assert_eq!(scope(&Route::to(net).dev("lo")), RouteScope::Link);
        assert_eq!(scope(&Route::local(net).dev("lo")), RouteScope::Host);
        let v6 = Cidr::v6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 16);
        assert_eq!(scope(&Route::to(v6)), RouteScope::Universe);
        // A table past the header's byte is in the attribute only.
        let msg = route_message(&Route::local(net).table(300), None);
        assert_eq!(msg.header.table, 0);
        assert!(msg.attributes.contains(&RouteAttribute::Table(300)));
        assert_eq!(msg.header.kind, RouteType::Local);
    }
}
