//! TLS (rpc-netty's `tls` feature) with certificates made in the test: encrypted traffic,
//! verified servers, optional client certificates, and shared-secret authentication on top.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rpc_core::{RpcEndpoint, RpcError, RpcService, rpc_gateway};
use rpc_netty::NettyBuilder;
use rpc_netty::tls::TlsOptions;
use rpc_netty::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority made for one test.
struct Authority {
    certificate: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new() -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap().der().clone();
        Authority {
            certificate,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (an IP address becomes an IP address name) and its key.
    fn issue(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![certificate.der().clone()], key)
    }
}

#[rpc_gateway]
pub trait Notary {
    async fn stamp(&mut self, text: String) -> String;
    /// The caller as its handler sees it, and the certificate it presented.
    async fn caller(&mut self) -> (String, Option<Vec<u8>>);
}

struct Office {
    calls: Arc<AtomicUsize>,
}

impl RpcEndpoint for Office {
    rpc_core::serves!(Notary);
}

impl Notary for Office {
    async fn stamp(&mut self, text: String) -> String {
        self.calls.fetch_add(1, Ordering::SeqCst);
        format!("stamped: {text}")
    }
    async fn caller(&mut self) -> (String, Option<Vec<u8>>) {
        let caller = rpc_core::CallContext::current().caller().clone();
        let certificate = caller
            .peer()
            .and_then(|peer| peer.certificate.as_deref().map(<[u8]>::to_vec));
        (caller.to_string(), certificate)
    }
}

async fn serve(builder: NettyBuilder) -> (RpcService, String, Arc<AtomicUsize>) {
    common::init_tracing();
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    server
        .start_endpoint(
            "notary",
            Office {
                calls: Arc::clone(&calls),
            },
        )
        .await
        .unwrap();
    let address = server.local_address().unwrap().to_string();
    (server, address, calls)
}

fn tls_server(authority: &Authority) -> NettyBuilder {
    let (chain, key) = authority.issue(&["127.0.0.1"]);
    NettyBuilder::new()
        .tls(TlsOptions::new().identity(chain, key))
        .unwrap()
}

fn tls_client(roots: Vec<CertificateDer<'static>>) -> RpcService {
    NettyBuilder::new()
        .tls(TlsOptions::new().trust_roots(roots))
        .unwrap()
        .client()
}

#[tokio::test]
async fn calls_travel_encrypted_to_a_verified_server() {
    let authority = Authority::new();
    let (server, address, _) = serve(tls_server(&authority)).await;
    let (proxy, recorded) = common::recording_proxy(address.parse().unwrap()).await;
    let client = NettyBuilder::new()
        .tls(
            TlsOptions::new()
                .trust_roots(vec![authority.certificate.clone()])
                .server_name("127.0.0.1"),
        )
        .unwrap()
        .client();
    let notary: NotaryClient = client.connect(&proxy.to_string(), "notary").await.unwrap();
    let marker = "a-very-recognisable-plaintext-marker";
    assert_eq!(
        notary.stamp(marker.into()).await.unwrap(),
        format!("stamped: {marker}")
    );
    // The handler sees that the call came over TLS, from a client that proved nothing.
    let (caller, certificate) = notary.caller().await.unwrap();
    assert!(caller.ends_with("(TLS)"), "{caller}");
    assert_eq!(certificate, None);
    let tape = recorded.lock().unwrap().clone();
    assert!(tape.len() > 100, "the proxy saw the traffic");
    assert!(
        !tape.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "plaintext crossed the wire"
    );
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_server_with_an_untrusted_certificate_is_refused() {
    let (server, address, calls) = serve(tls_server(&Authority::new())).await;
    let client = tls_client(vec![Authority::new().certificate]);
    match client.connect::<NotaryClient>(&address, "notary").await {
        Err(RpcError::Unauthenticated { reason, .. }) => {
            assert!(reason.contains("TLS"), "{reason}");
        }
        other => panic!("expected Unauthenticated (TLS), got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_plaintext_client_gets_nothing_from_a_tls_server() {
    let (server, address, calls) = serve(tls_server(&Authority::new())).await;
    let client = NettyBuilder::new()
        .connect_timeout(std::time::Duration::from_secs(5))
        .client();
    let started = std::time::Instant::now();
    let refused = client.connect::<NotaryClient>(&address, "notary").await;
    match refused {
        Err(RpcError::ConnectFailed { reason, .. }) => {
            assert!(reason.contains("TLS"), "the error says why: {reason}");
            assert!(
                !reason.contains("connect_timeout"),
                "not by timeout: {reason}"
            );
        }
        other => panic!("expected ConnectFailed naming TLS, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_tls_client_is_told_that_the_server_does_not_speak_tls() {
    let (server, address, calls) = serve(NettyBuilder::new()).await;
    let client = tls_client(vec![Authority::new().certificate]);
    match client.connect::<NotaryClient>(&address, "notary").await {
        Err(RpcError::ConnectFailed { reason, .. }) => {
            assert!(reason.contains("does not speak TLS"), "{reason}");
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_server_can_require_client_certificates() {
    let authority = Authority::new();
    let (chain, key) = authority.issue(&["127.0.0.1"]);
    let options = TlsOptions::new()
        .identity(chain, key)
        .require_client_certificates(vec![authority.certificate.clone()]);
    let (server, address, calls) = serve(NettyBuilder::new().tls(options).unwrap()).await;

    let anonymous = tls_client(vec![authority.certificate.clone()]);
    let refused = anonymous.connect::<NotaryClient>(&address, "notary").await;
    assert!(refused.is_err(), "a client without a certificate connected");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let (chain, key) = authority.issue(&["client.example"]);
    let presented = chain[0].as_ref().to_vec();
    let known = NettyBuilder::new()
        .tls(
            TlsOptions::new()
                .identity(chain, key)
                .trust_roots(vec![authority.certificate.clone()]),
        )
        .unwrap()
        .client();
    let notary: NotaryClient = known.connect(&address, "notary").await.unwrap();
    assert_eq!(notary.stamp("ok".into()).await.unwrap(), "stamped: ok");
    // The handler sees the certificate the client presented.
    let (caller, certificate) = notary.caller().await.unwrap();
    assert_eq!(certificate, Some(presented));
    assert!(caller.ends_with("(TLS, client certificate)"), "{caller}");
    anonymous.shutdown().await.unwrap();
    known.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tls_and_a_shared_secret_work_together() {
    let authority = Authority::new();
    let (server, address, _) = serve(tls_server(&authority).shared_secret("both")).await;
    let client = NettyBuilder::new()
        .tls(TlsOptions::new().trust_roots(vec![authority.certificate.clone()]))
        .unwrap()
        .shared_secret("both")
        .client();
    let notary: NotaryClient = client.connect(&address, "notary").await.unwrap();
    assert_eq!(notary.stamp("x".into()).await.unwrap(), "stamped: x");
    let (caller, certificate) = notary.caller().await.unwrap();
    assert!(caller.ends_with("(TLS, shared secret)"), "{caller}");
    assert_eq!(certificate, None);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}
