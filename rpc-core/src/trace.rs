//! Trace context: which logical operation a call belongs to, carried from caller to callee so
//! that one operation across several services shows as one trace.
//!
//! Every call made while the caller's `rpc.call` span is enabled (or from inside a handler
//! whose call carried a trace) carries a [`TraceContext`]: the trace id, and the span id of
//! the caller's call span. The callee's `rpc.call` span continues it (same `trace_id`, the
//! caller's `span_id` as its `parent_span_id`, a `span_id` of its own), and calls made from
//! inside the handler carry the trace on. The ids are W3C Trace Context sized (16 and 8
//! bytes) and shown as lowercase hex; with the `opentelemetry` feature and a
//! tracing-opentelemetry layer they are that layer's ids (see the README's "Observability"
//! section).
//!
//! Without a trace subscriber and without an incoming trace, nothing is generated and a call
//! carries one byte saying so.

use std::cell::Cell;
use std::fmt;
use std::hash::BuildHasher;

use serde::{Deserialize, Serialize};

/// The id of one trace: every call of one logical operation shares it. 16 bytes, never all
/// zero; shown as 32 lowercase hex digits (W3C `trace-id`).
///
/// ```
/// use rpc_core::TraceId;
///
/// let id = TraceId::from_bytes(0x4bf92f3577b34da6a3ce929d0e0e4736_u128.to_be_bytes()).unwrap();
/// assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(TraceId::from_bytes(id.to_bytes()), Some(id));
/// assert_ne!(TraceId::random(), TraceId::random());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "[u8; 16]")]
pub struct TraceId([u8; 16]);

/// The id of one call span within a trace. 8 bytes, never all zero; shown as 16 lowercase
/// hex digits (W3C `parent-id`).
///
/// ```
/// use rpc_core::SpanId;
///
/// let id = SpanId::from_bytes(0x00f067aa0ba902b7_u64.to_be_bytes()).unwrap();
/// assert_eq!(id.to_string(), "00f067aa0ba902b7");
/// assert_eq!(SpanId::from_bytes([0; 8]), None); // all zero is not an id
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "[u8; 8]")]
pub struct SpanId([u8; 8]);

/// What a call carries to its callee: the trace it belongs to and the span that made it.
///
/// Inside a handler, [`CallContext::trace`](crate::CallContext::trace) gives the context of
/// the running call (its trace id and the server span's own id), which is what calls made
/// from the handler continue.
///
/// ```
/// use rpc_core::{TraceContext, TraceId};
///
/// let context = TraceContext::new(
///     TraceId::from_bytes([0x4b; 16]).unwrap(),
///     rpc_core::SpanId::from_bytes([0x0f; 8]).unwrap(),
/// );
/// assert_eq!(
///     context.to_string(),
///     "00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-0f0f0f0f0f0f0f0f-01"
/// );
/// assert_eq!(TraceId::from_bytes([0; 16]), None); // all zero is not a valid id
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
}

impl TraceId {
    /// The id with these bytes, unless they are all zero.
    pub fn from_bytes(bytes: [u8; 16]) -> Option<TraceId> {
        (bytes != [0; 16]).then_some(TraceId(bytes))
    }

    /// Its 16 bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// A fresh random id.
    pub fn random() -> TraceId {
        let bytes = (u128::from(random_u64()) << 64 | u128::from(random_u64())).max(1);
        TraceId(bytes.to_be_bytes())
    }
}

impl SpanId {
    /// The id with these bytes, unless they are all zero.
    pub fn from_bytes(bytes: [u8; 8]) -> Option<SpanId> {
        (bytes != [0; 8]).then_some(SpanId(bytes))
    }

    /// Its 8 bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// A fresh random id.
    pub fn random() -> SpanId {
        SpanId(random_u64().max(1).to_be_bytes())
    }
}

/// A trace or span id of all zeros, refused when decoding one.
#[derive(Debug)]
pub struct ZeroId;

impl fmt::Display for ZeroId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a trace or span id may not be all zeros")
    }
}

impl std::error::Error for ZeroId {}

/// Why a text is not a W3C `traceparent` (`00-{32 hex}-{16 hex}-{2 hex}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a W3C traceparent (`00-<32 hex digits>-<16 hex digits>-<2 hex digits>`, ids not all zeros): {0:?}"
)]
pub struct ParseTraceContextError(String);

impl std::str::FromStr for TraceContext {
    type Err = ParseTraceContextError;

    /// Reads the W3C `traceparent` form (version `00`; the flags are read and not kept).
    fn from_str(text: &str) -> Result<TraceContext, ParseTraceContextError> {
        let refused = || ParseTraceContextError(text.chars().take(64).collect());
        let mut parts = text.trim().split('-');
        let (Some("00"), Some(trace), Some(span), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(refused());
        };
        let trace: [u8; 16] = unhex(trace).ok_or_else(refused)?;
        let span: [u8; 8] = unhex(span).ok_or_else(refused)?;
        let _: [u8; 1] = unhex(flags).ok_or_else(refused)?;
        match (TraceId::from_bytes(trace), SpanId::from_bytes(span)) {
            (Some(trace), Some(span)) => Ok(TraceContext::new(trace, span)),
            _ => Err(refused()),
        }
    }
}

/// `N` bytes from exactly `2 * N` lowercase hex digits.
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut bytes = [0; N];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(bytes)
}

impl TryFrom<[u8; 16]> for TraceId {
    type Error = ZeroId;
    fn try_from(bytes: [u8; 16]) -> Result<TraceId, ZeroId> {
        TraceId::from_bytes(bytes).ok_or(ZeroId)
    }
}

impl TryFrom<[u8; 8]> for SpanId {
    type Error = ZeroId;
    fn try_from(bytes: [u8; 8]) -> Result<SpanId, ZeroId> {
        SpanId::from_bytes(bytes).ok_or(ZeroId)
    }
}

impl TraceContext {
    /// The context of span `span_id` in trace `trace_id`.
    pub fn new(trace_id: TraceId, span_id: SpanId) -> TraceContext {
        TraceContext { trace_id, span_id }
    }

    /// The trace.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span: on the wire, the caller's call span (the callee's parent).
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// Runs `future` as part of this trace: calls made in it (and not inside a handler
    /// there) continue this context, as if it were the running call's. This is how a trace
    /// that arrived some other way (an HTTP request's `traceparent` header, a message on a
    /// queue) is carried into calls of this framework without the `opentelemetry` feature.
    /// Inside a handler the handler's own call stays what [`CallContext`](crate::CallContext)
    /// reports, apart from its trace. Make the calls inside the future: an ask is sent when it
    /// is made, not when it is first awaited.
    ///
    /// ```
    /// use rpc_core::{CallContext, RpcEndpoint, RpcService, TraceContext, rpc_gateway};
    ///
    /// #[rpc_gateway]
    /// pub trait Echo {
    ///     async fn trace_id(&mut self) -> Option<String>;
    /// }
    ///
    /// struct Tracer;
    /// impl RpcEndpoint for Tracer { rpc_core::serves!(Echo); }
    /// impl Echo for Tracer {
    ///     async fn trace_id(&mut self) -> Option<String> {
    ///         CallContext::current().trace().map(|t| t.trace_id().to_string())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let service = RpcService::new();
    /// service.start_endpoint("echo", Tracer).await?;
    /// let echo: EchoClient = service.gateway("echo")?;
    ///
    /// // From an incoming HTTP request's header, say:
    /// let incoming: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
    /// let seen = incoming.scope(async { echo.trace_id().await }).await?;
    /// assert_eq!(seen.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    /// # Ok(()) }
    /// ```
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        crate::control::with_trace(self, future).await
    }

    /// A new span in the same trace.
    pub(crate) fn child(&self) -> TraceContext {
        TraceContext::new(self.trace_id, SpanId::random())
    }

    /// A new span in a new trace.
    pub(crate) fn root() -> TraceContext {
        TraceContext::new(TraceId::random(), SpanId::random())
    }
}

/// Where the parent of a new call span comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parent {
    /// The caller's own running call (a client span, made inside it).
    Local,
    /// The invocation: the caller's client span, in another task or process (a server span).
    Carried,
}

/// The trace context of a new call span: `parent` continued (recorded as the span's
/// `parent_span_id`), or a new trace if the span is enabled, or none. The span's `trace_id`
/// and `span_id` fields are recorded with it.
///
/// With the `opentelemetry` feature and an OpenTelemetry layer listening, the ids are the
/// layer's: a server span is given the carried context as its OpenTelemetry parent, and the
/// span's own OpenTelemetry context is what its calls carry.
pub(crate) fn continue_trace(
    parent: Option<TraceContext>,
    span: &tracing::Span,
    from: Parent,
) -> Option<TraceContext> {
    #[cfg(feature = "opentelemetry")]
    let opentelemetry = otel::continue_in(parent, span, from);
    #[cfg(not(feature = "opentelemetry"))]
    let opentelemetry = {
        let _ = from;
        None
    };
    if let Some(parent) = parent {
        span.record("parent_span_id", tracing::field::display(parent.span_id));
    }
    let context = match (opentelemetry, parent) {
        (Some(context), _) => context,
        (None, Some(parent)) => parent.child(),
        (None, None) if !span.is_disabled() => TraceContext::root(),
        (None, None) => return None,
    };
    span.record("trace_id", tracing::field::display(context.trace_id));
    span.record("span_id", tracing::field::display(context.span_id));
    Some(context)
}

/// The bridge to tracing-opentelemetry.
#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::trace::{self as ot, TraceContextExt};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{Parent, SpanId, TraceContext, TraceId};

    /// The OpenTelemetry context of `span`, first given `parent` as its remote parent when
    /// the layer does not already place it in that trace: a server span's parent came over
    /// the wire; a client span's is the running call's (the layer's own span, nothing to do)
    /// or one given to [`TraceContext::scope`]. `None` without an OpenTelemetry layer (or
    /// with the span disabled).
    pub(super) fn continue_in(
        parent: Option<TraceContext>,
        span: &tracing::Span,
        from: Parent,
    ) -> Option<TraceContext> {
        if span.is_disabled() {
            return None;
        }
        let adopt = |parent: &TraceContext| match from {
            Parent::Carried => true,
            Parent::Local => {
                let current = tracing::Span::current().context();
                let current = current.span();
                let current = current.span_context();
                !(current.is_valid() && current.trace_id().to_bytes() == parent.trace_id.0)
            }
        };
        if let Some(parent) = parent.filter(adopt) {
            let remote = ot::SpanContext::new(
                ot::TraceId::from_bytes(parent.trace_id.0),
                ot::SpanId::from_bytes(parent.span_id.0),
                ot::TraceFlags::SAMPLED,
                true,
                ot::TraceState::default(),
            );
            // Fails only without the layer, when the context below is invalid too.
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        }
        let context = span.context();
        let own = context.span();
        let own = own.span_context();
        if !own.is_valid() {
            return None;
        }
        Some(TraceContext::new(
            TraceId(own.trace_id().to_bytes()),
            SpanId(own.span_id().to_bytes()),
        ))
    }
}

fn hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(&self.0, f)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(&self.0, f)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The W3C `traceparent` form: `00-{trace id}-{span id}-01`.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-01", self.trace_id, self.span_id)
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &self.trace_id)
            .field("span_id", &self.span_id)
            .finish()
    }
}

/// A fast per-thread generator (wyrand), seeded from std's per-thread random hasher keys: ids
/// need to be unique, not secret, and a call must not pay a system call for one.
fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().hash_one(0u8));
    }
    STATE.with(|state| {
        let next = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(next);
        let product = u128::from(next) * u128::from(next ^ 0xe703_7ed1_a0b4_28db);
        (product >> 64) as u64 ^ product as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_never_zero() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| SpanId::random()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(!ids.contains(&SpanId([0; 8])));
        assert_ne!(TraceId::random(), TraceId::random());
    }

    #[test]
    fn traceparent_round_trips_and_refuses_what_is_not_one() {
        let context = TraceContext::root();
        assert_eq!(
            context.to_string().parse::<TraceContext>().unwrap(),
            context
        );
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e47+6-00f067aa0ba902b7-01",
        ] {
            assert!(bad.parse::<TraceContext>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace() {
        let root = TraceContext::root();
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
    }

    #[test]
    fn the_wire_form_is_a_flag_then_25_bytes() {
        let context = TraceContext::new(TraceId([1; 16]), SpanId([2; 8]));
        let bytes = postcard::to_allocvec(&Some(context)).unwrap();
        let mut expected = vec![1];
        expected.extend([1; 16]);
        expected.extend([2; 8]);
        assert_eq!(bytes, expected);
        assert_eq!(postcard::to_allocvec(&None::<TraceContext>).unwrap(), [0]);
    }
}
