//! Loopback ports without the bind, drop, bind-again race.
//!
//! A test that must name a port before a service binds it (an admin port in a config file,
//! a private broker's port) used to bind port 0, read the port, drop the listener and let
//! the service bind it again: in between, any other test of the run could be given the same
//! port. [`ReservedPort`] closes that gap. It holds a socket bound to the port with
//! `SO_REUSEADDR` and never listening: the kernel then hands the port to no other `bind` to
//! port 0, while the service's own `bind` (tokio's, std's and ClickHouse's listeners all set
//! `SO_REUSEADDR`) still succeeds, because the holder is not listening.
//!
//! [`ClosedPort`] is the other half: an address where nothing listens and nothing can start
//! listening while the test runs, for a dead upstream or replay target. Connecting to it is
//! refused at once.

use std::net::SocketAddr;

use tokio::net::TcpSocket;

/// A loopback port no other test can be given while this is held. Pass [`Self::addr`] to a
/// service that binds it itself; keep this value alive until the service is listening (or,
/// for a service that is restarted on the same port, as long as the service).
#[derive(Debug)]
pub struct ReservedPort {
    addr: SocketAddr,
    _holder: TcpSocket,
}

impl ReservedPort {
    pub fn new() -> Self {
        let holder = bound(true);
        let addr = holder.local_addr().unwrap_or_else(|e| panic!("reserved port address: {e}"));
        Self { addr, _holder: holder }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// A loopback address where nothing listens, held for as long as this value lives:
/// connections to it are refused, as to a crashed service's port.
#[derive(Debug)]
pub struct ClosedPort {
    addr: SocketAddr,
    _holder: TcpSocket,
}

impl ClosedPort {
    pub fn new() -> Self {
        // Without SO_REUSEADDR: not even a service's bind can take it.
        let holder = bound(false);
        let addr = holder.local_addr().unwrap_or_else(|e| panic!("closed port address: {e}"));
        Self { addr, _holder: holder }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

fn bound(reuse: bool) -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
    socket.set_reuseaddr(reuse).unwrap_or_else(|e| panic!("SO_REUSEADDR: {e}"));
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap_or_else(|e| panic!("bind a loopback port: {e}"));
    socket
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reserved_port_is_given_to_no_one_else_but_its_service_binds_it() {
        let reserved = ReservedPort::new();
        for _ in 0..2000 {
            let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            assert_ne!(other.local_addr().unwrap().port(), reserved.port());
        }
        let service = tokio::net::TcpListener::bind(reserved.addr()).await.unwrap();
        let accepted = tokio::spawn(async move { service.accept().await.map(|_| ()) });
        tokio::net::TcpStream::connect(reserved.addr()).await.unwrap();
        accepted.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_closed_port_refuses_connections_and_cannot_be_bound() {
        let closed = ClosedPort::new();
        let refused = tokio::net::TcpStream::connect(closed.addr()).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(tokio::net::TcpListener::bind(closed.addr()).await.is_err());
    }
}
