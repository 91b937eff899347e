//! TLS (cargo feature `tls`): rustls, with the ring crypto provider, through tokio-rustls.
//!
//! A service with an identity (certificate chain and private key) accepts only TLS
//! connections; a service with trust roots opens only TLS connections, verifying the server's
//! certificate against them. Client certificates are optional: a server can require them, and
//! a client with an identity presents it. The TLS handshake runs before the protocol's own
//! handshake (and its shared-secret authentication, which still applies when set).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::net::Stream as TcpStream;
use rpc_core::RpcError;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig, crypto};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::io::{Reader, Wrapped, Writer};

pub use tokio_rustls::rustls;

/// What TLS a service uses. See [`NettyBuilder::tls`](crate::NettyBuilder::tls).
///
/// Certificates and keys are rustls' DER types; [`rustls::pki_types::pem::PemObject`] reads
/// them from PEM files. Here a server requires client certificates signed by the
/// deployment's authority, and a client presents one and checks the server's name:
///
/// ```no_run
/// use rpc_netty::NettyBuilder;
/// use rpc_netty::tls::TlsOptions;
/// use rpc_netty::tls::rustls::pki_types::pem::{self, PemObject};
/// use rpc_netty::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
///
/// /// A certificate chain (leaf first) and its key, from PEM files.
/// fn identity(chain: &str, key: &str) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), pem::Error> {
///     let chain = CertificateDer::pem_file_iter(chain)?.collect::<Result<_, _>>()?;
///     Ok((chain, PrivateKeyDer::from_pem_file(key)?))
/// }
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = CertificateDer::from_pem_file("ca.pem")?;
/// let (chain, key) = identity("scheduler.pem", "scheduler.key")?;
/// let server = NettyBuilder::new()
///     .tls(TlsOptions::new().identity(chain, key).require_client_certificates(vec![ca.clone()]))?
///     .bind("0.0.0.0:7070")
///     .await?;
///
/// let (chain, key) = identity("worker.pem", "worker.key")?;
/// let options = TlsOptions::new()
///     .identity(chain, key)            // presented to servers that require it
///     .trust_roots(vec![ca])           // servers must be signed by the authority ...
///     .server_name("scheduler.internal"); // ... for this name, not the IP address
/// let client = NettyBuilder::new().tls(options)?.client();
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct TlsOptions {
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    trust_roots: Vec<CertificateDer<'static>>,
    client_roots: Option<Vec<CertificateDer<'static>>>,
    server_name: Option<String>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field(
                "identity",
                &self.identity.as_ref().map(|(chain, _)| chain.len()),
            )
            .field("trust_roots", &self.trust_roots.len())
            .field("client_roots", &self.client_roots.as_ref().map(Vec::len))
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsOptions {
    /// No TLS yet: add an identity to serve TLS, trust roots to connect with TLS.
    pub fn new() -> Self {
        Self::default()
    }

    /// The certificate chain (leaf first) and private key this service presents: as a server
    /// (needed to accept TLS connections), and as a client to servers that require client
    /// certificates.
    pub fn identity(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.identity = Some((chain, key));
        self
    }

    /// The certificate authorities this service trusts for the servers it connects to. With
    /// any, every outbound connection uses TLS.
    pub fn trust_roots(mut self, roots: Vec<CertificateDer<'static>>) -> Self {
        self.trust_roots = roots;
        self
    }

    /// Requires every inbound connection to present a client certificate signed by one of
    /// `roots`.
    pub fn require_client_certificates(mut self, roots: Vec<CertificateDer<'static>>) -> Self {
        self.client_roots = Some(roots);
        self
    }

    /// The name servers' certificates are checked against (default: the IP address
    /// connected to, which the certificate must then list).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }
}

/// The rustls configuration built from [`TlsOptions`].
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: Option<TlsAcceptor>,
    connector: Option<TlsConnector>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("serves", &self.acceptor.is_some())
            .field("connects", &self.connector.is_some())
            .finish()
    }
}

fn invalid(what: &str) -> impl FnOnce(rustls::Error) -> io::Error + '_ {
    move |error| io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {error}"))
}

fn store(roots: &[CertificateDer<'static>]) -> io::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).map_err(invalid("a trust root"))?;
    }
    Ok(store)
}

impl Tls {
    pub(crate) fn new(options: TlsOptions) -> io::Result<Tls> {
        let provider: Arc<CryptoProvider> = Arc::new(crypto::ring::default_provider());
        let acceptor = match &options.identity {
            None => None,
            Some((chain, key)) => {
                let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
                    .with_safe_default_protocol_versions()
                    .map_err(invalid("TLS versions"))?;
                let builder = match &options.client_roots {
                    None => builder.with_no_client_auth(),
                    Some(roots) => {
                        let verifier = WebPkiClientVerifier::builder_with_provider(
                            Arc::new(store(roots)?),
                            Arc::clone(&provider),
                        )
                        .build()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
                        builder.with_client_cert_verifier(verifier)
                    }
                };
                let config = builder
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(invalid("the server identity"))?;
                Some(TlsAcceptor::from(Arc::new(config)))
            }
        };
        let connector = if options.trust_roots.is_empty() {
            None
        } else {
            let builder = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(invalid("TLS versions"))?
                .with_root_certificates(store(&options.trust_roots)?);
            let config = match &options.identity {
                None => builder.with_no_client_auth(),
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .map_err(invalid("the client identity"))?,
            };
            Some(TlsConnector::from(Arc::new(config)))
        };
        let server_name = options
            .server_name
            .map(|name| {
                ServerName::try_from(name)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            })
            .transpose()?;
        Ok(Tls {
            acceptor,
            connector,
            server_name,
        })
    }

    /// Runs the server side of the TLS handshake, if this service serves TLS.
    /// Runs the server side of the TLS handshake, if this service listens with TLS; also
    /// gives the client's certificate (DER), when it presented one.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> Result<(Reader, Writer, Option<Arc<[u8]>>), String> {
        match &self.acceptor {
            None => {
                let (read, write) = crate::io::plain(stream);
                Ok((read, write, None))
            }
            Some(acceptor) => {
                let stream = acceptor
                    .accept(stream)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                let certificate = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|certificate| Arc::from(certificate.as_ref()));
                let (read, write) = tokio::io::split(stream);
                Ok((Box::new(read), Box::new(Wrapped(write)), certificate))
            }
        }
    }

    /// Runs the client side of the TLS handshake, if this service connects with TLS. A
    /// server that answers in the clear is `ConnectFailed`; a certificate that does not check
    /// out is `Unauthenticated`.
    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<(Reader, Writer), RpcError> {
        match &self.connector {
            None => Ok(crate::io::plain(stream)),
            Some(connector) => {
                let name = self
                    .server_name
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(peer.ip().into()));
                let stream = connector.connect(name, stream).await.map_err(|error| {
                    let not_tls = matches!(
                        error
                            .get_ref()
                            .and_then(|e| e.downcast_ref::<rustls::Error>()),
                        Some(rustls::Error::InvalidMessage(_))
                    );
                    if not_tls {
                        RpcError::ConnectFailed {
                            address: peer.to_string(),
                            reason: format!(
                                "the server does not speak TLS (TLS handshake failed: {error}); \
                                 it serves without TLS, or is not an rpc service"
                            ),
                        }
                    } else {
                        RpcError::Unauthenticated {
                            address: peer,
                            reason: format!("TLS handshake failed: {error}"),
                        }
                    }
                })?;
                let (read, write) = tokio::io::split(stream);
                Ok((Box::new(read), Box::new(Wrapped(write))))
            }
        }
    }
}
