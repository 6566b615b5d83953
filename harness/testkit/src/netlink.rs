//! rtnetlink in-process: the links, addresses, routes, rules and qdiscs of a test topology, made
//! without starting `ip` or `tc` (under emulation every process start costs seconds).
//!
//! [`Request::parse_ip`] and [`Request::parse_tc`] read the iproute2 argument strings the suite
//! writes (so [`crate::NetNs::ip`] keeps iproute2's syntax); [`Rtnl::apply`] sends the request
//! with iproute2's defaults. `ip`/`tc` remain for what this does not express. One module: the
//! requests, their reading from iproute2's syntax and the socket that sends them belong together.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoNetkit, InfoVeth, LinkAttribute, LinkFlags,
};
use netlink_packet_route::link::{LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RulePortRange};
use netlink_packet_route::tc::{TcAttribute, TcHandle};
use netlink_packet_route::{AddressFamily, IpProtocol, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// One request, in the terms of the iproute2 command it stands for.
#[derive(Debug, PartialEq)]
pub enum Request<'a> {
    /// `ip link add <name> type veth peer name <peer> [netns <ns>]`
    Veth {
        name: &'a str,
        peer: &'a str,
        peer_netns: Option<&'a str>,
    },
    /// `ip link add <name> type netkit peer name <peer> [netns <ns>]` (L3 mode, both policies
    /// pass: the kernel's defaults)
    Netkit {
        name: &'a str,
        peer: &'a str,
        peer_netns: Option<&'a str>,
    },
    /// `ip link set [dev] <dev> up`
    Up(&'a str),
    /// `ip addr add <addr>/<prefix> dev <dev> [nodad]`
    Address {
        dev: &'a str,
        addr: IpAddr,
        prefix: u8,
        nodad: bool,
    },
    /// `ip route add [local] <dst>[/<prefix>] [via <gw>] [dev <dev>] [table <t>]`
    Route {
        local: bool,
        dst: IpAddr,
        prefix: u8,
        via: Option<IpAddr>,
        dev: Option<&'a str>,
        table: u32,
    },
    /// `ip [-6] rule add [fwmark <m>] [ipproto <p>] [dport <n>] lookup <t> [pref <n>]`
    Rule {
        v6: bool,
        fwmark: Option<u32>,
        ipproto: Option<IpProtocol>,
        dport: Option<u16>,
        table: u32,
        pref: Option<u32>,
    },
    /// `tc qdisc add dev <dev> clsact`
    Clsact(&'a str),
}

/// RT_TABLE_MAIN: where `ip route add` puts a route without `table`.
const MAIN_TABLE: u32 = 254;

impl<'a> Request<'a> {
    /// The request `ip <args>` makes, when it is one of the forms above.
    pub fn parse_ip(args: &'a str) -> Option<Self> {
        let words: Vec<&str> = args.split_whitespace().collect();
        // The family of a rule (routes and addresses take it from their addresses).
        let (v6, words) = match words.as_slice() {
            ["-6", rest @ ..] => (true, rest),
            ["-4", rest @ ..] => (false, rest),
            rest => (false, rest),
        };
        match words {
            [
                "link",
                "add",
                name,
                "type",
                kind @ ("veth" | "netkit"),
                "peer",
                "name",
                peer,
                rest @ ..,
            ] => {
                let peer_netns = match rest {
                    [] => None,
                    ["netns", ns] => Some(*ns),
                    _ => return None,
                };
                Some(if *kind == "veth" {
                    Request::Veth {
                        name,
                        peer,
                        peer_netns,
                    }
                } else {
                    Request::Netkit {
                        name,
                        peer,
                        peer_netns,
                    }
                })
            }
            ["link", "set", "dev", dev, "up"] | ["link", "set", dev, "up"] => {
                Some(Request::Up(dev))
            }
            ["addr" | "address", "add", cidr, "dev", dev, rest @ ..] => {
                let nodad = match rest {
                    [] => false,
                    ["nodad"] => true,
                    _ => return None,
                };
                let (addr, prefix) = cidr_of(cidr)?;
                Some(Request::Address {
                    dev,
                    addr,
                    prefix,
                    nodad,
                })
            }
            ["route", "add", rest @ ..] => {
                let (local, rest) = match rest {
                    ["local", rest @ ..] => (true, rest),
                    _ => (false, rest),
                };
                let (dst, rest) = rest.split_first()?;
                let (dst, prefix) = cidr_of(dst)?;
                let (mut via, mut dev, mut table) = (None, None, MAIN_TABLE);
                for pair in pairs(rest)? {
                    match pair {
                        ("via", gw) => via = Some(gw.parse().ok()?),
                        ("dev", d) => dev = Some(d),
                        ("table", t) => table = t.parse().ok()?,
                        _ => return None,
                    }
                }
                Some(Request::Route {
                    local,
                    dst,
                    prefix,
                    via,
                    dev,
                    table,
                })
            }
            ["rule", "add", rest @ ..] => {
                let (mut fwmark, mut ipproto, mut dport, mut table, mut pref) =
                    (None, None, None, None, None);
                for pair in pairs(rest)? {
                    match pair {
                        ("fwmark", m) => fwmark = Some(number(m)?),
                        ("ipproto", "tcp") => ipproto = Some(IpProtocol::Tcp),
                        ("ipproto", "udp") => ipproto = Some(IpProtocol::Udp),
                        ("dport", p) => dport = Some(p.parse().ok()?),
                        ("lookup" | "table", t) => table = Some(t.parse().ok()?),
                        ("pref" | "priority", p) => pref = Some(p.parse().ok()?),
                        _ => return None,
                    }
                }
                Some(Request::Rule {
                    v6,
                    fwmark,
                    ipproto,
                    dport,
                    table: table?,
                    pref,
                })
            }
            _ => None,
        }
    }

    /// The request `tc <args>` makes, when it is one of the forms above.
    pub fn parse_tc(args: &'a str) -> Option<Self> {
        match args.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["qdisc", "add", "dev", dev, "clsact"] => Some(Request::Clsact(dev)),
            _ => None,
        }
    }
}

/// `10.0.0.1/24` or `10.0.0.1` (a host route or address: the whole address).
fn cidr_of(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, Some(prefix.parse().ok()?)),
        None => (text.parse().ok()?, None),
    };
    let full = if addr.is_ipv4() { 32 } else { 128 };
    match prefix {
        None => Some((addr, full)),
        Some(p) if p <= full => Some((addr, p)),
        Some(_) => None,
    }
}

/// `key value key value …` (`None` for an odd count).
fn pairs<'w>(words: &[&'w str]) -> Option<Vec<(&'w str, &'w str)>> {
    let chunks = words.chunks_exact(2);
    chunks
        .remainder()
        .is_empty()
        .then(|| chunks.map(|kv| (kv[0], kv[1])).collect())
}

/// Decimal or `0x` hexadecimal.
fn number(text: &str) -> Option<u32> {
    match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn family(addr: &IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A table id as the fixed-size header field takes it (RT_TABLE_UNSPEC: see the attribute).
fn header_table(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(0)
}

/// An rtnetlink socket of the network namespace it was opened in.
pub struct Rtnl {
    socket: Mutex<Socket>,
    /// The sequence number of the last request (replies to earlier ones are skipped).
    seq: AtomicU32,
}

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

    /// Makes `request` in this socket's namespace.
    pub fn apply(&self, request: &Request) -> io::Result<()> {
        let create = NLM_F_CREATE | NLM_F_EXCL;
        match *request {
            Request::Veth {
                name,
                peer,
                peer_netns,
            }
            | Request::Netkit {
                name,
                peer,
                peer_netns,
            } => {
                // Open for as long as the request refers to it.
                let netns = peer_netns
                    .map(|ns| File::open(format!("/run/netns/{ns}")))
                    .transpose()?;
                let mut peer_msg = LinkMessage::default();
                peer_msg.attributes.push(LinkAttribute::IfName(peer.into()));
                if let Some(netns) = &netns {
                    peer_msg
                        .attributes
                        .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
                }
                let (kind, data) = match request {
                    Request::Veth { .. } => {
                        (InfoKind::Veth, InfoData::Veth(InfoVeth::Peer(peer_msg)))
                    }
                    _ => (
                        InfoKind::Netkit,
                        InfoData::Netkit(vec![InfoNetkit::Peer(peer_msg)]),
                    ),
                };
                let mut msg = LinkMessage::default();
                msg.attributes = vec![
                    LinkAttribute::IfName(name.into()),
                    LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind), LinkInfo::Data(data)]),
                ];
                self.request(RouteNetlinkMessage::NewLink(msg), create)?;
            }
            Request::Up(dev) => {
                let mut msg = LinkMessage::default();
                msg.header.index = self.ifindex(dev)?;
                msg.header.flags = LinkFlags::Up;
                msg.header.change_mask = LinkFlags::Up;
                self.request(RouteNetlinkMessage::SetLink(msg), 0)?;
            }
            Request::Address {
                dev,
                addr,
                prefix,
                nodad,
            } => {
                let mut msg = netlink_packet_route::address::AddressMessage::default();
                msg.header.family = family(&addr);
                msg.header.prefix_len = prefix;
                msg.header.index = self.ifindex(dev)?;
                // iproute2's default scope: host for 127/8, global otherwise.
                msg.header.scope = match addr {
                    IpAddr::V4(a) if a.octets()[0] == 127 => AddressScope::Host,
                    _ => AddressScope::Universe,
                };
                if nodad {
                    msg.header.flags = AddressHeaderFlags::Nodad;
                }
                msg.attributes = vec![
                    AddressAttribute::Local(addr),
                    AddressAttribute::Address(addr),
                ];
                self.request(RouteNetlinkMessage::NewAddress(msg), create)?;
            }
            Request::Route {
                local,
                dst,
                prefix,
                via,
                dev,
                table,
            } => {
                let mut msg = netlink_packet_route::route::RouteMessage::default();
                msg.header.address_family = family(&dst);
                msg.header.destination_prefix_length = prefix;
                msg.header.protocol = RouteProtocol::Boot;
                msg.header.table = header_table(table);
                msg.header.kind = if local {
                    RouteType::Local
                } else {
                    RouteType::Unicast
                };
                // iproute2's default scope: host for local IPv4 routes, link for IPv4 routes
                // without a gateway, universe otherwise.
                msg.header.scope = match (dst, local, via) {
                    (IpAddr::V6(_), _, _) => RouteScope::Universe,
                    (_, true, _) => RouteScope::Host,
                    (_, false, None) => RouteScope::Link,
                    (_, false, Some(_)) => RouteScope::Universe,
                };
                msg.attributes.push(RouteAttribute::Table(table));
                msg.attributes.push(RouteAttribute::Destination(dst.into()));
                if let Some(gw) = via {
                    msg.attributes.push(RouteAttribute::Gateway(gw.into()));
                }
                if let Some(dev) = dev {
                    msg.attributes.push(RouteAttribute::Oif(self.ifindex(dev)?));
                }
                self.request(RouteNetlinkMessage::NewRoute(msg), create)?;
            }
            Request::Rule {
                v6,
                fwmark,
                ipproto,
                dport,
                table,
                pref,
            } => {
                let mut msg = netlink_packet_route::rule::RuleMessage::default();
                msg.header.family = if v6 {
                    AddressFamily::Inet6
                } else {
                    AddressFamily::Inet
                };
                msg.header.table = header_table(table);
                msg.header.action = RuleAction::ToTable;
                msg.attributes.push(RuleAttribute::Table(table));
                if let Some(mark) = fwmark {
                    msg.attributes.push(RuleAttribute::FwMark(mark));
                }
                if let Some(proto) = ipproto {
                    msg.attributes.push(RuleAttribute::IpProtocol(proto));
                }
                if let Some(port) = dport {
                    msg.attributes
                        .push(RuleAttribute::DestinationPortRange(RulePortRange {
                            start: port,
                            end: port,
                        }));
                }
                if let Some(pref) = pref {
                    msg.attributes.push(RuleAttribute::Priority(pref));
                }
                self.request(RouteNetlinkMessage::NewRule(msg), create)?;
            }
            Request::Clsact(dev) => {
                let mut msg = netlink_packet_route::tc::TcMessage::default();
                msg.header.index = self.ifindex(dev)? as i32;
                msg.header.handle = TcHandle {
                    major: 0xffff,
                    minor: 0,
                };
                msg.header.parent = TcHandle::CLSACT;
                msg.attributes.push(TcAttribute::Kind("clsact".into()));
                self.request(RouteNetlinkMessage::NewQueueDiscipline(msg), create)?;
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_suites_ip_forms() {
        assert_eq!(
            Request::parse_ip("link add ar0 type veth peer name ra0 netns bpfconf-1-2"),
            Some(Request::Veth {
                name: "ar0",
                peer: "ra0",
                peer_netns: Some("bpfconf-1-2")
            })
        );
        assert_eq!(
            Request::parse_ip("link add nk0 type netkit peer name nk1 netns bpfconf-1-3"),
            Some(Request::Netkit {
                name: "nk0",
                peer: "nk1",
                peer_netns: Some("bpfconf-1-3")
            })
        );
        assert_eq!(Request::parse_ip("link set lo up"), Some(Request::Up("lo")));
        assert_eq!(
            Request::parse_ip("addr add fd00::1/64 dev se0 nodad"),
            Some(Request::Address {
                dev: "se0",
                addr: "fd00::1".parse().unwrap(),
                prefix: 64,
                nodad: true
            })
        );
        assert_eq!(
            Request::parse_ip("-6 route add fc00::/16 via fd00::2"),
            Some(Request::Route {
                local: false,
                dst: "fc00::".parse().unwrap(),
                prefix: 16,
                via: Some("fd00::2".parse().unwrap()),
                dev: None,
                table: MAIN_TABLE
            })
        );
        assert_eq!(
            Request::parse_ip("route add local 10.9.9.9 dev lo table 300"),
            Some(Request::Route {
                local: true,
                dst: "10.9.9.9".parse().unwrap(),
                prefix: 32,
                via: None,
                dev: Some("lo"),
                table: 300
            })
        );
        assert_eq!(
            Request::parse_ip("rule add ipproto udp dport 7201 lookup 100 pref 100"),
            Some(Request::Rule {
                v6: false,
                fwmark: None,
                ipproto: Some(IpProtocol::Udp),
                dport: Some(7201),
                table: 100,
                pref: Some(100)
            })
        );
        assert_eq!(
            Request::parse_tc("qdisc add dev veth1 clsact"),
            Some(Request::Clsact("veth1"))
        );
        // What it does not know goes to iproute2 itself.
        assert_eq!(
            Request::parse_ip("route add 10.0.0.0/8 encap bpf in obj x.o dev lo"),
            None
        );
        assert_eq!(Request::parse_ip("addr add 10.0.0.1/33 dev lo"), None);
    }
}
