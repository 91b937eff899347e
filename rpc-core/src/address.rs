//! [`ToAddress`]: what `connect` and a transport's `bind` accept as a network address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// A network address as `connect` and `bind` take it: `"host:port"` (a name is resolved when
/// connecting), a [`SocketAddr`] (for example another service's
/// [`local_address`](crate::RpcService::local_address)), or a `(host, port)` pair.
///
/// ```
/// use std::net::{Ipv4Addr, SocketAddr};
/// use rpc_core::ToAddress;
///
/// assert_eq!("localhost:7070".to_address(), "localhost:7070");
/// assert_eq!(SocketAddr::from((Ipv4Addr::LOCALHOST, 7070)).to_address(), "127.0.0.1:7070");
/// assert_eq!(("::1", 7070).to_address(), "[::1]:7070");
/// ```
pub trait ToAddress {
    /// The address as `host:port` text, IPv6 hosts in brackets.
    fn to_address(&self) -> String;
}

impl ToAddress for str {
    fn to_address(&self) -> String {
        self.to_owned()
    }
}

impl ToAddress for String {
    fn to_address(&self) -> String {
        self.clone()
    }
}

impl ToAddress for SocketAddr {
    fn to_address(&self) -> String {
        self.to_string()
    }
}

impl ToAddress for SocketAddrV4 {
    fn to_address(&self) -> String {
        self.to_string()
    }
}

impl ToAddress for SocketAddrV6 {
    fn to_address(&self) -> String {
        self.to_string()
    }
}

impl ToAddress for (IpAddr, u16) {
    fn to_address(&self) -> String {
        SocketAddr::from(*self).to_string()
    }
}

impl ToAddress for (Ipv4Addr, u16) {
    fn to_address(&self) -> String {
        SocketAddr::from(*self).to_string()
    }
}

impl ToAddress for (Ipv6Addr, u16) {
    fn to_address(&self) -> String {
        SocketAddr::from(*self).to_string()
    }
}

impl ToAddress for (&str, u16) {
    fn to_address(&self) -> String {
        host_port(self.0, self.1)
    }
}

impl ToAddress for (String, u16) {
    fn to_address(&self) -> String {
        host_port(&self.0, self.1)
    }
}

impl<T: ToAddress + ?Sized> ToAddress for &T {
    fn to_address(&self) -> String {
        (**self).to_address()
    }
}

/// `host:port`, with an IPv6 literal in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
