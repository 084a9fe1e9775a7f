//! Free loopback ports for the proxy's listeners.
//!
//! The sidecar learns its listener addresses from its config, so a test must choose them before
//! the process binds. Ports are drawn at random below Linux's ephemeral range (32768 and up),
//! where the kernel never hands out a port by itself: a port seen free here cannot be taken by an
//! outgoing connection or a `:0` bind before the sidecar binds it. Only another test drawing the
//! same port in the same instant can take it, and the width of the range makes that rare.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::ops::Range;

const RANGE: Range<u16> = 20_000..32_000;

/// A `127.0.0.1` address whose port nothing listens on right now.
pub fn loopback() -> SocketAddr {
    for _ in 0..1_000 {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, fastrand::u16(RANGE)));
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free loopback port in {RANGE:?} after 1000 tries");
}

/// A loopback port that refuses connections for as long as this value lives: the port is
/// bound, so nobody else can listen on it, but never listened on, so every connect is reset.
pub struct Refusing {
    addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

impl Refusing {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

pub fn refusing() -> Refusing {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .expect("bind an ephemeral loopback port");
    Refusing {
        addr: socket.local_addr().expect("a bound socket has an address"),
        _socket: socket,
    }
}
