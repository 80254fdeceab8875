//! A TCP proxy in front of the broker that can cut every connection through it
//! and refuse new ones until it is restored: to the services behind it, the
//! broker goes away and comes back, with its records kept.
//!
//! The broker must advertise the proxy's address, or clients would reach it
//! directly after their first metadata request.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy)]
struct State {
    /// Bumped by every cut; a connection from an earlier epoch closes.
    epoch: u64,
    up: bool,
}

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: String,
    state: Arc<watch::Sender<State>>,
    accepting: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}

impl Proxy {
    /// Listens on a free local port and forwards each connection to `upstream`.
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let (state, _) = watch::channel(State { epoch: 0, up: true });
        let state = Arc::new(state);
        let upstream = upstream.to_owned();
        let accepting = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let mut changes = state.subscribe();
                    let now = *changes.borrow_and_update();
                    if !now.up {
                        continue; // refused: dropped at once
                    }
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = changes.wait_for(|s| s.epoch != now.epoch) => {}
                        }
                    });
                }
            })
        };
        Ok(Self {
            addr,
            state,
            accepting,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Closes every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.state.send_modify(|s| {
            s.epoch += 1;
            s.up = false;
        });
    }

    /// Takes connections again.
    pub fn restore(&self) {
        self.state.send_modify(|s| s.up = true);
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    async fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(socket: &mut TcpStream) -> Option<Vec<u8>> {
        socket.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        socket.read_exact(&mut buf).await.ok()?;
        Some(buf.to_vec())
    }

    #[tokio::test]
    async fn a_cut_closes_live_connections_and_refuses_new_ones_until_restored() {
        let proxy = Proxy::start(&echo_server().await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut live = TcpStream::connect(proxy.addr())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(round_trip(&mut live).await, Some(b"ping".to_vec()));

        proxy.cut();
        assert_eq!(round_trip(&mut live).await, None, "the live one is closed");
        let refused = TcpStream::connect(proxy.addr()).await;
        let mut refused = refused.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(round_trip(&mut refused).await, None, "a new one is dropped");

        proxy.restore();
        let mut again = TcpStream::connect(proxy.addr())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(round_trip(&mut again).await, Some(b"ping".to_vec()));
    }
}
