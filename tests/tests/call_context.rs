//! A handler reads who called it from its `CallContext`: a remote peer (address, and what its
//! handshake proved), a proxy in this process, or nobody (a direct call, as a unit test makes).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{Harness, Mode, bounded};
use rpc_core::{CallContext, Caller, Deferred, RpcContext, RpcEndpoint, rpc_gateway};
use rpc_netty::NettyBuilder;

#[rpc_gateway]
pub trait Whoami {
    /// The caller, as the handler of an ask sees it.
    async fn who(&mut self) -> String;
    /// The remote caller's address, if the call came over a connection.
    async fn peer(&mut self) -> Option<(SocketAddr, bool)>;
    /// A tell: records its caller.
    fn note(&mut self);
    /// The name of the endpoint, from the context every handler can reach.
    async fn own_name(&mut self) -> String;
    /// The same, from a `run_async` closure the handler queued, once it has run.
    fn later_name(&mut self) -> Deferred<Option<String>>;
}

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Caller>>>);

struct Mirror {
    seen: Seen,
}

impl RpcEndpoint for Mirror {
    rpc_core::serves!(Whoami);
}

impl Whoami for Mirror {
    async fn who(&mut self) -> String {
        CallContext::current().caller().to_string()
    }
    async fn peer(&mut self) -> Option<(SocketAddr, bool)> {
        CallContext::current()
            .caller()
            .peer()
            .map(|peer| (peer.address, peer.shared_secret))
    }
    fn note(&mut self) {
        let caller = CallContext::current().caller().clone();
        self.seen.0.lock().unwrap().push(caller);
    }
    async fn own_name(&mut self) -> String {
        RpcContext::<Self>::current().name().to_owned()
    }
    fn later_name(&mut self) -> Deferred<Option<String>> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        RpcContext::<Self>::current()
            .run_async(move |_: &mut Mirror| {
                let name = RpcContext::<Mirror>::try_current().map(|ctx| ctx.name().to_owned());
                let _ = sender.send(name);
            })
            .unwrap();
        // The closure runs on the main thread after this handler returns; the reply waits
        // for it off the main thread, where there is no context.
        Deferred::new(async move {
            assert!(RpcContext::<Mirror>::try_current().is_none());
            receiver.await.ok().flatten()
        })
    }
}

#[tokio::test]
async fn handlers_reach_their_context_without_keeping_it() {
    bounded(async {
        let harness = Harness::new(Mode::Tcp).await;
        harness
            .server
            .start_endpoint(
                "mirror",
                Mirror {
                    seen: Seen::default(),
                },
            )
            .await
            .unwrap();
        let mirror: WhoamiClient = harness.gateway("mirror").await.unwrap();
        assert_eq!(mirror.own_name().await.unwrap(), "mirror");
        assert_eq!(
            mirror.later_name().await.unwrap(),
            Some("mirror".to_owned())
        );
        harness.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_direct_call_has_no_context() {
    assert!(RpcContext::<Mirror>::try_current().is_none());
    let outcome = tokio::spawn(async {
        let mut mirror = Mirror {
            seen: Seen::default(),
        };
        mirror.own_name().await
    })
    .await;
    let panic = outcome.unwrap_err().into_panic();
    let message = panic.downcast_ref::<String>().expect("a message");
    assert!(message.contains("outside the main thread"), "{message}");
}

#[tokio::test]
async fn a_direct_call_has_no_caller() {
    let mut mirror = Mirror {
        seen: Seen::default(),
    };
    assert_eq!(mirror.who().await, "a direct call");
    assert_eq!(mirror.peer().await, None);
    mirror.note();
    assert_eq!(*mirror.seen.0.lock().unwrap(), vec![Caller::Direct]);
}

async fn callers(mode: Mode) -> (String, Option<(SocketAddr, bool)>, Vec<Caller>) {
    let harness = Harness::new(mode).await;
    let seen = Seen::default();
    harness
        .server
        .start_endpoint("mirror", Mirror { seen: seen.clone() })
        .await
        .unwrap();
    let mirror: WhoamiClient = harness.gateway("mirror").await.unwrap();
    let who = mirror.who().await.unwrap();
    let peer = mirror.peer().await.unwrap();
    mirror.note().unwrap();
    // An ask after the tell: the tell has run once it returns.
    mirror.who().await.unwrap();
    harness.shutdown().await.unwrap();
    let seen = seen.0.lock().unwrap().clone();
    (who, peer, seen)
}

#[tokio::test]
async fn a_local_proxy_is_a_local_caller() {
    for mode in [Mode::InProcess, Mode::Serialized] {
        let (who, peer, seen) = bounded(callers(mode)).await;
        assert_eq!(who, "a proxy in this process");
        assert_eq!(peer, None);
        assert_eq!(seen, vec![Caller::Local]);
    }
}

#[tokio::test]
async fn a_remote_caller_is_its_connection_s_peer() {
    let (who, peer, seen) = bounded(callers(Mode::Tcp)).await;
    let (address, secret) = peer.expect("a remote caller");
    assert!(address.ip().is_loopback(), "{address}");
    assert!(!secret, "no secret was configured");
    assert_eq!(who, format!("peer {address}"));
    // The tell saw the same peer as the asks: one connection.
    assert!(
        matches!(&seen[..], [Caller::Remote(peer)] if peer.address == address),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_peer_that_proved_the_secret_says_so() {
    bounded(async {
        let server = NettyBuilder::new()
            .shared_secret("s3cret")
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        server
            .start_endpoint(
                "mirror",
                Mirror {
                    seen: Seen::default(),
                },
            )
            .await
            .unwrap();
        let client = NettyBuilder::new().shared_secret("s3cret").client();
        let mirror: WhoamiClient = client
            .connect(server.local_address().unwrap(), "mirror")
            .await
            .unwrap();
        let (address, secret) = mirror.peer().await.unwrap().expect("a remote caller");
        assert!(secret);
        assert_eq!(
            mirror.who().await.unwrap(),
            format!("peer {address} (shared secret)")
        );
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
    })
    .await;
}
