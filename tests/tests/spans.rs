//! Tracing: every call has a span on both sides (gateway, method, endpoint, request id), the
//! handler runs inside the server's, and connections have spans of their own; checked with a
//! subscriber that records what it is given.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::bounded;
use rpc_core::{RpcEndpoint, rpc_gateway};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

type Fields = BTreeMap<String, String>;

/// What the subscriber was given.
#[derive(Default, Debug)]
struct Seen {
    /// Every span, by name, with its fields as last recorded.
    spans: Vec<(String, Fields)>,
    /// Every event's message, with the spans it happened in (innermost first).
    events: Vec<(String, Vec<(String, Fields)>)>,
}

struct Capture(Arc<Mutex<Seen>>);

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

/// A span's fields, kept in its extensions, and its index in `Seen::spans`.
struct Stored(Fields, usize);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attributes.record(&mut Collect(&mut fields));
        let mut seen = self.0.lock().unwrap();
        let name = attributes.metadata().name().to_owned();
        seen.spans.push((name, fields.clone()));
        let index = seen.spans.len() - 1;
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Stored(fields, index));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(Stored(fields, index)) = extensions.get_mut::<Stored>() {
                values.record(&mut Collect(fields));
                self.0.lock().unwrap().spans[*index].1 = fields.clone();
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut Collect(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let scope = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .map(|span| {
                        let fields = span
                            .extensions()
                            .get::<Stored>()
                            .map(|s| s.0.clone())
                            .unwrap_or_default();
                        (span.name().to_owned(), fields)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().unwrap().events.push((message, scope));
    }
}

#[rpc_gateway]
pub trait Orders {
    async fn place(&mut self, item: String) -> u32;
}

struct Desk;

impl RpcEndpoint for Desk {
    rpc_core::serves!(Orders);
}

impl Orders for Desk {
    async fn place(&mut self, item: String) -> u32 {
        tracing::info!(%item, "placing the order");
        1
    }
}

/// A recording subscriber for the current thread, and what it has seen.
fn capture() -> (Arc<Mutex<Seen>>, tracing::subscriber::DefaultGuard) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let subscriber = Registry::default().with(Capture(Arc::clone(&seen)));
    (seen, tracing::subscriber::set_default(subscriber))
}

fn calls(seen: &Seen, side: &str) -> Vec<Fields> {
    seen.spans
        .iter()
        .filter(|(name, fields)| {
            name == "rpc.call" && fields.get("side").map(String::as_str) == Some(side)
        })
        .map(|(_, fields)| fields.clone())
        .collect()
}

#[tokio::test]
async fn a_remote_call_has_a_span_on_each_side_and_the_handler_runs_in_the_server_s() {
    let (seen, _guard) = capture();
    bounded(async {
        let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        server.start_endpoint("desk", Desk).await.unwrap();
        let client = rpc_netty::client();
        let orders: OrdersClient = client
            .connect(server.local_address().unwrap(), "desk")
            .await
            .unwrap();
        assert_eq!(orders.place("tea".into()).await.unwrap(), 1);
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
    })
    .await;
    let seen = seen.lock().unwrap();

    let client = calls(&seen, "client");
    let server = calls(&seen, "server");
    assert_eq!(client.len(), 1, "{:?}", seen.spans);
    assert_eq!(server.len(), 1, "{:?}", seen.spans);
    let (client, server) = (&client[0], &server[0]);
    for fields in [client, server] {
        assert_eq!(fields["gateway"], "Orders");
        assert_eq!(fields["method"], "place");
    }
    assert!(client["endpoint"].contains("desk"), "{client:?}");
    assert_eq!(server["endpoint"], "desk");
    // The same request id on both sides.
    assert!(client.contains_key("request_id"), "{client:?}");
    assert_eq!(server["request_id"], client["request_id"]);
    assert!(
        server["caller"].starts_with("peer 127.0.0.1:"),
        "{server:?}"
    );

    // The handler's own event is inside the server's call span.
    let (_, scope) = seen
        .events
        .iter()
        .find(|(message, _)| message == "placing the order")
        .expect("the handler's event");
    let (name, fields) = &scope[0];
    assert_eq!(name, "rpc.call");
    assert_eq!(fields["side"], "server");
    assert_eq!(fields["request_id"], server["request_id"]);

    // One span per connection, each side saying which way it goes.
    let connections: Vec<&Fields> = seen
        .spans
        .iter()
        .filter(|(name, _)| name == "rpc.connection")
        .map(|(_, fields)| fields)
        .collect();
    let inbound = connections
        .iter()
        .find(|f| f["direction"] == "inbound")
        .expect("the server's connection span");
    assert_eq!(inbound["authenticated"], "false");
    assert!(inbound["peer"].starts_with("127.0.0.1:"), "{inbound:?}");
    let outbound = connections
        .iter()
        .find(|f| f["direction"] == "outbound")
        .expect("the client's connection span");
    assert_eq!(outbound["authenticated"], "false", "{outbound:?}");
}

#[rpc_gateway]
pub trait Relay {
    /// Places `item` at the desk behind this relay; returns the relay's own trace context
    /// (as `CallContext::trace` shows it) and the desk's answer.
    async fn forward(&mut self, item: String) -> (Option<String>, u32);
}

struct Forwarder(OrdersClient);

impl RpcEndpoint for Forwarder {
    rpc_core::serves!(Relay);
}

impl Relay for Forwarder {
    async fn forward(&mut self, item: String) -> (Option<String>, u32) {
        let trace = rpc_core::CallContext::current().trace();
        let placed = self.0.place(item).await.unwrap_or(0);
        (trace.map(|t| t.to_string()), placed)
    }
}

/// The call spans in the order they were made, with their side.
fn call_spans(seen: &Seen) -> Vec<Fields> {
    seen.spans
        .iter()
        .filter(|(name, _)| name == "rpc.call")
        .map(|(_, fields)| fields.clone())
        .collect()
}

/// A -> B -> C over TCP, three services: one trace, each span the child of the one before.
#[tokio::test]
async fn a_chain_of_calls_across_three_services_is_one_trace() {
    let (seen, _guard) = capture();
    let relayed = bounded(async {
        let c = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        c.start_endpoint("desk", Desk).await.unwrap();
        let b = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        let desk: OrdersClient = b.connect(c.local_address().unwrap(), "desk").await.unwrap();
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
    let seen = seen.lock().unwrap();
    let spans = call_spans(&seen);
    let [a_to_b, at_b, b_to_c, at_c] = &spans[..] else {
        panic!("four call spans: {spans:?}");
    };
    assert_eq!(
        [
            &a_to_b["side"],
            &at_b["side"],
            &b_to_c["side"],
            &at_c["side"]
        ],
        ["client", "server", "client", "server"]
    );
    let trace = &a_to_b["trace_id"];
    assert_eq!(trace.len(), 32, "{a_to_b:?}");
    for span in [at_b, b_to_c, at_c] {
        assert_eq!(&span["trace_id"], trace, "{spans:?}");
    }
    // Each span's parent is the span before it; the first has none.
    assert!(!a_to_b.contains_key("parent_span_id"), "{a_to_b:?}");
    assert_eq!(at_b["parent_span_id"], a_to_b["span_id"]);
    assert_eq!(b_to_c["parent_span_id"], at_b["span_id"]);
    assert_eq!(at_c["parent_span_id"], b_to_c["span_id"]);
    let ids: std::collections::HashSet<_> = spans.iter().map(|s| &s["span_id"]).collect();
    assert_eq!(ids.len(), 4, "a span id of its own each: {spans:?}");
    // The relay's handler saw its own span's context.
    assert_eq!(
        relayed.0,
        Some(format!("00-{trace}-{}-01", at_b["span_id"]))
    );
    // The desk's own event is in the trace.
    let (_, scope) = seen
        .events
        .iter()
        .find(|(message, _)| message == "placing the order")
        .expect("the handler's event");
    assert_eq!(&scope[0].1["trace_id"], trace);
}

/// The same chain in one process, with and without forced serialization.
#[tokio::test]
async fn a_chain_of_local_calls_is_one_trace() {
    for serialized in [false, true] {
        let (seen, _guard) = capture();
        bounded(async {
            let service = rpc_core::RpcService::builder()
                .force_serialization(serialized)
                .build();
            service.start_endpoint("desk", Desk).await.unwrap();
            let desk: OrdersClient = service.gateway("desk").unwrap();
            service
                .start_endpoint("relay", Forwarder(desk))
                .await
                .unwrap();
            let relay: RelayClient = service.gateway("relay").unwrap();
            assert_eq!(relay.forward("tea".into()).await.unwrap().1, 1);
            service.shutdown().await.unwrap();
        })
        .await;
        let spans = call_spans(&seen.lock().unwrap());
        assert_eq!(spans.len(), 4, "{spans:?}");
        assert!(
            spans.iter().all(|s| s["trace_id"] == spans[0]["trace_id"]),
            "{spans:?}"
        );
        assert_eq!(spans[3]["parent_span_id"], spans[2]["span_id"]);
    }
}

/// With no subscriber, no trace is made up: a handler sees none, and the call carried none.
#[tokio::test]
async fn without_a_subscriber_no_trace_is_made() {
    let relayed = bounded(async {
        let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        server.start_endpoint("desk", Desk).await.unwrap();
        let desk: OrdersClient = server.gateway("desk").unwrap();
        server
            .start_endpoint("relay", Forwarder(desk))
            .await
            .unwrap();
        let client = rpc_netty::client();
        let relay: RelayClient = client
            .connect(server.local_address().unwrap(), "relay")
            .await
            .unwrap();
        let relayed = relay.forward("tea".into()).await.unwrap();
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
        relayed
    })
    .await;
    assert_eq!(relayed, (None, 1));
}

/// A peer's trace context, byte for byte as PROTOCOL.md gives it, is what the server's span
/// continues; one with an all-zero trace id does not decode, fails that call alone, and the
/// connection goes on.
#[tokio::test]
async fn a_trace_context_from_the_wire_is_continued_and_a_zero_one_refused() {
    use rpc_core::Gateway;
    use rpc_netty::frame::{FrameKind, encode_frame};
    use rpc_netty::protocol;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (seen, _guard) = capture();
    let answers = bounded(async {
        let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        server.start_endpoint("desk", Desk).await.unwrap();
        let address = server.local_address().unwrap();
        let mut raw = tokio::net::TcpStream::connect(address).await.unwrap();
        raw.write_all(&common::handshake_bytes(protocol::PROTOCOL_VERSION))
            .await
            .unwrap();
        let mut hello = [0; 20];
        raw.read_exact(&mut hello).await.unwrap();
        let binding = rpc_core::transport::Binding {
            endpoint: "desk".into(),
            gateway: OrdersClient::NAME.into(),
            fingerprint: OrdersClient::FINGERPRINT,
            incarnation: None,
            session: None,
        };
        // place("tea"): trace flag 01, trace id 4b.., span id 0f.., no relayed session, method
        // 0, "tea".
        let mut traced = vec![1];
        traced.extend([0x4b; 16]);
        traced.extend([0x0f; 8]);
        traced.extend([0, 0, 3, b't', b'e', b'a']);
        let mut zero = vec![1];
        zero.extend([0; 24]);
        zero.extend([0, 0, 3, b't', b'e', b'a']);
        let mut bytes = Vec::new();
        for frame in [
            protocol::bind(1, 1, &binding),
            protocol::request(2, 1, protocol::NO_BUDGET, &traced),
            protocol::request(3, 1, protocol::NO_BUDGET, &zero),
            protocol::request(4, 1, protocol::NO_BUDGET, &[0, 0, 0, 3, b't', b'e', b'a']),
        ] {
            let mut out = bytes::BytesMut::new();
            encode_frame(&frame, &mut out, usize::MAX).unwrap();
            bytes.extend_from_slice(&out);
        }
        raw.write_all(&bytes).await.unwrap();
        let mut answers = Vec::new();
        for _ in 0..4 {
            let length = raw.read_u32().await.unwrap() as usize;
            let mut rest = vec![0; length];
            raw.read_exact(&mut rest).await.unwrap();
            let kind = FrameKind::from_byte(rest[0]);
            let id = u64::from_be_bytes(rest[1..9].try_into().unwrap());
            answers.push((kind, id, String::from_utf8_lossy(&rest[9..]).into_owned()));
        }
        server.shutdown().await.unwrap();
        answers
    })
    .await;
    let kinds: Vec<_> = answers.iter().map(|(kind, id, _)| (*kind, *id)).collect();
    assert_eq!(
        kinds,
        [
            (Some(FrameKind::Bound), 1),
            (Some(FrameKind::Response), 2),
            (Some(FrameKind::Failure), 3),
            (Some(FrameKind::Response), 4),
        ],
        "{answers:?}"
    );
    assert!(answers[2].2.contains("rejected the data"), "{answers:?}");
    let seen = seen.lock().unwrap();
    let server = calls(&seen, "server");
    assert_eq!(server.len(), 2, "{server:?}");
    assert_eq!(server[0]["trace_id"], "4b".repeat(16));
    assert_eq!(server[0]["parent_span_id"], "0f".repeat(8));
    assert_ne!(server[0]["span_id"], "0f".repeat(8));
    // The untraced call starts a trace of its own (a subscriber is listening).
    assert!(!server[1].contains_key("parent_span_id"), "{server:?}");
    assert_ne!(server[1]["trace_id"], server[0]["trace_id"]);
}

/// An outbound connection's span says the server was authenticated only once the handshake
/// proved it: with the shared secret, yes; with a wrong one, the field is never set.
#[tokio::test]
async fn an_outbound_connection_is_authenticated_only_by_its_handshake() {
    use rpc_netty::NettyBuilder;

    let (seen, _guard) = capture();
    bounded(async {
        let server = NettyBuilder::new()
            .shared_secret("the right secret, long enough")
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        server.start_endpoint("desk", Desk).await.unwrap();
        let address = server.local_address().unwrap();
        let right = NettyBuilder::new()
            .shared_secret("the right secret, long enough")
            .client();
        let orders: OrdersClient = right.connect(address, "desk").await.unwrap();
        assert_eq!(orders.place("tea".into()).await.unwrap(), 1);
        let wrong = NettyBuilder::new()
            .shared_secret("a wrong secret, long enough too")
            .client();
        assert!(
            wrong
                .connect::<OrdersClient>(address, "desk")
                .await
                .is_err()
        );
        for service in [right, wrong, server] {
            service.shutdown().await.unwrap();
        }
    })
    .await;
    let seen = seen.lock().unwrap();
    let outbound: Vec<&Fields> = seen
        .spans
        .iter()
        .filter(|(name, f)| name == "rpc.connection" && f["direction"] == "outbound")
        .map(|(_, fields)| fields)
        .collect();
    assert_eq!(outbound.len(), 2, "{outbound:?}");
    assert_eq!(outbound[0]["authenticated"], "true", "{outbound:?}");
    assert!(!outbound[1].contains_key("authenticated"), "{outbound:?}");
}

/// A trace that came from elsewhere (a `traceparent` header) is continued by the calls made
/// in its `TraceContext::scope`, across the wire.
#[tokio::test]
async fn calls_in_a_trace_scope_continue_that_trace() {
    let (seen, _guard) = capture();
    let incoming: rpc_core::TraceContext =
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap();
    bounded(async {
        let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        server.start_endpoint("desk", Desk).await.unwrap();
        let client = rpc_netty::client();
        let orders: OrdersClient = client
            .connect(server.local_address().unwrap(), "desk")
            .await
            .unwrap();
        let placed = incoming
            .scope(async { orders.place("tea".into()).await })
            .await;
        assert_eq!(placed.unwrap(), 1);
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
    })
    .await;
    let seen = seen.lock().unwrap();
    let spans = call_spans(&seen);
    let [client, server] = &spans[..] else {
        panic!("two call spans: {spans:?}");
    };
    for span in [client, server] {
        assert_eq!(
            span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{spans:?}"
        );
    }
    assert_eq!(client["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(server["parent_span_id"], client["span_id"]);
}
