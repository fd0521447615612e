//! Container networking: links, addresses and routes over rtnetlink
//! (`link`), in the host's network namespace or a container's.
//!
//! Why `netlink-packet-route` with `netlink-sys` (the rust-netlink
//! project's message types and socket) rather than `rtnetlink`: the
//! same messages, but used synchronously, so a monitor (which must stay
//! single-threaded, it clones containers) can set up a container's
//! interfaces without an async runtime.

pub mod ipam;
pub mod link;
