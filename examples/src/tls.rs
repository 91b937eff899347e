//! TLS between services (rpc-netty's `tls` feature): a notary served over TLS with a
//! self-signed certificate made at run time with `rcgen`, and a client that trusts exactly
//! that certificate.
//!
//! A service given an identity (a certificate chain and its private key) accepts only TLS
//! connections; a service given trust roots opens only TLS connections and checks the
//! server's certificate against them, by default for the IP address it connects to (so the
//! certificate here names `127.0.0.1`). A real deployment loads its certificates from files
//! signed by its own authority; everything else stays the same.

use std::fmt;

use rpc_core::{CallContext, RpcEndpoint, rpc_gateway};
use rpc_netty::tls::TlsOptions;
use rpc_netty::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

/// A self-signed certificate and its private key, made at run time.
pub struct SelfSigned {
    /// The certificate (DER): the server's whole chain, and the client's only trust root.
    pub certificate: CertificateDer<'static>,
    /// The certificate's private key (PKCS #8, DER).
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("certificate_bytes", &self.certificate.len())
            .finish_non_exhaustive()
    }
}

impl SelfSigned {
    /// Makes a fresh key pair and a certificate for `names`. A name that parses as an IP
    /// address (such as `"127.0.0.1"`) becomes an IP address name, any other a DNS name.
    pub fn generate(names: &[&str]) -> Result<SelfSigned, rcgen::Error> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let made = rcgen::generate_simple_self_signed(names)?;
        let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
        Ok(SelfSigned {
            certificate: made.cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(key),
        })
    }

    /// The server's TLS settings: serve with this certificate and key.
    pub fn server_options(&self) -> TlsOptions {
        TlsOptions::new().identity(vec![self.certificate.clone()], self.key.clone_key())
    }

    /// A client's TLS settings: trust this certificate, and nothing else.
    pub fn client_options(&self) -> TlsOptions {
        TlsOptions::new().trust_roots(vec![self.certificate.clone()])
    }
}

/// A stamped document, and who asked for it as the handler saw them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    /// The text, stamped.
    pub text: String,
    /// The caller as the handler saw it (`CallContext::caller`).
    pub caller: String,
}

/// What a client may ask of the notary.
#[rpc_gateway]
pub trait NotaryGateway {
    /// Stamps `text`.
    async fn stamp(&mut self, text: String) -> Stamp;
    /// How many documents have been stamped so far.
    async fn stamped(&mut self) -> u64;
}

/// The endpoint: counts the documents it stamps.
#[derive(Debug, Default)]
pub struct Notary {
    /// Documents stamped.
    pub stamped: u64,
}

impl RpcEndpoint for Notary {
    rpc_core::serves!(NotaryGateway);
}

impl NotaryGateway for Notary {
    async fn stamp(&mut self, text: String) -> Stamp {
        self.stamped += 1;
        let caller = CallContext::current().caller().to_string();
        println!("notary: stamping {text:?} for {caller}");
        Stamp {
            text: format!("stamped: {text}"),
            caller,
        }
    }

    async fn stamped(&mut self) -> u64 {
        self.stamped
    }
}
