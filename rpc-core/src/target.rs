//! [`LocalTarget`]: the call target of a proxy to an endpoint in this process.

use std::marker::PhantomData;
use std::sync::{Arc, Weak};

use crate::call::ReplyTo;
use crate::codec;
use crate::context::EndpointCell;
use crate::control::CallControl;
use crate::endpoint::RpcEndpoint;
use crate::error::RpcError;
use crate::gateway::{CallTarget, Dispatch, EndpointAddress, Gateway, MethodInfo};
use crate::mailbox::on_main_thread_of;
use crate::reference::{self, Location, Reference};
use crate::service::ServiceInner;
use crate::trace::TraceContext;

/// Puts invocations straight into an endpoint's mailbox: no network and, unless the service
/// forces it, no serialization.
pub(crate) struct LocalTarget<E: RpcEndpoint, G> {
    cell: Arc<EndpointCell<E>>,
    /// A self gateway: calls carry the endpoint's current fencing token, not the proxy's.
    stamp_current: bool,
    _gateway: PhantomData<fn() -> G>,
}

impl<E: RpcEndpoint, G> LocalTarget<E, G> {
    pub(crate) fn new(cell: Arc<EndpointCell<E>>) -> Self {
        LocalTarget {
            cell,
            stamp_current: false,
            _gateway: PhantomData,
        }
    }

    /// The target of a self gateway (see `stamp_current`).
    pub(crate) fn stamping_current(cell: Arc<EndpointCell<E>>) -> Self {
        LocalTarget {
            cell,
            stamp_current: true,
            _gateway: PhantomData,
        }
    }
}

impl<E: RpcEndpoint, G: Dispatch<E>> LocalTarget<E, G> {
    fn enqueue(
        &self,
        method: &'static MethodInfo,
        invocation: G::Invocation,
        token: Option<&G::Token>,
        trace: Option<TraceContext>,
        reply: Option<(ReplyTo, Arc<CallControl>)>,
    ) -> Result<(), RpcError> {
        let encoded = self.cell.shared.force_serialization;
        let invocation = if encoded {
            roundtrip::<G>(
                invocation,
                method,
                self.cell.shared.max_decode_depth,
                &self.cell.service,
            )?
        } else {
            invocation
        };
        let token = match (G::FENCED, self.stamp_current) {
            (false, _) => None,
            (true, true) => self.cell.fence.current::<G::Token>(),
            (true, false) => token.cloned(),
        };
        self.cell
            .deliver::<G>(invocation, method, token, trace, reply, encoded)
    }
}

impl<E: RpcEndpoint, G: Dispatch<E>> CallTarget<G> for LocalTarget<E, G> {
    fn endpoint(&self) -> &Arc<EndpointAddress> {
        &self.cell.address
    }

    fn reference(&self) -> Result<Reference, RpcError> {
        let service = self.cell.service.upgrade();
        let location = match service
            .as_ref()
            .map(|s| (s.has_transport(), s.local_address()))
        {
            Some((_, Some(address))) => Location::Address(address),
            Some((false, None)) => Location::InProcess,
            _ => reference::carrier(self.cell.address.name(), self.cell.incarnation).ok_or_else(
                || RpcError::Serialization {
                    context: format!("sending a reference to {}", self.cell.address),
                    reason: "its service does not listen, so a reference to it can only travel \
                         over a connection that service opened (bind the service to an address, \
                         or send the reference in a call to the service it is connected to)"
                        .to_owned(),
                },
            )?,
        };
        Ok(Reference {
            endpoint: self.cell.address.name().to_owned(),
            incarnation: self.cell.incarnation,
            location,
        })
    }

    fn max_decode_depth(&self) -> usize {
        self.cell.shared.max_decode_depth
    }

    fn ask(
        &self,
        method: &'static MethodInfo,
        invocation: G::Invocation,
        token: Option<&G::Token>,
        trace: Option<TraceContext>,
        reply: ReplyTo,
        control: &Arc<CallControl>,
    ) -> Result<(), RpcError> {
        if on_main_thread_of(self.cell.id) {
            return Err(RpcError::WouldDeadlock {
                endpoint: self.cell.address.name().to_owned(),
                gateway: method.gateway,
                method: method.name,
            });
        }
        self.enqueue(
            method,
            invocation,
            token,
            trace,
            Some((reply, Arc::clone(control))),
        )
    }

    fn tell(
        &self,
        method: &'static MethodInfo,
        invocation: G::Invocation,
        token: Option<&G::Token>,
        trace: Option<TraceContext>,
    ) -> Result<(), RpcError> {
        self.enqueue(method, invocation, token, trace, None)
    }
}

/// Encodes and decodes an invocation as the wire would, so that a type that cannot cross it
/// fails here, in process, with the same error a remote call would give.
fn roundtrip<G: Gateway>(
    invocation: G::Invocation,
    method: &MethodInfo,
    max_depth: usize,
    service: &Weak<ServiceInner>,
) -> Result<G::Invocation, RpcError> {
    let what = |verb: &str| {
        format!(
            "{verb} the arguments of `{}::{}`",
            method.gateway, method.name
        )
    };
    let bytes = codec::encode(&invocation, || what("encoding"))?;
    reference::decoding(service, || {
        codec::decode(&bytes, max_depth, || what("decoding"))
    })
}
