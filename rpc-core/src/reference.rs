//! Gateway references: a proxy sent inside a message arrives as a working proxy.
//!
//! Every generated client is `Serialize + Deserialize`. Encoded, a proxy is a *reference*:
//! the endpoint's name, the incarnation the proxy is bound to, where it lives and, for a
//! fenced gateway, the proxy's token. Decoded by a service (an invocation arriving at one of
//! its endpoints, a reply or stream item reaching one of its callers), it becomes a proxy of
//! that service to the same endpoint incarnation:
//!
//! - to an endpoint of the decoding service itself: a local proxy;
//! - to an endpoint of a listening service: a proxy over the decoding service's transport,
//!   bound on first use with the reference's incarnation (a `Bind` like `connect`'s, so the
//!   handshake, the shared secret or TLS, and the fingerprint check apply as they do there);
//! - to an endpoint of a service that does not listen (`rpc_netty::client()`): a proxy that
//!   calls back over the connection the reference arrived on (see `rpc-netty`).
//!
//! A reference to an incarnation that has stopped fails every call with
//! [`RpcError::EndpointStopped`], like any stale proxy. In process (no encoding) a proxy
//! simply moves.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::call::ReplyTo;
use crate::control::CallControl;
use crate::error::RpcError;
use crate::gateway::{
    CallTarget, EndpointAddress, Gateway, GatewayHandle, Incarnation, MethodInfo,
};
use crate::service::ServiceInner;
use crate::session::Session;
use crate::trace::TraceContext;
use crate::transport::Carrier;

/// Where a referenced endpoint can be reached, as a reference carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Location {
    /// At the service listening on this address.
    Address(SocketAddr),
    /// At the far end of the connection that carried the reference (its sender does not
    /// listen).
    Carrier,
    /// In the process that encoded it, which has no transport (forced serialization in
    /// process): only that process can reach it.
    InProcess,
}

/// What a call target says about itself to be sent as a reference.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The endpoint's name.
    pub endpoint: String,
    /// The incarnation the proxy is bound to.
    pub incarnation: Incarnation,
    /// Where it lives.
    pub location: Location,
}

/// A reference on the wire: postcard `(endpoint, incarnation, location, token)`.
#[derive(Serialize, Deserialize)]
struct WireReference<T> {
    endpoint: String,
    incarnation: [u8; 16],
    location: Location,
    token: Option<T>,
}

/// Who is decoding now: the service, the connection it arrived over (if that connection
/// can carry calls back to the sender), the sender's address, and the player session of a
/// relayed invocation (its references to the player's endpoints go through the Gate).
type Decoding = (
    Weak<ServiceInner>,
    Option<Arc<dyn Carrier>>,
    Option<SocketAddr>,
    Option<u64>,
);

thread_local! {
    /// The service decoding now, for the references inside what it decodes.
    static DECODING: RefCell<Decoding> = const { RefCell::new((Weak::new(), None, None, None)) };
    /// The connection what is being encoded will travel over, when it can carry calls back
    /// to this service (which does not listen).
    static SENDING: RefCell<Option<Arc<dyn Carrier>>> = const { RefCell::new(None) };
    /// Why the last reference failed to encode or decode: the codec's error reports it
    /// (postcard keeps no message of a `Serialize`/`Deserialize` error).
    static FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `decode` with `service` as the decoding service of the references in it.
pub(crate) fn decoding<R>(service: &Weak<ServiceInner>, decode: impl FnOnce() -> R) -> R {
    decoding_from(service, None, None, decode)
}

/// [`decoding`] what arrived over `carrier`'s connection from `origin`: a reference to an
/// endpoint at the connection's far end becomes a proxy over it, and one naming an
/// unspecified address (a service bound to `0.0.0.0`) is taken to mean `origin`'s host.
pub(crate) fn decoding_from<R>(
    service: &Weak<ServiceInner>,
    carrier: Option<&Arc<dyn Carrier>>,
    origin: Option<SocketAddr>,
    decode: impl FnOnce() -> R,
) -> R {
    let previous =
        DECODING.with(|current| current.replace((service.clone(), carrier.cloned(), origin, None)));
    let decoded = decode();
    DECODING.with(|current| current.replace(previous));
    decoded
}

/// An invocation header's relayed session, `Option<Session>` in postcard. Decoding it makes
/// the references that follow in the same invocation (to endpoints of the player, which
/// does not listen) go through the Gate that relayed it, down that player's connection.
pub(crate) struct RelayedHeader(pub(crate) Option<Session>);

impl<'de> Deserialize<'de> for RelayedHeader {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let session = Option::<Session>::deserialize(deserializer)?;
        if let Some(session) = &session {
            DECODING.with(|current| current.borrow_mut().3 = Some(session.id()));
        }
        Ok(RelayedHeader(session))
    }
}

/// Runs `encode` with `carrier` as the connection it will travel over.
pub(crate) fn sending_over<R>(carrier: Arc<dyn Carrier>, encode: impl FnOnce() -> R) -> R {
    let previous = SENDING.with(|current| current.replace(Some(carrier)));
    let encoded = encode();
    SENDING.with(|current| current.replace(previous));
    encoded
}

/// Where a reference to an endpoint of this service, which does not listen, says it lives:
/// at the far end of the connection it is being sent over, if it is being sent over one
/// (`None`: it is not).
pub(crate) fn carrier(endpoint: &str, incarnation: Incarnation) -> Option<Location> {
    SENDING.with(|current| {
        let current = current.borrow();
        let carrier = current.as_ref()?;
        carrier.export(endpoint, incarnation);
        Some(Location::Carrier)
    })
}

/// The reason the last reference failed, if one did since the last look.
pub(crate) fn take_failure() -> Option<String> {
    FAILURE.with(|failure| failure.borrow_mut().take())
}

fn failed(reason: String) -> String {
    FAILURE.with(|failure| *failure.borrow_mut() = Some(reason.clone()));
    reason
}

impl<G: Gateway> Serialize for GatewayHandle<G> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let reference = self
            .target()
            .reference()
            .map_err(|error| serde::ser::Error::custom(failed(error.to_string())))?;
        WireReference {
            endpoint: reference.endpoint,
            incarnation: reference.incarnation.to_bytes(),
            location: reference.location,
            token: self.fencing_token().cloned(),
        }
        .serialize(serializer)
    }
}

impl<'de, G: Gateway> Deserialize<'de> for GatewayHandle<G> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireReference::<G::Token>::deserialize(deserializer)?;
        let (service, carrier, origin, session) = DECODING.with(|current| {
            let current = current.borrow();
            (current.0.upgrade(), current.1.clone(), current.2, current.3)
        });
        let Some(service) = service else {
            return Err(serde::de::Error::custom(failed(format!(
                "a reference to endpoint `{}` (gateway `{}`) can only be decoded by an rpc \
                 service: it arrived outside a call",
                wire.endpoint,
                G::NAME
            ))));
        };
        let location = match (wire.location, origin) {
            // A service bound to every interface: it is where the reference came from.
            (Location::Address(address), Some(origin)) if address.ip().is_unspecified() => {
                Location::Address(SocketAddr::new(origin.ip(), address.port()))
            }
            (location, _) => location,
        };
        let reference = Reference {
            endpoint: wire.endpoint,
            incarnation: Incarnation::from_bytes(wire.incarnation),
            location,
        };
        let handle = service.resolve_reference::<G>(reference, carrier, session);
        Ok(match wire.token {
            Some(token) => handle.with_fencing_token(token),
            None => handle,
        })
    }
}

/// The target of a reference that cannot be called: every call fails with `error` (a stopped
/// incarnation, an endpoint that does not serve the gateway, no way to reach it).
pub(crate) struct Unreachable {
    pub(crate) endpoint: Arc<EndpointAddress>,
    pub(crate) reference: Reference,
    pub(crate) error: RpcError,
}

impl<G: Gateway> CallTarget<G> for Unreachable {
    fn endpoint(&self) -> &Arc<EndpointAddress> {
        &self.endpoint
    }

    fn ask(
        &self,
        _: &'static MethodInfo,
        _: G::Invocation,
        _: Option<&G::Token>,
        _: Option<TraceContext>,
        _: ReplyTo,
        _: &Arc<CallControl>,
    ) -> Result<(), RpcError> {
        Err(self.error.clone())
    }

    fn tell(
        &self,
        _: &'static MethodInfo,
        _: G::Invocation,
        _: Option<&G::Token>,
        _: Option<TraceContext>,
    ) -> Result<(), RpcError> {
        Err(self.error.clone())
    }

    fn reference(&self) -> Result<Reference, RpcError> {
        Ok(self.reference.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout PROTOCOL.md gives: (endpoint, incarnation, location, token).
    #[test]
    fn a_reference_golden() {
        let at = |location| WireReference::<u8> {
            endpoint: "w".into(),
            incarnation: [0x44; 16],
            location,
            token: None,
        };
        let mut expected = vec![1, b'w'];
        expected.extend_from_slice(&[0x44; 16]);
        let mut address = expected.clone();
        address.extend_from_slice(&[0, 0, 127, 0, 0, 1, 0xd8, 0x36, 0]);
        let encoded =
            postcard::to_allocvec(&at(Location::Address(([127, 0, 0, 1], 7000).into()))).unwrap();
        assert_eq!(encoded, address);
        let mut carrier = expected.clone();
        carrier.extend_from_slice(&[1, 0]);
        assert_eq!(
            postcard::to_allocvec(&at(Location::Carrier)).unwrap(),
            carrier
        );
        let mut in_process = expected;
        in_process.extend_from_slice(&[2, 0]);
        assert_eq!(
            postcard::to_allocvec(&at(Location::InProcess)).unwrap(),
            in_process
        );
    }
}
