//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, with the `metrics`
//! feature: whatever recorder the application installs (a Prometheus exporter, say) receives
//! them. Without the feature every function here is empty and the types are zero-sized.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `rpc_client_calls_total` | counter | `gateway`, `method`, `kind` | calls made (`kind`: `ask` or `tell`) |
//! | `rpc_client_errors_total` | counter | `gateway`, `method`, `error` | calls that failed, by [`RpcError::kind`] |
//! | `rpc_client_call_duration_seconds` | histogram | `gateway`, `method` | an ask, from the call to its reply or error |
//! | `rpc_client_in_flight` | gauge | `gateway`, `method` | asks awaiting their reply |
//! | `rpc_server_calls_total` | counter | `gateway`, `method`, `endpoint` | invocations run |
//! | `rpc_server_errors_total` | counter | `gateway`, `method`, `endpoint`, `error` | invocations answered with an error (a panic, a fencing refusal, one that did not decode: `method` is `?` then) |
//! | `rpc_server_call_duration_seconds` | histogram | `gateway`, `method`, `endpoint` | from the handler's start to its reply (a `Deferred` one included) |
//! | `rpc_server_in_flight` | gauge | `endpoint` | handlers and `Deferred` replies running |
//! | `rpc_mailbox_depth` | gauge | `endpoint` | invocations waiting in the mailbox |
//!
//! A domain error (`Result<T, E>` from a handler) is a reply like any other and is not
//! counted as an error. The endpoint's gauges are registered when it starts, so install the
//! recorder before starting endpoints. rpc-netty adds the connection metrics.

use std::sync::Arc;

use crate::error::RpcError;
use crate::gateway::{MethodInfo, MethodKind};

#[cfg(feature = "metrics")]
use std::time::Instant;

/// An endpoint's meters: its gauges, registered once when it starts, and its name for the
/// per-call labels.
pub(crate) struct EndpointMeters {
    #[cfg(feature = "metrics")]
    name: Arc<str>,
    #[cfg(feature = "metrics")]
    depth: ::metrics::Gauge,
    #[cfg(feature = "metrics")]
    in_flight: ::metrics::Gauge,
}

impl EndpointMeters {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(name: &Arc<str>) -> EndpointMeters {
        EndpointMeters {
            #[cfg(feature = "metrics")]
            name: Arc::clone(name),
            #[cfg(feature = "metrics")]
            depth: ::metrics::gauge!("rpc_mailbox_depth", "endpoint" => Arc::clone(name)),
            #[cfg(feature = "metrics")]
            in_flight: ::metrics::gauge!("rpc_server_in_flight", "endpoint" => Arc::clone(name)),
        }
    }

    /// An invocation entered the mailbox.
    #[inline]
    pub(crate) fn queued(&self) {
        #[cfg(feature = "metrics")]
        self.depth.increment(1.0);
    }

    /// An invocation left the mailbox.
    #[inline]
    pub(crate) fn dequeued(&self) {
        #[cfg(feature = "metrics")]
        self.depth.decrement(1.0);
    }

    /// A handler of `method` starts: counted, and timed until [`ServerCall::finish`].
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn start(&self, method: &'static MethodInfo) -> ServerCall {
        #[cfg(feature = "metrics")]
        {
            ::metrics::counter!(
                "rpc_server_calls_total",
                "gateway" => method.gateway,
                "method" => method.name,
                "endpoint" => Arc::clone(&self.name),
            )
            .increment(1);
            self.in_flight.increment(1.0);
            ServerCall {
                method,
                name: Arc::clone(&self.name),
                in_flight: self.in_flight.clone(),
                started: Instant::now(),
            }
        }
        #[cfg(not(feature = "metrics"))]
        ServerCall {}
    }

    /// An invocation of `gateway`'s `method` (`?` when it did not decode) was answered with
    /// `error` without its handler running to a reply.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn refused(&self, gateway: &'static str, method: &'static str, error: &RpcError) {
        #[cfg(feature = "metrics")]
        ::metrics::counter!(
            "rpc_server_errors_total",
            "gateway" => gateway,
            "method" => method,
            "endpoint" => Arc::clone(&self.name),
            "error" => error.kind(),
        )
        .increment(1);
    }
}

/// One handler running: ends with [`ServerCall::finish`]; the in-flight gauge goes down when
/// it is dropped, finished or not.
pub(crate) struct ServerCall {
    #[cfg(feature = "metrics")]
    method: &'static MethodInfo,
    #[cfg(feature = "metrics")]
    name: Arc<str>,
    #[cfg(feature = "metrics")]
    in_flight: ::metrics::Gauge,
    #[cfg(feature = "metrics")]
    started: Instant,
}

impl ServerCall {
    /// The handler produced its reply: `error` if the framework answered with one.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn finish(self, error: Option<&RpcError>) {
        #[cfg(feature = "metrics")]
        {
            let elapsed = self.started.elapsed().as_secs_f64();
            ::metrics::histogram!(
                "rpc_server_call_duration_seconds",
                "gateway" => self.method.gateway,
                "method" => self.method.name,
                "endpoint" => Arc::clone(&self.name),
            )
            .record(elapsed);
            if let Some(error) = error {
                ::metrics::counter!(
                    "rpc_server_errors_total",
                    "gateway" => self.method.gateway,
                    "method" => self.method.name,
                    "endpoint" => Arc::clone(&self.name),
                    "error" => error.kind(),
                )
                .increment(1);
            }
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for ServerCall {
    fn drop(&mut self) {
        self.in_flight.decrement(1.0);
    }
}

/// One ask awaiting its reply, on the caller's side: ends with [`ClientCall::finish`]; the
/// in-flight gauge goes down when it is dropped (the call dropped unfinished included).
pub(crate) struct ClientCall {
    #[cfg(feature = "metrics")]
    method: &'static MethodInfo,
    /// An ask's: a tell is never in flight.
    #[cfg(feature = "metrics")]
    in_flight: Option<::metrics::Gauge>,
    #[cfg(feature = "metrics")]
    started: Instant,
}

/// A call of `method` is made: counted; an ask is timed until [`ClientCall::finish`].
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn client_call(method: &'static MethodInfo) -> ClientCall {
    #[cfg(feature = "metrics")]
    {
        let kind = match method.kind {
            MethodKind::Ask => "ask",
            MethodKind::Tell => "tell",
        };
        ::metrics::counter!(
            "rpc_client_calls_total",
            "gateway" => method.gateway,
            "method" => method.name,
            "kind" => kind,
        )
        .increment(1);
        let in_flight = (method.kind == MethodKind::Ask).then(|| {
            let gauge = ::metrics::gauge!(
                "rpc_client_in_flight",
                "gateway" => method.gateway,
                "method" => method.name,
            );
            gauge.increment(1.0);
            gauge
        });
        ClientCall {
            method,
            in_flight,
            started: Instant::now(),
        }
    }
    #[cfg(not(feature = "metrics"))]
    {
        let _ = MethodKind::Ask;
        ClientCall {}
    }
}

impl ClientCall {
    /// The call ended: with `error`, or with a reply.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn finish(self, error: Option<&RpcError>) {
        #[cfg(feature = "metrics")]
        {
            if self.method.kind == MethodKind::Ask {
                ::metrics::histogram!(
                    "rpc_client_call_duration_seconds",
                    "gateway" => self.method.gateway,
                    "method" => self.method.name,
                )
                .record(self.started.elapsed().as_secs_f64());
            }
            if let Some(error) = error {
                ::metrics::counter!(
                    "rpc_client_errors_total",
                    "gateway" => self.method.gateway,
                    "method" => self.method.name,
                    "error" => error.kind(),
                )
                .increment(1);
            }
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for ClientCall {
    fn drop(&mut self) {
        if let Some(in_flight) = &self.in_flight {
            in_flight.decrement(1.0);
        }
    }
}
