//! Testing distributed logic in one process: fakes at any address, and the calls they got.
//!
//! Code under test connects to addresses (`10.0.0.5:6123`) it was configured with or learned
//! from a peer. A [`TestNetwork`] lets a test put a fake there, any type implementing the
//! gateway trait, and hand the code under test a service on that network: its `connect` to
//! the address reaches the fake. Every call crosses the same encoding as over TCP (the
//! invocation encoded, queued as bytes, decoded on the fake's main thread, the reply encoded
//! back), so what the test sees is what a real peer would have received; nothing listens on
//! a socket. Each fake records the calls it received, decoded as the gateway's invocation
//! enum ([`Fake::calls`]), so a test asserts on them without bookkeeping of its own.
//!
//! ```
//! use rpc_core::{RpcEndpoint, rpc_gateway};
//! use rpc_core::testing::TestNetwork;
//!
//! #[rpc_gateway]
//! pub trait ResourceManager {
//!     async fn register(&mut self, executor: String, slots: u32) -> bool;
//! }
//!
//! #[derive(Default)]
//! struct FakeRm;
//! impl RpcEndpoint for FakeRm { rpc_core::serves!(ResourceManager); }
//! impl ResourceManager for FakeRm {
//!     async fn register(&mut self, _executor: String, slots: u32) -> bool { slots > 0 }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rpc_core::RpcError> {
//! let network = TestNetwork::new();
//! let rm = network.fake("10.0.0.5:6123", "rm", FakeRm).await?;
//!
//! // The code under test, given a service on the network and the address it knows:
//! let service = network.client();
//! let proxy: ResourceManagerClient = service.connect("10.0.0.5:6123", "rm").await?;
//! assert!(proxy.register("te-1".into(), 4).await?);
//!
//! let calls = rm.calls::<ResourceManagerClient>();
//! assert_eq!(calls.len(), 1);
//! assert_eq!(calls[0].method, "register");
//! assert!(matches!(
//!     &calls[0].invocation,
//!     ResourceManagerInvocation::register { executor, slots: 4 } if executor == "te-1"
//! ));
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;

use crate::caller::Peer;
use crate::context::RpcContext;
use crate::endpoint::RpcEndpoint;
use crate::error::RpcError;
use crate::gateway::{EndpointAddress, Gateway, Incarnation};
use crate::reference::Reference;
use crate::service::{RpcService, RpcServiceBuilder, ServiceInner};
use crate::session::Session;
use crate::trace::TraceContext;
use crate::transport::{
    Backlog, Binding, Busy, CallControl, EncodeInvocation, InboundSink, Network, RemoteChannel,
    ReplyTo, ServiceHandle, Transport,
};

/// Bytes of one caller's invocations that may wait in a fake's mailbox (as a connection's
/// `max_backlog_bytes`).
const BACKLOG: usize = 16 << 20;

/// An in-process network of services at made-up addresses: fakes where code under test
/// expects its peers, and services for the code under test itself. Clones share the network.
#[derive(Clone, Default)]
pub struct TestNetwork {
    inner: Arc<Hosts>,
}

#[derive(Default)]
struct Hosts {
    /// The services at each address.
    hosts: Mutex<HashMap<SocketAddr, Host>>,
    /// The port of the next client's made-up address.
    next_client: AtomicU16,
}

/// One address of the network: its service.
struct Host {
    service: Weak<ServiceInner>,
    handle: ServiceHandle,
}

/// The invocations a service received from other services (endpoint, gateway, the
/// invocation as it was encoded), when it records them
/// ([`RpcServiceBuilder::record_calls`]).
#[derive(Default)]
pub(crate) struct Recorded(Mutex<Vec<(String, String, Bytes)>>);

/// `inner`, recording every invocation it is handed for `binding` in `recorded` first.
pub(crate) fn recording(
    inner: Arc<dyn InboundSink>,
    recorded: Arc<Recorded>,
    binding: &Binding,
) -> Arc<dyn InboundSink> {
    Arc::new(RecordingSink {
        inner,
        recorded,
        endpoint: binding.endpoint.clone(),
        gateway: binding.gateway.clone(),
    })
}

struct RecordingSink {
    inner: Arc<dyn InboundSink>,
    recorded: Arc<Recorded>,
    endpoint: String,
    gateway: String,
}

impl InboundSink for RecordingSink {
    fn invoke(
        &self,
        payload: Bytes,
        ask: Option<(ReplyTo, Arc<CallControl>)>,
        backlog: &Arc<Backlog>,
    ) -> Result<(), Busy> {
        self.recorded
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((
                self.endpoint.clone(),
                self.gateway.clone(),
                Bytes::copy_from_slice(&payload),
            ));
        self.inner.invoke(payload, ask, backlog)
    }

    fn room(&self) -> Arc<tokio::sync::Notify> {
        self.inner.room()
    }

    fn mailbox_full(&self) -> RpcError {
        self.inner.mailbox_full()
    }

    fn incarnation(&self) -> Incarnation {
        self.inner.incarnation()
    }
}

/// The calls `service` received from other services for its endpoint `endpoint` through
/// gateway `G`, in the order they arrived, decoded (see [`Fake::calls`]). Empty unless the
/// service records calls: built with [`RpcServiceBuilder::record_calls`] (or
/// `rpc_netty::NettyBuilder::record_calls`, for a service on a real or simulated network),
/// as every service of a [`TestNetwork`] is.
pub fn calls<G: Gateway>(service: &RpcService, endpoint: &str) -> Vec<Call<G>> {
    let Some(recorded) = service.inner().recorded() else {
        return Vec::new();
    };
    let recorded = recorded.0.lock().unwrap_or_else(PoisonError::into_inner);
    let decoding = Arc::downgrade(service.inner());
    recorded
        .iter()
        .filter(|(name, gateway, _)| name == endpoint && gateway == G::NAME)
        .filter_map(|(_, _, payload)| decode::<G>(&decoding, payload))
        .map(|invocation| Call {
            method: G::METHODS[G::method_index(&invocation)].name,
            invocation,
        })
        .collect()
}

impl TestNetwork {
    /// An empty network.
    pub fn new() -> TestNetwork {
        TestNetwork::default()
    }

    /// Starts `fake` as endpoint `name` of the service at `address` (made on first use),
    /// so that `connect(address, name)` from any service of this network reaches it.
    ///
    /// # Panics
    ///
    /// If `address` is not a socket address (`"10.0.0.5:6123"`).
    pub async fn fake<E: RpcEndpoint>(
        &self,
        address: &str,
        name: &str,
        fake: E,
    ) -> Result<Fake<E>, RpcError> {
        let address = parse(address)?;
        let service = self.service_at_addr(address);
        let context = service.start_endpoint(name, fake).await?;
        Ok(Fake {
            name: name.to_owned(),
            address,
            context,
            service,
        })
    }

    /// The service at `address` (made on first use): the code under test, where it listens
    /// there. Its endpoints are reached by `connect(address, ..)` from this network.
    pub fn service_at(&self, address: &str) -> Result<RpcService, RpcError> {
        Ok(self.service_at_addr(parse(address)?))
    }

    /// A service that does not listen, on this network: its `connect` reaches the fakes and
    /// services at their addresses.
    pub fn client(&self) -> RpcService {
        let port = self.inner.next_client.fetch_add(1, Ordering::Relaxed);
        let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 40000 + port);
        self.make(address, false)
    }

    fn service_at_addr(&self, address: SocketAddr) -> RpcService {
        let hosts = self
            .inner
            .hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(service) = hosts.get(&address).and_then(|host| host.service.upgrade()) {
            return RpcService::from_inner(service);
        }
        drop(hosts);
        self.make(address, true)
    }

    fn make(&self, address: SocketAddr, listens: bool) -> RpcService {
        let network = Arc::downgrade(&self.inner);
        let mut made = None;
        let service = RpcServiceBuilder::new()
            .record_calls(true)
            .build_with_transport(|handle| {
                made = Some(handle.clone());
                TestTransport {
                    network,
                    address,
                    listens,
                }
            });
        if let (true, Some(handle)) = (listens, made) {
            let mut hosts = self
                .inner
                .hosts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            hosts.insert(
                address,
                Host {
                    service: Arc::downgrade(service.inner()),
                    handle,
                },
            );
        }
        service
    }
}

fn parse(address: &str) -> Result<SocketAddr, RpcError> {
    address.parse().map_err(|error| RpcError::ConnectFailed {
        address: address.to_owned(),
        reason: format!("a test network's addresses are socket addresses: {error}"),
    })
}

/// A fake started on a [`TestNetwork`]: its context, and the calls it received.
pub struct Fake<E: RpcEndpoint> {
    name: String,
    address: SocketAddr,
    context: RpcContext<E>,
    service: RpcService,
}

impl<E: RpcEndpoint> Fake<E> {
    /// Where the fake is.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The fake's context (to stop it, set its fencing token, run something on its main
    /// thread).
    pub fn context(&self) -> &RpcContext<E> {
        &self.context
    }

    /// The service the fake runs in (the one at its address).
    pub fn service(&self) -> &RpcService {
        &self.service
    }

    /// The calls the fake received through gateway `G` so far, in the order they arrived,
    /// each decoded as `G`'s invocation enum (`{Trait}Invocation`: a variant named after the
    /// method, with the arguments as fields). Calls through other gateways, and calls that
    /// did not decode, are left out.
    pub fn calls<G: Gateway>(&self) -> Vec<Call<G>> {
        calls::<G>(&self.service, &self.name)
    }
}

/// One call a [`Fake`] received.
pub struct Call<G: Gateway> {
    /// The method's name.
    pub method: &'static str,
    /// The method and its arguments: match on it.
    pub invocation: G::Invocation,
}

impl<G: Gateway> fmt::Debug for Call<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// One recorded invocation of `G`, decoded as the fake's service would (references in it
/// become that service's proxies).
fn decode<G: Gateway>(service: &Weak<ServiceInner>, payload: &[u8]) -> Option<G::Invocation> {
    let what = || format!("reading a recorded call of `{}`", G::NAME);
    let depth = crate::codec::DEFAULT_MAX_DECODE_DEPTH;
    type Header = (Option<TraceContext>, Option<Session>);
    crate::reference::decoding(service, || {
        if G::FENCED {
            crate::codec::decode::<(Header, Option<G::Token>, G::Invocation)>(payload, depth, what)
                .map(|(_, _, invocation)| invocation)
        } else {
            crate::codec::decode::<(Header, G::Invocation)>(payload, depth, what)
                .map(|(_, invocation)| invocation)
        }
    })
    .ok()
}

impl<E: RpcEndpoint> fmt::Debug for Fake<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fake")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TestNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts = self
            .inner
            .hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("TestNetwork")
            .field("addresses", &hosts.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A service's transport on a test network.
struct TestTransport {
    network: Weak<Hosts>,
    address: SocketAddr,
    listens: bool,
}

impl TestTransport {
    fn route(&self, address: SocketAddr, binding: &Binding) -> Result<TestChannel, RpcError> {
        let unreachable = |reason: &str| RpcError::ConnectFailed {
            address: address.to_string(),
            reason: reason.to_owned(),
        };
        let network = self
            .network
            .upgrade()
            .ok_or_else(|| unreachable("the test network is gone"))?;
        let hosts = network.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let host = hosts
            .get(&address)
            .filter(|host| host.service.strong_count() > 0)
            .ok_or_else(|| unreachable("nothing is at this address on the test network"))?;
        Ok(TestChannel {
            handle: host.handle.clone(),
            binding: binding.clone(),
            endpoint: Arc::new(EndpointAddress::new(
                binding.endpoint.as_str(),
                Some(address),
            )),
            backlog: Arc::new(Backlog::new(BACKLOG, Peer::new(self.address))),
            address,
        })
    }
}

impl Transport for TestTransport {
    fn local_address(&self) -> Option<SocketAddr> {
        self.listens.then_some(self.address)
    }

    fn resolve(&self, address: &str) -> BoxFuture<'static, Result<SocketAddr, RpcError>> {
        let parsed = parse(address);
        Box::pin(async move { parsed })
    }

    fn connect(
        &self,
        address: SocketAddr,
        binding: Binding,
    ) -> BoxFuture<'static, Result<Arc<dyn RemoteChannel>, RpcError>> {
        let routed = self.route(address, &binding).and_then(|mut channel| {
            let sink = channel.handle.resolve(&binding, Network::Inner)?;
            channel.binding.incarnation = Some(sink.incarnation());
            Ok(Arc::new(channel) as Arc<dyn RemoteChannel>)
        });
        Box::pin(async move { routed })
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn channel(
        &self,
        address: SocketAddr,
        binding: Binding,
    ) -> Result<Arc<dyn RemoteChannel>, RpcError> {
        Ok(Arc::new(self.route(address, &binding)?))
    }
}

/// A route to one gateway of an endpoint on the test network: each call is encoded and handed to the endpoint's inbound sink as a transport would.
struct TestChannel {
    handle: ServiceHandle,
    binding: Binding,
    endpoint: Arc<EndpointAddress>,
    /// The caller's side, as the fake's handlers see it.
    backlog: Arc<Backlog>,
    address: SocketAddr,
}

impl TestChannel {
    fn call(
        &self,
        encode: EncodeInvocation<'_>,
        ask: Option<(ReplyTo, Arc<CallControl>)>,
    ) -> Result<(), RpcError> {
        let mut buffer = BytesMut::new();
        encode(&mut buffer)?;
        let payload = buffer.freeze();
        // Resolved call by call: a stopped or restarted endpoint is seen at once.
        let sink = self.handle.resolve(&self.binding, Network::Inner)?;
        match sink.invoke(payload, ask, &self.backlog) {
            Ok(()) => Ok(()),
            Err(busy) => {
                let full = sink.mailbox_full();
                match busy.reply {
                    Some(reply) => reply.send(Err(full)),
                    None => tracing::warn!(endpoint = %self.endpoint, "dropped a tell: {full}"),
                }
                Ok(())
            }
        }
    }
}

impl RemoteChannel for TestChannel {
    fn endpoint(&self) -> &Arc<EndpointAddress> {
        &self.endpoint
    }

    fn ask(
        &self,
        encode: EncodeInvocation<'_>,
        reply: ReplyTo,
        control: &Arc<CallControl>,
    ) -> Result<(), RpcError> {
        self.call(encode, Some((reply, Arc::clone(control))))
    }

    fn tell(&self, encode: EncodeInvocation<'_>) -> Result<(), RpcError> {
        self.call(encode, None)
    }

    fn reference(&self) -> Result<Reference, RpcError> {
        self.binding.reference_at(self.address, &self.endpoint)
    }
}
