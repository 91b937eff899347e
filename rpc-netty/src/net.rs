//! The sockets under the transport: the operating system's TCP, or (feature `sim`,
//! [`NettyBuilder::simulated`](crate::NettyBuilder::simulated)) turmoil's simulated TCP, in
//! which a test runs the same transport on hosts and links it partitions, delays, holds and
//! crashes under a seed. Everything above this module sees the same streams.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::io::{Reader, Writer};

/// A connected stream.
pub(crate) enum Stream {
    /// The operating system's TCP.
    Tcp(tokio::net::TcpStream),
    /// turmoil's simulated TCP.
    #[cfg(feature = "sim")]
    Sim(turmoil::net::TcpStream),
}

/// A listening socket.
pub(crate) enum Listener {
    /// The operating system's TCP.
    Tcp(tokio::net::TcpListener),
    /// turmoil's simulated TCP.
    #[cfg(feature = "sim")]
    Sim(turmoil::net::TcpListener),
}

/// Opens a connection to `peer`, simulated or not.
pub(crate) async fn connect(peer: SocketAddr, simulated: bool) -> io::Result<Stream> {
    #[cfg(feature = "sim")]
    if simulated {
        return turmoil::net::TcpStream::connect(peer)
            .await
            .map(Stream::Sim);
    }
    let _ = simulated;
    tokio::net::TcpStream::connect(peer).await.map(Stream::Tcp)
}

/// Listens on `address`, simulated or not.
pub(crate) async fn bind(address: &str, simulated: bool) -> io::Result<Listener> {
    #[cfg(feature = "sim")]
    if simulated {
        return turmoil::net::TcpListener::bind(address)
            .await
            .map(Listener::Sim);
    }
    let _ = simulated;
    tokio::net::TcpListener::bind(address)
        .await
        .map(Listener::Tcp)
}

/// The addresses `host:port` names (a simulated host's name, in a simulation).
pub(crate) async fn lookup(address: &str, simulated: bool) -> io::Result<Vec<SocketAddr>> {
    #[cfg(feature = "sim")]
    if simulated {
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not a port"))?;
        return Ok(vec![SocketAddr::new(turmoil::lookup(host), port)]);
    }
    let _ = simulated;
    Ok(tokio::net::lookup_host(address).await?.collect())
}

impl Listener {
    /// The next connection, and where it comes from.
    pub(crate) async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Stream::Tcp(stream), peer))
            }
            #[cfg(feature = "sim")]
            Listener::Sim(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Stream::Sim(stream), peer))
            }
        }
    }

    /// The address it listens on.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr(),
            #[cfg(feature = "sim")]
            Listener::Sim(listener) => listener.local_addr(),
        }
    }
}

impl Stream {
    /// Sends small frames at once (`TCP_NODELAY`).
    pub(crate) fn set_nodelay(&self) {
        match self {
            Stream::Tcp(stream) => {
                let _ = stream.set_nodelay(true);
            }
            #[cfg(feature = "sim")]
            Stream::Sim(_) => {}
        }
    }

    /// The halves of a plain connection (split without a lock).
    pub(crate) fn split(self) -> (Reader, Writer) {
        match self {
            Stream::Tcp(stream) => {
                let (read, write) = stream.into_split();
                (
                    Box::new(read),
                    Box::new(crate::io::TcpWrite(std::sync::Arc::new(write))),
                )
            }
            #[cfg(feature = "sim")]
            Stream::Sim(stream) => {
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(crate::io::Wrapped(write)))
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            #[cfg(feature = "sim")]
            Stream::Sim(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            #[cfg(feature = "sim")]
            Stream::Sim(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            #[cfg(feature = "sim")]
            Stream::Sim(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            #[cfg(feature = "sim")]
            Stream::Sim(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
