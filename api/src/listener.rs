//! The server's TCP listener: connections without Nagle's algorithm.

use std::io;
use std::net::SocketAddr;

use axum::serve::{Listener, ListenerExt};
use tokio::net::{TcpListener, TcpStream};

/// Binds `addr` for [`axum::serve`], with `TCP_NODELAY` on every accepted
/// connection.
///
/// Why: a stream writes one small server-sent event per token. With Nagle's
/// algorithm a frame written while an earlier one is unacknowledged waits
/// for that acknowledgement, and a client on a kept-alive connection (what
/// the OpenAI SDKs keep) delays its acknowledgements, up to 40 ms on Linux.
/// Measured on loopback against `forge-node serve` with Nagle on: from the
/// second request on a connection, a 16-token stream's first content event
/// came 44 to 48 ms after the request instead of 14 ms, and the rest of the
/// answer arrived bunched with it.
pub async fn bind(
    addr: SocketAddr,
) -> io::Result<impl Listener<Io = TcpStream, Addr = SocketAddr>> {
    Ok(TcpListener::bind(addr).await?.tap_io(no_delay))
}

fn no_delay(tcp: &mut TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY on a connection; its streams may stall");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let mut listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(TcpStream::connect(addr));
        let (io, _) = listener.accept().await;
        assert!(
            io.nodelay().unwrap(),
            "an accepted connection kept Nagle's algorithm on"
        );
        client.await.unwrap().unwrap();
    }
}
