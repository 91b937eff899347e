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
//! counted as an error. rpc-netty adds the connection metrics.
//!
//! The handles are registered once and kept (an endpoint's when it starts, a method's on its
//! first call, per endpoint on the server's side and per thread on the caller's), so that a
//! call costs the updates and no registry lookup: install the recorder before starting the
//! services.

use std::sync::Arc;

use crate::error::RpcError;
use crate::gateway::MethodInfo;

#[cfg(feature = "metrics")]
use crate::gateway::MethodKind;
#[cfg(feature = "metrics")]
use std::collections::HashMap;
#[cfg(feature = "metrics")]
use std::sync::Mutex;
#[cfg(feature = "metrics")]
use std::time::Instant;

/// Tables keyed by method: the address of its `MethodInfo`, a static the macro generates.
#[cfg(feature = "metrics")]
fn key_of(method: &'static MethodInfo) -> usize {
    std::ptr::from_ref(method) as usize
}

/// An endpoint's meters: its gauges, registered once when it starts, its name for the
/// per-call labels, and each method's handles once it has been called.
pub(crate) struct EndpointMeters {
    #[cfg(feature = "metrics")]
    name: Arc<str>,
    #[cfg(feature = "metrics")]
    depth: ::metrics::Gauge,
    #[cfg(feature = "metrics")]
    in_flight: ::metrics::Gauge,
    /// Taken by the main thread, and by `Deferred` replies finishing beside it: rarely
    /// contended.
    #[cfg(feature = "metrics")]
    methods: Mutex<HashMap<usize, Arc<ServerHandles>>>,
}

/// One method's handles on one endpoint.
#[cfg(feature = "metrics")]
struct ServerHandles {
    calls: ::metrics::Counter,
    duration: ::metrics::Histogram,
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
            #[cfg(feature = "metrics")]
            methods: Mutex::default(),
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
            let handles = {
                let mut methods = self
                    .methods
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let handles = methods.entry(key_of(method)).or_insert_with(|| {
                    let labels = [
                        ("gateway", method.gateway.into()),
                        ("method", method.name.into()),
                        (
                            "endpoint",
                            ::metrics::SharedString::from(Arc::clone(&self.name)),
                        ),
                    ];
                    Arc::new(ServerHandles {
                        calls: ::metrics::counter!("rpc_server_calls_total", &labels),
                        duration: ::metrics::histogram!(
                            "rpc_server_call_duration_seconds",
                            &labels
                        ),
                    })
                });
                Arc::clone(handles)
            };
            handles.calls.increment(1);
            self.in_flight.increment(1.0);
            ServerCall {
                method,
                name: Arc::clone(&self.name),
                handles,
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
        server_error(gateway, method, &self.name, error);
    }
}

/// Errors are rare: their counters are looked up when they happen.
#[cfg(feature = "metrics")]
fn server_error(gateway: &'static str, method: &'static str, name: &Arc<str>, error: &RpcError) {
    ::metrics::counter!(
        "rpc_server_errors_total",
        "gateway" => gateway,
        "method" => method,
        "endpoint" => Arc::clone(name),
        "error" => error.kind(),
    )
    .increment(1);
}

/// One handler running: ends with [`ServerCall::finish`]; the in-flight gauge goes down when
/// it is dropped, finished or not.
pub(crate) struct ServerCall {
    #[cfg(feature = "metrics")]
    method: &'static MethodInfo,
    #[cfg(feature = "metrics")]
    name: Arc<str>,
    #[cfg(feature = "metrics")]
    handles: Arc<ServerHandles>,
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
            self.handles
                .duration
                .record(self.started.elapsed().as_secs_f64());
            if let Some(error) = error {
                server_error(self.method.gateway, self.method.name, &self.name, error);
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

/// One method's handles on the caller's side, registered once per thread and kept for the
/// life of the process (one per method: a bounded set).
#[cfg(feature = "metrics")]
struct ClientHandles {
    calls: ::metrics::Counter,
    /// An ask's in-flight gauge and latency histogram: a tell has neither.
    ask: Option<(::metrics::Gauge, ::metrics::Histogram)>,
}

#[cfg(feature = "metrics")]
fn client_handles(method: &'static MethodInfo) -> &'static ClientHandles {
    thread_local! {
        static HANDLES: std::cell::RefCell<HashMap<usize, &'static ClientHandles>> =
            std::cell::RefCell::default();
    }
    HANDLES.with(|handles| {
        *handles
            .borrow_mut()
            .entry(key_of(method))
            .or_insert_with(|| {
                // A stream is an ask until it opens: its duration is the time to open.
                let ask = method.kind != MethodKind::Tell;
                let labels = [("gateway", method.gateway), ("method", method.name)];
                let kind = [
                    ("gateway", method.gateway),
                    ("method", method.name),
                    (
                        "kind",
                        match method.kind {
                            MethodKind::Tell => "tell",
                            MethodKind::Stream => "stream",
                            _ => "ask",
                        },
                    ),
                ];
                Box::leak(Box::new(ClientHandles {
                    calls: ::metrics::counter!("rpc_client_calls_total", &kind),
                    ask: ask.then(|| {
                        (
                            ::metrics::gauge!("rpc_client_in_flight", &labels),
                            ::metrics::histogram!("rpc_client_call_duration_seconds", &labels),
                        )
                    }),
                }))
            })
    })
}

/// One call on the caller's side: ends with [`ClientCall::finish`]; an ask's in-flight gauge
/// goes down when it is dropped (the call dropped unfinished included).
pub(crate) struct ClientCall {
    #[cfg(feature = "metrics")]
    method: &'static MethodInfo,
    #[cfg(feature = "metrics")]
    handles: &'static ClientHandles,
    /// When an ask was made (a tell is not timed).
    #[cfg(feature = "metrics")]
    started: Option<Instant>,
}

/// A call of `method` is made: counted; an ask is timed until [`ClientCall::finish`].
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn client_call(method: &'static MethodInfo) -> ClientCall {
    #[cfg(feature = "metrics")]
    {
        let handles = client_handles(method);
        handles.calls.increment(1);
        let started = handles.ask.as_ref().map(|(in_flight, _)| {
            in_flight.increment(1.0);
            Instant::now()
        });
        ClientCall {
            method,
            handles,
            started,
        }
    }
    #[cfg(not(feature = "metrics"))]
    ClientCall {}
}

impl ClientCall {
    /// The call ended: with `error`, or with a reply.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn finish(self, error: Option<&RpcError>) {
        #[cfg(feature = "metrics")]
        {
            if let (Some((_, duration)), Some(started)) = (&self.handles.ask, self.started) {
                duration.record(started.elapsed().as_secs_f64());
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
        if let Some((in_flight, _)) = &self.handles.ask {
            in_flight.decrement(1.0);
        }
    }
}
