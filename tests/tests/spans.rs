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
    let seen = Arc::new(Mutex::new(Seen::default()));
    let subscriber = Registry::default().with(Capture(Arc::clone(&seen)));
    let _guard = tracing::subscriber::set_default(subscriber);
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
    assert!(connections.iter().any(|f| f["direction"] == "outbound"));
}
