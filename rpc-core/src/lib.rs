//! Typed, RMI-style RPC for Rust: annotate a trait, implement it on a plain struct, call it
//! through a generated typed proxy.
//!
//! ```
//! use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};
//!
//! #[rpc_gateway]
//! pub trait HelloGateway {
//!     /// An ask: the caller awaits the reply.
//!     async fn say_hi(&mut self, name: String) -> String;
//!     /// A tell: one-way, no reply.
//!     fn heartbeat(&mut self, executor_id: String);
//! }
//!
//! #[derive(Default)]
//! struct Hello {
//!     beats: u64, // plain state: no Mutex, no Arc
//! }
//!
//! impl RpcEndpoint for Hello {
//!     rpc_core::serves!(HelloGateway);
//! }
//!
//! impl HelloGateway for Hello {
//!     async fn say_hi(&mut self, name: String) -> String {
//!         format!("hi, {name}")
//!     }
//!     fn heartbeat(&mut self, _executor_id: String) {
//!         self.beats += 1;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rpc_core::RpcError> {
//! // The endpoint is an ordinary value: test it by calling its methods.
//! assert_eq!(Hello::default().say_hi("neo".into()).await, "hi, neo");
//!
//! // Or run it as an endpoint and call it through the generated proxy.
//! let service = RpcService::new();
//! service.start_endpoint("hello", Hello::default()).await?;
//! let hello: HelloGatewayClient = service.gateway("hello")?;
//! assert_eq!(hello.say_hi("neo".into()).await?, "hi, neo");
//! hello.heartbeat("exec-1".into())?;
//! service.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`endpoint`](RpcEndpoint): the [`RpcEndpoint`] trait (lifecycle hooks) and [`Gateways`].
//! - `mailbox`: the per-endpoint mailbox and main loop that runs invocations one at a time.
//! - [`context`](RpcContext): [`RpcContext`], an endpoint's handle to its main thread.
//! - [`service`](RpcService): [`RpcService`], which starts endpoints and hands out gateways.
//! - `gateway`: the traits the macro targets and the untyped handle inside every proxy.
//! - `call`: [`RpcCall`], an ask in flight, and the reply plumbing.
//! - `control`: what caller and callee of one ask share (deadline, cancellation), and
//!   [`CallContext`], a handler's view of it.
//! - `codec`: the one place values are encoded and decoded (postcard).
//! - `target`: the local call target.
//! - [`transport`]: the seam a network transport (`rpc-netty`) implements: remote call target,
//!   inbound sinks, connection events.
//! - [`deferred`](Deferred): [`Deferred`], a reply finished off the main thread.
//! - `stream`: [`RpcStream`] (a streamed reply) and [`Streaming`] (the caller's side), with
//!   credit-based flow control over a transport.
//! - `reference`: gateway references, proxies sent inside messages (see [`rpc_gateway`]).
//! - `relay`: relays ([`RpcService::start_relay`]) and followers ([`RpcService::follow`]):
//!   calls forwarded as the bytes they arrived in, re-routed when their target moves.
//! - `session`: [`Session`], a player's identity on a Gate, carried by relayed calls.
//! - [`testing`]: fakes at any address ([`testing::TestNetwork`]) and the calls they received.
//! - [`error`](RpcError): [`RpcError`].
//! - [`fencing`]: fenced gateways and endpoints (Flink's fencing tokens), [`FencingId`].
//! - `trace`: [`TraceContext`], the trace a call carries from caller to callee (and, with
//!   the `opentelemetry` feature, from and to an OpenTelemetry layer).
//! - `metrics` (feature `metrics`): calls, errors, latency, in-flight calls and mailbox
//!   depth through the `metrics` facade (the README's "Observability" lists them).
//!
//! rpc-core does no I/O: it has no sockets. The network transport lives in `rpc-netty`.

#![warn(missing_docs, missing_debug_implementations)]

mod address;
mod call;
mod caller;
mod codec;
mod context;
mod control;
mod deferred;
mod depth;
mod endpoint;
mod error;
pub mod fencing;
mod gateway;
mod inbox;
mod mailbox;
mod metrics;
mod reference;
mod relay;
mod retry;
mod service;
mod session;
mod stream;
mod target;
pub mod testing;
mod trace;
pub mod transport;
mod wire;

pub use address::ToAddress;
pub use call::{AbortHandle, RpcCall};
pub use caller::{Caller, Connection, Direction, Peer};
pub use codec::DEFAULT_MAX_DECODE_DEPTH;
pub use context::{RpcContext, ScheduledCall, ScheduledRun};
pub use control::CallContext;
pub use deferred::Deferred;
pub use endpoint::{
    BoxError, DEFAULT_MAILBOX_BYTES, DEFAULT_MAILBOX_CAPACITY, EndpointOptions, Gateways,
    RpcEndpoint,
};
pub use error::{RpcError, TimeoutSource};
pub use fencing::{FencedEndpoint, FencingId, FencingToken, ParseFencingIdError, Unfenced};
pub use gateway::{
    CallTarget, EndpointAddress, FencedGateway, Gateway, Incarnation, UnfencedGateway,
};
pub use relay::{Hop, RouteRequest, Router};
pub use retry::ConnectRetry;
pub use service::{DEFAULT_TIMEOUT, RpcService, RpcServiceBuilder};
pub use session::Session;
pub use stream::{RpcStream, STREAM_WINDOW, Streaming};
pub use trace::{ParseTraceContextError, SpanId, TraceContext, TraceId, ZeroId};
pub use wire::{RpcArgument, RpcReply, bulk};

/// Turns a trait into an RPC gateway.
///
/// From one trait it generates:
///
/// - the trait itself, with each `async fn` rewritten to return `impl Future + Send` (an
///   implementor still writes `async fn`; its future must be `Send`);
/// - `{Trait}Client`: the typed proxy, one method per trait method;
/// - `{Trait}Invocation`: the invocation message (a serde enum, one variant per method);
/// - the dispatcher that runs an invocation on an endpoint implementing the trait;
/// - a compile-time fingerprint of the method signatures, checked when a client connects.
///
/// # Methods
///
/// | in the trait | kind | on the proxy |
/// | --- | --- | --- |
/// | `async fn m(&mut self, a: A) -> T` | ask | `fn m(&self, a: A) -> RpcCall<T>`, awaited for `Result<T, RpcError>` |
/// | `async fn m(&mut self, a: A)` | ask with no value | `fn m(&self, a: A) -> RpcCall<()>` |
/// | `fn m(&mut self, a: A) -> Deferred<T>` | ask replied off the main thread | `fn m(&self, a: A) -> RpcCall<T>` |
/// | `fn m(&mut self, a: A)` | tell (one-way) | `fn m(&self, a: A) -> Result<(), RpcError>` |
/// | `fn m(&mut self, a: A) -> RpcStream<T>` (or `async fn`) | streamed reply | `fn m(&self, a: A) -> Streaming<T>`, a `Stream` of `Result<T, RpcError>` (see [`RpcStream`]) |
///
/// `T` may be `Result<V, E>`: a domain error reaches the caller as the value, as the endpoint
/// returned it. `self: &mut Self` and `self: &Self` are the same receivers spelled out.
/// `&self` works wherever `&mut self` does (the endpoint must then be `Sync` for
/// its futures to be `Send`). Default method bodies are allowed. Arguments and return values
/// must be owned and implement serde's `Serialize` and `Deserialize`, plus `Send + 'static`
/// ([`RpcArgument`], [`RpcReply`]): a type that is not is reported once, on the type, in those
/// words. `Arc<T>` is sent as its value.
///
/// `Vec<u8>`, alone or as `Option<Vec<u8>>` or `Result<Vec<u8>, E>`, in an argument or a
/// reply, travels as one byte string (the bytes serde's encoding of a `Vec<u8>` gives, written
/// in one piece rather than byte by byte); there is no need for `serde_bytes`. A `Vec<u8>`
/// behind a type alias is recognised only by name, so it takes the slower, byte-by-byte path
/// to the same bytes. `bytes::Bytes` (the bulk lane) is moved in process and, over a
/// transport, written once and read without a copy when it is 32 KiB or more (see [`bulk`]).
///
/// # Gateway references
///
/// The generated client is `Serialize + Deserialize`: a proxy may be an argument, a reply or
/// a stream item, or a field of one. It travels as a reference to the endpoint incarnation it
/// is bound to and arrives as a proxy of the receiving service to that incarnation: a local
/// one if the endpoint is the receiver's own, else one over the receiver's transport, which
/// binds on its first call like `connect` (same handshake, secret or TLS, fingerprint
/// check). A reference to an endpoint of a service that does not listen is called back over
/// the connection that carried it. Once that incarnation has stopped, calls through any copy
/// fail with [`RpcError::EndpointStopped`]. A fenced proxy's reference carries its token.
///
/// ```
/// use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Worker {
///     async fn work(&mut self, task: u32) -> u32;
/// }
///
/// #[rpc_gateway]
/// pub trait Registry {
///     /// Takes a proxy to a worker: the caller sends its own reference.
///     async fn register(&mut self, worker: WorkerClient) -> usize;
/// }
/// # struct Doubler;
/// # impl RpcEndpoint for Doubler { rpc_core::serves!(Worker); }
/// # impl Worker for Doubler { async fn work(&mut self, task: u32) -> u32 { task * 2 } }
/// # #[derive(Default)] struct Workers(Vec<WorkerClient>);
/// # impl RpcEndpoint for Workers { rpc_core::serves!(Registry); }
/// # impl Registry for Workers {
/// #     async fn register(&mut self, worker: WorkerClient) -> usize { self.0.push(worker); self.0.len() }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// # let service = RpcService::builder().force_serialization(true).build();
/// # service.start_endpoint("doubler", Doubler).await?;
/// # service.start_endpoint("registry", Workers::default()).await?;
/// let registry: RegistryClient = service.gateway("registry")?;
/// let worker: WorkerClient = service.gateway("doubler")?;
/// assert_eq!(registry.register(worker).await?, 1);
/// # Ok(()) }
/// ```
///
/// # Attributes on methods and arguments
///
/// `#[cfg(..)]` and `#[cfg_attr(.., cfg(..))]` on a method or an argument remove it from
/// everything generated (the client, the invocation, the dispatcher, the method table and the
/// fingerprint) exactly when they remove it from the trait, so a client and a server built
/// with different features are told apart at connect time. Doc comments, lint levels
/// (`allow`, `warn`, `deny`, `forbid`, `expect`) and `#[deprecated]`, plain or under
/// `cfg_attr`, are carried to the client method (lint levels on an argument to its
/// parameter); the dispatcher calling a deprecated method does not warn. A method without
/// docs gets a one-line doc on the client, so `missing_docs` reports only the trait's method.
/// Other attributes stay on the trait.
///
/// ```
/// # use rpc_core::rpc_gateway;
/// #[rpc_gateway]
/// pub trait Store {
///     /// Reads a key.
///     async fn get(&mut self, key: String, #[cfg(feature = "ns")] namespace: String) -> Option<Vec<u8>>;
///     #[cfg(feature = "admin")]
///     async fn dump(&mut self) -> Vec<(String, Vec<u8>)>;
///     #[deprecated(note = "use `get`")]
///     async fn fetch(&mut self, key: String) -> Option<Vec<u8>>;
/// }
/// ```
///
/// Rejected at compile time, each with an error on the offending tokens: generic traits or
/// methods, associated types and consts, references, `impl Trait`, trait objects (`Box<dyn
/// Error>`, closures), raw and function pointers, `Rc`, a `Cow` that borrows and `RpcError`
/// in signatures, `Self` in signatures, pattern arguments, receivers other than `&mut self`/`&self`, a missing
/// receiver, a non-async method with a return value, `unsafe`/`const`/`extern` methods,
/// method names that collide with the proxy's own (`with_timeout`, `timeout`, `endpoint`,
/// `clone`, and `with_fencing_token`, `fencing_token` when fenced), supertraits that are not gateways, unknown attribute arguments, and the
/// attribute on anything but a trait.
///
/// # Arguments
///
/// `#[rpc_gateway(name = "cluster.TaskExecutorGateway")]` sets the gateway's name in the
/// handshake (default: the trait's identifier). `#[rpc_gateway(client = "StoreProxy")]`
/// names the generated client (default `{Trait}Client`), for when that name is taken.
///
/// `#[rpc_gateway(inner)]` marks a gateway for the *inner* network, the one servers use to
/// reach each other: a service with an outer listener (`rpc_netty::NettyBuilder::outer`,
/// where players connect) refuses binds to it there with [`RpcError::InnerGateway`].
/// `#[rpc_gateway(outer)]` says a gateway is for players; it and an unmarked gateway are
/// served on every listener.
///
/// `#[rpc_gateway(fenced)]` makes the gateway *fenced* with token type
/// [`FencingId`], `#[rpc_gateway(fenced = JobMasterId)]` with a token type of your own: every
/// call carries the proxy's token and is refused unless it is the endpoint's current one
/// (see [`fencing`]). Proxies are made with `gateway_fenced` / `connect_fenced` (`gateway` and
/// `connect` do not compile for it), the client gains `with_fencing_token` and
/// `fencing_token`, and an endpoint serving it must implement [`FencedEndpoint`] with that
/// token type.
///
/// # Supertraits
///
/// A gateway may extend other gateways (`trait Sub: Base`). An endpoint serving `Sub`
/// serves `Base` too, so proxies of either type reach it.
pub use rpc_macros::rpc_gateway;

/// Declares the gateways an endpoint serves, inside its `impl RpcEndpoint`.
///
/// ```
/// # use rpc_core::{RpcEndpoint, rpc_gateway};
/// # #[rpc_gateway] pub trait HelloGateway { async fn hi(&mut self) -> String; }
/// # #[rpc_gateway] pub trait AdminGateway { fn shutdown(&mut self); }
/// struct Hello;
/// impl RpcEndpoint for Hello {
///     rpc_core::serves!(HelloGateway, AdminGateway);
/// }
/// # impl HelloGateway for Hello { async fn hi(&mut self) -> String { String::new() } }
/// # impl AdminGateway for Hello { fn shutdown(&mut self) {} }
/// ```
///
/// It expands to [`RpcEndpoint::gateways`]. A gateway the endpoint does not implement is a
/// compile error; each gateway brings its supertrait gateways.
pub use rpc_macros::serves;

/// Items the generated code names. Not a public API: no stability guarantees.
#[doc(hidden)]
pub mod __private {
    pub use crate::call::{Handled, ReplyMode, ReplyTo, ReplyValue};
    pub use crate::fencing::{FencedEndpoint, FencingId, Unfenced};
    pub use crate::gateway::{
        CallTarget, Dispatch, FencedGateway, Gateway, GatewayHandle, MethodInfo, MethodKind,
        UnfencedGateway,
    };
    pub use serde;

    pub use crate::wire::{RpcArgument, RpcReply};

    /// How argument and reply types are written: see `wire.rs`.
    pub mod wire {
        pub use crate::wire::{
            Bytes, CanAsk, CanDecode, CanEncode, CanReply, CannotAsk, CannotDecode, CannotEncode,
            CannotReply, OptionOf, Plain, Probe, ResultOf, SharedBytes, WireDecode, WireEncode,
        };
    }

    /// The 64-bit FNV-1a offset basis: the hash of no bytes.
    pub const FNV1A_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

    /// Continues a 64-bit FNV-1a `hash` over `text`, at compile time. A gateway whose methods
    /// are behind `#[cfg]` computes its fingerprint with it; the macro hashes the others
    /// itself, with the same function.
    pub const fn fnv1a_extend(mut hash: u64, text: &str) -> u64 {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            hash = (hash ^ bytes[i] as u64).wrapping_mul(0x0000_0100_0000_01b3);
            i += 1;
        }
        hash
    }

    /// Spanned on each argument type. Serializability is checked by the invocation enum's
    /// serde derive, whose errors already point at the argument.
    pub fn assert_argument<T>()
    where
        T: Send + 'static,
    {
    }

    /// Spanned on each return type: the caller must be able to decode it. (`Serialize` is
    /// checked where the dispatcher encodes the reply, also spanned on the type.)
    pub fn assert_reply<T>()
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
    }
}
