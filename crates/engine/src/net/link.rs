//! A synchronous rtnetlink client: bridges, veth pairs, addresses,
//! routes, moving a link into another network namespace.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// What a netlink request failed with.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: the kernel's answer could not be read: {why}")]
    Decode { what: String, why: String },
    #[error("no network interface named {0:?}")]
    NoSuchLink(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LinkError {
    let what = what.into();
    move |source| LinkError::Io { what, source }
}

/// One rtnetlink socket, bound in the network namespace it was opened in.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// A socket in this thread's network namespace.
    pub fn open() -> Result<Netlink, LinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(io("open a netlink socket"))?;
        socket.bind_auto().map_err(io("bind a netlink socket"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(io("connect a netlink socket"))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// A socket in the network namespace `ns` (an open `/proc/PID/ns/net`
    /// or a bind mount of one): this thread enters it for the socket's
    /// creation and returns to its own; the socket stays in `ns`.
    pub fn open_in(ns: BorrowedFd<'_>) -> Result<Netlink, LinkError> {
        let own = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(io("open this thread's network namespace"))?;
        rustix::thread::move_into_link_name_space(
            ns,
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| io("enter a network namespace")(e.into()))?;
        let made = Netlink::open();
        rustix::thread::move_into_link_name_space(
            own.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| io("return to this thread's network namespace")(e.into()))?;
        made
    }

    /// Sends `msg` and reads the answers until the kernel's ack (or the
    /// end of a dump); returns the messages it answered with.
    fn request(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, LinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        // Every request but a dump (which ends with DONE) asks for the
        // ack that ends the answer.
        header.flags = if flags & NLM_F_DUMP != 0 {
            NLM_F_REQUEST | flags
        } else {
            NLM_F_REQUEST | NLM_F_ACK | flags
        };
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(io(what))?;
        let mut out = Vec::new();
        let mut rx = vec![0u8; 64 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut rx[..], 0).map_err(io(what))?;
            let mut off = 0;
            while off < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                    .map_err(|e| LinkError::Decode {
                        what: what.into(),
                        why: e.to_string(),
                    })?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    match reply.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(out),
                                Some(c) => {
                                    Err(io(what)(std::io::Error::from_raw_os_error(-c.get())))
                                }
                            }
                        }
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::InnerMessage(m) => out.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }

    /// The index of the link named `name`.
    pub fn index(&mut self, name: &str) -> Result<u32, LinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(
            &format!("find link {name}"),
            RouteNetlinkMessage::GetLink(m),
            0,
        ) {
            Ok(answers) => answers
                .into_iter()
                .find_map(|a| match a {
                    RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                    _ => None,
                })
                .ok_or_else(|| LinkError::NoSuchLink(name.into())),
            Err(LinkError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                Err(LinkError::NoSuchLink(name.into()))
            }
            Err(e) => Err(e),
        }
    }

    /// The names of every link.
    pub fn names(&mut self) -> Result<Vec<String>, LinkError> {
        let answers = self.request(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|x| match x {
                    LinkAttribute::IfName(n) => Some(n),
                    _ => None,
                }),
                _ => None,
            })
            .collect())
    }

    fn new_link(&mut self, what: &str, m: LinkMessage) -> Result<(), LinkError> {
        self.request(
            what,
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Creates the bridge `name` (down).
    pub fn add_bridge(&mut self, name: &str) -> Result<(), LinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.new_link(&format!("create bridge {name}"), m)
    }

    /// Creates the veth pair `name` – `peer` (both down).
    pub fn add_veth(&mut self, name: &str, peer: &str) -> Result<(), LinkError> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.into()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.new_link(&format!("create veth pair {name} and {peer}"), m)
    }

    fn set_link(
        &mut self,
        what: &str,
        index: u32,
        edit: impl FnOnce(&mut LinkMessage),
    ) -> Result<(), LinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        edit(&mut m);
        self.request(what, RouteNetlinkMessage::SetLink(m), NLM_F_ACK)
            .map(drop)
    }

    /// Brings link `index` up.
    pub fn up(&mut self, index: u32) -> Result<(), LinkError> {
        self.set_link("bring a link up", index, |m| {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Makes link `index` a port of the bridge `bridge`.
    pub fn set_master(&mut self, index: u32, bridge: u32) -> Result<(), LinkError> {
        self.set_link("attach a link to its bridge", index, |m| {
            m.attributes.push(LinkAttribute::Controller(bridge));
        })
    }

    /// Renames link `index` (it must be down).
    pub fn rename(&mut self, index: u32, name: &str) -> Result<(), LinkError> {
        self.set_link(&format!("rename a link to {name}"), index, |m| {
            m.attributes.push(LinkAttribute::IfName(name.into()));
        })
    }

    /// Sets link `index`'s MAC address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), LinkError> {
        self.set_link("set a MAC address", index, |m| {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        })
    }

    /// Moves link `index` into the network namespace `ns`.
    pub fn move_to(&mut self, index: u32, ns: BorrowedFd<'_>) -> Result<(), LinkError> {
        let fd = ns.as_raw_fd();
        self.set_link("move a link into a network namespace", index, |m| {
            m.attributes.push(LinkAttribute::NetNsFd(fd));
        })
    }

    /// Deletes link `index` (a veth takes its peer with it).
    pub fn delete(&mut self, index: u32) -> Result<(), LinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request("delete a link", RouteNetlinkMessage::DelLink(m), NLM_F_ACK)
            .map(drop)
    }

    /// Adds the address `ip/prefix` to link `index`.
    pub fn add_address(&mut self, index: u32, ip: IpAddr, prefix: u8) -> Result<(), LinkError> {
        let mut m = AddressMessage::default();
        m.header.family = family(ip);
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(ip));
        m.attributes.push(AddressAttribute::Address(ip));
        if let IpAddr::V4(v4) = ip {
            let host_bits = 32 - u32::from(prefix.min(32));
            let mask = if host_bits == 32 {
                u32::MAX
            } else {
                (1u32 << host_bits) - 1
            };
            m.attributes
                .push(AddressAttribute::Broadcast((u32::from(v4) | mask).into()));
        }
        self.request(
            &format!("add address {ip}/{prefix}"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// The IPv4 destinations of this namespace's routes, every table (a
    /// new network's subnet must overlap none of them). The default route
    /// is left out.
    pub fn routes_v4(&mut self) -> Result<Vec<ipnet::IpNet>, LinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        let answers = self.request("list routes", RouteNetlinkMessage::GetRoute(m), NLM_F_DUMP)?;
        Ok(answers
            .into_iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewRoute(r) if r.header.destination_prefix_length > 0 => {
                    r.attributes.iter().find_map(|x| match x {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => {
                            ipnet::Ipv4Net::new(*d, r.header.destination_prefix_length)
                                .ok()
                                .map(ipnet::IpNet::V4)
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Adds the default route via `gateway`.
    pub fn add_default_route(&mut self, gateway: IpAddr) -> Result<(), LinkError> {
        let mut m = RouteMessage::default();
        m.header = RouteHeader {
            address_family: family(gateway),
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Boot,
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..Default::default()
        };
        m.attributes.push(RouteAttribute::Gateway(match gateway {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        }));
        self.request(
            &format!("add the default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::thread::{move_into_link_name_space, LinkNameSpaceType, UnshareFlags};
    use std::os::fd::OwnedFd;

    fn enter(ns: &OwnedFd) {
        move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network)).unwrap();
    }

    /// This thread into a new network namespace of its own.
    fn new_netns() {
        // SAFETY: unsharing the network namespace changes only this
        // thread's view of the network; no file descriptor table, file
        // system or memory this process's other threads rely on changes.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }.unwrap();
    }

    fn here() -> OwnedFd {
        std::fs::File::open("/proc/thread-self/ns/net")
            .unwrap()
            .into()
    }

    /// A bridge with an address, a veth pair with one end on it and the
    /// other moved into a second namespace, renamed, addressed and routed:
    /// a datagram crosses from one namespace to the other. All of it in
    /// two network namespaces of this test's own (never the host's).
    #[test]
    fn a_bridge_and_a_veth_pair_carry_traffic_between_namespaces() {
        std::thread::spawn(|| {
            new_netns();
            let a = here();
            new_netns();
            let b = here();
            enter(&a);
            let mut nl = Netlink::open().unwrap();
            let lo = nl.index("lo").unwrap();
            nl.up(lo).unwrap();
            nl.add_bridge("tbr0").unwrap();
            let br = nl.index("tbr0").unwrap();
            nl.add_address(br, "10.99.0.1".parse().unwrap(), 24)
                .unwrap();
            nl.up(br).unwrap();
            nl.add_veth("tveth0", "tpeer0").unwrap();
            let v = nl.index("tveth0").unwrap();
            nl.set_master(v, br).unwrap();
            nl.up(v).unwrap();
            let p = nl.index("tpeer0").unwrap();
            nl.move_to(p, b.as_fd()).unwrap();
            assert!(matches!(nl.index("tpeer0"), Err(LinkError::NoSuchLink(_))));
            assert!(matches!(nl.add_bridge("tbr0"), Err(LinkError::Io { .. })));

            let mut inner = Netlink::open_in(b.as_fd()).unwrap();
            let p = inner.index("tpeer0").unwrap();
            inner.rename(p, "eth0").unwrap();
            inner.set_mac(p, [0x02, 0x42, 10, 99, 0, 2]).unwrap();
            inner
                .add_address(p, "10.99.0.2".parse().unwrap(), 24)
                .unwrap();
            inner.up(p).unwrap();
            let lo = inner.index("lo").unwrap();
            inner.up(lo).unwrap();
            inner
                .add_default_route("10.99.0.1".parse().unwrap())
                .unwrap();
            let mut names = inner.names().unwrap();
            names.sort();
            assert_eq!(names, ["eth0", "lo"]);
            // The subnet's route (the default one is left out), in both.
            let routes: Vec<String> = inner
                .routes_v4()
                .unwrap()
                .iter()
                .map(|r| r.to_string())
                .collect();
            assert!(routes.contains(&"10.99.0.0/24".to_string()), "{routes:?}");
            assert!(!routes.iter().any(|r| r.ends_with("/0")), "{routes:?}");
            let taken = nl.routes_v4().unwrap();
            assert_eq!(
                crate::net::ipam::pick_subnet(
                    &[
                        "10.99.0.0/16".parse().unwrap(),
                        "10.98.0.0/16".parse().unwrap()
                    ],
                    &taken
                )
                .unwrap()
                .to_string(),
                "10.98.0.0/16"
            );

            // The receiver's socket in b, the sender's in a.
            enter(&b);
            let rx = std::net::UdpSocket::bind("10.99.0.2:9999").unwrap();
            rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            enter(&a);
            let tx = std::net::UdpSocket::bind("10.99.0.1:0").unwrap();
            tx.send_to(b"across", "10.99.0.2:9999").unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"across");
            assert_eq!(from.ip().to_string(), "10.99.0.1");

            nl.delete(v).unwrap();
            assert!(matches!(inner.index("eth0"), Err(LinkError::NoSuchLink(_))));
        })
        .join()
        .unwrap();
    }
}
