//! OpenTelemetry through `tracing` (rpc-core's feature `opentelemetry`): with a
//! tracing-opentelemetry layer installed, a chain of calls A -> B -> C across three services
//! is exported as one OpenTelemetry trace, each call span the child of the one that made it,
//! and a handler's `CallContext::trace` is its OpenTelemetry span.

mod common;

use common::bounded;
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rpc_core::{CallContext, RpcEndpoint, rpc_gateway};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;

#[rpc_gateway]
pub trait Desk {
    async fn place(&mut self, item: String) -> u32;
}

#[rpc_gateway]
pub trait Relay {
    /// Places `item` at the desk; returns this call's trace context and the desk's answer.
    async fn forward(&mut self, item: String) -> (Option<String>, u32);
}

struct Counter;

impl RpcEndpoint for Counter {
    rpc_core::serves!(Desk);
}

impl Desk for Counter {
    async fn place(&mut self, _item: String) -> u32 {
        1
    }
}

struct Forwarder(DeskClient);

impl RpcEndpoint for Forwarder {
    rpc_core::serves!(Relay);
}

impl Relay for Forwarder {
    async fn forward(&mut self, item: String) -> (Option<String>, u32) {
        let trace = CallContext::current().trace().map(|t| t.to_string());
        (trace, self.0.place(item).await.unwrap_or(0))
    }
}

/// An OpenTelemetry pipeline writing to memory, installed for the current thread.
fn pipeline() -> (
    InMemorySpanExporter,
    SdkTracerProvider,
    tracing::subscriber::DefaultGuard,
) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("rpc-tests"));
    let guard = tracing::subscriber::set_default(Registry::default().with(layer));
    (exporter, provider, guard)
}

fn call_spans(exporter: &InMemorySpanExporter, provider: &SdkTracerProvider) -> Vec<SpanData> {
    provider.force_flush().unwrap();
    exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|span| span.name == "rpc.call")
        .collect()
}

fn side(span: &SpanData) -> String {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "side")
        .map(|kv| kv.value.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_chain_across_three_services_is_one_opentelemetry_trace() {
    let (exporter, provider, _guard) = pipeline();
    let relayed = bounded(async {
        let c = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        c.start_endpoint("desk", Counter).await.unwrap();
        let b = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        let desk: DeskClient = b.connect(c.local_address().unwrap(), "desk").await.unwrap();
        b.start_endpoint("relay", Forwarder(desk)).await.unwrap();
        let a = rpc_netty::client();
        let relay: RelayClient = a
            .connect(b.local_address().unwrap(), "relay")
            .await
            .unwrap();
        let relayed = relay.forward("tea".into()).await.unwrap();
        for service in [a, b, c] {
            service.shutdown().await.unwrap();
        }
        relayed
    })
    .await;
    assert_eq!(relayed.1, 1);
    let spans = call_spans(&exporter, &provider);
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let find = |method: &str, which: &str| {
        spans
            .iter()
            .find(|span| {
                side(span) == which
                    && span
                        .attributes
                        .iter()
                        .any(|kv| kv.key.as_str() == "method" && kv.value.to_string() == method)
            })
            .unwrap_or_else(|| panic!("the {which} span of {method}: {spans:#?}"))
    };
    let a_to_b = find("forward", "client");
    let at_b = find("forward", "server");
    let b_to_c = find("place", "client");
    let at_c = find("place", "server");
    let trace = a_to_b.span_context.trace_id();
    for span in [at_b, b_to_c, at_c] {
        assert_eq!(span.span_context.trace_id(), trace, "{spans:#?}");
    }
    // Each span's parent is the span that made the call; the server spans' parents are
    // remote (they came over the wire).
    assert_eq!(at_b.parent_span_id, a_to_b.span_context.span_id());
    assert!(at_b.parent_span_is_remote);
    assert_eq!(b_to_c.parent_span_id, at_b.span_context.span_id());
    assert_eq!(at_c.parent_span_id, b_to_c.span_context.span_id());
    assert!(at_c.parent_span_is_remote);
    // What the relay's handler saw is its OpenTelemetry span.
    assert_eq!(
        relayed.0,
        Some(format!("00-{trace}-{}-01", at_b.span_context.span_id()))
    );
}

/// A trace given to `TraceContext::scope` (from an HTTP header, say) becomes the exported
/// trace: the client span's parent is the given span, remote.
#[tokio::test]
async fn a_trace_scope_is_the_opentelemetry_parent() {
    let (exporter, provider, _guard) = pipeline();
    let incoming: rpc_core::TraceContext =
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap();
    bounded(async {
        let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        server.start_endpoint("desk", Counter).await.unwrap();
        let client = rpc_netty::client();
        let desk: DeskClient = client
            .connect(server.local_address().unwrap(), "desk")
            .await
            .unwrap();
        assert_eq!(
            incoming
                .scope(async { desk.place("tea".into()).await })
                .await
                .unwrap(),
            1
        );
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
    })
    .await;
    let spans = call_spans(&exporter, &provider);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for span in &spans {
        assert_eq!(
            span.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
    let client = spans.iter().find(|s| side(s) == "client").unwrap();
    assert_eq!(client.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(client.parent_span_is_remote);
}
