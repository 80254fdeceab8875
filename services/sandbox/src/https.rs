//! Serving a stand-in over TLS, as the providers themselves serve: a listener
//! whose connections are TLS streams, for `axum::serve`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its handshake. Connections are taken one
/// at a time, so one that stalls holds up the next for this long at most.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// A TCP listener that completes each connection's TLS handshake before
/// handing it on; a client that refuses the certificate, or never finishes,
/// is dropped.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("addr", &self.tcp.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Serves TLS on `tcp` with `config`.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(config),
        }
    }
}

impl TlsListener {
    /// The next connection whose handshake completed, and where it came from.
    pub async fn next(&mut self) -> (TlsStream<TcpStream>, SocketAddr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                // Out of descriptors or the like: let the process breathe.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE, self.acceptor.accept(tcp)).await {
                return (tls, addr);
            }
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.next().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
