//! Metrics (feature `metrics` of rpc-netty and rpc-core): a recorder that keeps what it is
//! given sees the counts, gauges and histogram entries of a known mix of calls, errors and
//! refusals.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::bounded;
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use rpc_core::{RpcEndpoint, RpcError, RpcService, rpc_gateway};
use rpc_netty::NettyBuilder;
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, mpsc};

/// A metric as the recorder keeps it: its name and its labels, sorted.
type Name = (String, BTreeMap<String, String>);

/// Keeps every metric registered with it; reading one takes nothing away.
#[derive(Default)]
struct Keeper {
    counters: Mutex<BTreeMap<Name, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<Name, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<Name, Arc<Entries>>>,
}

#[derive(Default)]
struct Entries(Mutex<Vec<f64>>);

impl HistogramFn for Entries {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn name_of(key: &Key) -> Name {
    let labels = key
        .labels()
        .map(|label| (label.key().to_owned(), label.value().to_owned()))
        .collect();
    (key.name().to_owned(), labels)
}

impl metrics::Recorder for Keeper {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap();
        Counter::from_arc(Arc::clone(counters.entry(name_of(key)).or_default()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut gauges = self.gauges.lock().unwrap();
        Gauge::from_arc(Arc::clone(gauges.entry(name_of(key)).or_default()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().unwrap();
        Histogram::from_arc(Arc::clone(histograms.entry(name_of(key)).or_default()))
    }
}

fn name(metric: &str, labels: &[(&str, &str)]) -> Name {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    (metric.to_owned(), labels)
}

impl Keeper {
    fn counter(&self, metric: &str, labels: &[(&str, &str)]) -> u64 {
        let counters = self.counters.lock().unwrap();
        counters
            .get(&name(metric, labels))
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    fn gauge(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let gauges = self.gauges.lock().unwrap();
        gauges
            .get(&name(metric, labels))
            .map_or(0.0, |g| f64::from_bits(g.load(Ordering::SeqCst)))
    }

    fn entries(&self, metric: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let histograms = self.histograms.lock().unwrap();
        histograms
            .get(&name(metric, labels))
            .map(|h| h.0.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

/// The process's recorder, installed once for every test in this file.
fn keeper() -> &'static Keeper {
    static KEEPER: OnceLock<&'static Keeper> = OnceLock::new();
    KEEPER.get_or_init(|| {
        let keeper: &'static Keeper = Box::leak(Box::default());
        metrics::set_global_recorder(keeper).expect("the only recorder");
        keeper
    })
}

#[rpc_gateway]
pub trait Meter {
    async fn echo(&mut self, n: u64) -> u64;
    /// Panics.
    async fn fail(&mut self) -> u64;
    /// Says it has started, then holds the main thread until released.
    async fn hold(&mut self);
    fn note(&mut self, n: u64);
}

struct Gauged {
    started: mpsc::UnboundedSender<()>,
    release: Arc<Notify>,
}

impl RpcEndpoint for Gauged {
    rpc_core::serves!(Meter);
}

impl Meter for Gauged {
    async fn echo(&mut self, n: u64) -> u64 {
        n
    }
    async fn fail(&mut self) -> u64 {
        panic!("failing on purpose")
    }
    async fn hold(&mut self) {
        let _ = self.started.send(());
        self.release.notified().await;
    }
    fn note(&mut self, _n: u64) {}
}

fn gauged() -> (Gauged, mpsc::UnboundedReceiver<()>, Arc<Notify>) {
    let (started, on_start) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let endpoint = Gauged {
        started,
        release: Arc::clone(&release),
    };
    (endpoint, on_start, release)
}

const G: (&str, &str) = ("gateway", "Meter");

/// One test, so that the two parts do not count each other's calls in the one recorder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_errors_refusals_and_depths_are_measured() {
    remote_calls_errors_and_refusals_are_counted().await;
    mailbox_depth_in_flight_and_timeouts_are_measured().await;
}

async fn remote_calls_errors_and_refusals_are_counted() {
    let keeper = keeper();
    bounded(async {
        let server = NettyBuilder::new()
            .max_connections(1)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let (endpoint, _, _) = gauged();
        server.start_endpoint("meter", endpoint).await.unwrap();
        let address = server.local_address().unwrap();
        let client = rpc_netty::client();
        let meter: MeterClient = client.connect(address, "meter").await.unwrap();
        for n in 0..3 {
            assert_eq!(meter.echo(n).await.unwrap(), n);
        }
        meter.note(1).unwrap();
        meter.note(2).unwrap();
        // Behind the notes on the same connection: once it is answered, they have run.
        assert!(matches!(
            meter.fail().await,
            Err(RpcError::HandlerPanicked { .. })
        ));
        assert_eq!(
            keeper.gauge("rpc_connections_open", &[("direction", "inbound")]),
            1.0
        );

        // A second connection is over the maximum: closed on accept, and counted first.
        let mut extra = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut buffer = [0; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buffer)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
        assert_eq!(
            keeper.counter(
                "rpc_connections_refused_total",
                &[("reason", "max_connections")]
            ),
            1
        );

        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
    })
    .await;

    let client = |method: &'static str| [G, ("method", method)];
    let server = |method: &'static str| [G, ("method", method), ("endpoint", "meter")];
    let ask = |method: &'static str| [G, ("method", method), ("kind", "ask")];
    assert_eq!(keeper.counter("rpc_client_calls_total", &ask("echo")), 3);
    assert_eq!(keeper.counter("rpc_client_calls_total", &ask("fail")), 1);
    assert_eq!(
        keeper.counter(
            "rpc_client_calls_total",
            &[G, ("method", "note"), ("kind", "tell")]
        ),
        2
    );
    assert_eq!(
        keeper.counter(
            "rpc_client_errors_total",
            &[G, ("method", "fail"), ("error", "handler_panicked")]
        ),
        1
    );
    let latencies = keeper.entries("rpc_client_call_duration_seconds", &client("echo"));
    assert_eq!(latencies.len(), 3, "{latencies:?}");
    assert!(
        latencies.iter().all(|s| *s > 0.0 && *s < 10.0),
        "{latencies:?}"
    );
    assert_eq!(keeper.gauge("rpc_client_in_flight", &client("echo")), 0.0);

    assert_eq!(keeper.counter("rpc_server_calls_total", &server("echo")), 3);
    assert_eq!(keeper.counter("rpc_server_calls_total", &server("note")), 2);
    assert_eq!(
        keeper.counter(
            "rpc_server_errors_total",
            &[
                G,
                ("method", "fail"),
                ("endpoint", "meter"),
                ("error", "handler_panicked")
            ]
        ),
        1
    );
    assert_eq!(
        keeper
            .entries("rpc_server_call_duration_seconds", &server("echo"))
            .len(),
        3
    );
    assert_eq!(
        keeper.gauge("rpc_server_in_flight", &[("endpoint", "meter")]),
        0.0
    );

    assert_eq!(
        keeper.counter("rpc_connections_total", &[("direction", "inbound")]),
        1
    );
    assert_eq!(
        keeper.counter("rpc_connections_total", &[("direction", "outbound")]),
        1
    );
    for direction in ["inbound", "outbound"] {
        assert_eq!(
            keeper.gauge("rpc_connections_open", &[("direction", direction)]),
            0.0,
            "{direction} connections are closed"
        );
    }
}

async fn mailbox_depth_in_flight_and_timeouts_are_measured() {
    let keeper = keeper();
    let depth = [("endpoint", "held")];
    bounded(async {
        let service = RpcService::new();
        let (endpoint, mut started, release) = gauged();
        service.start_endpoint("held", endpoint).await.unwrap();
        let meter: MeterClient = service.gateway("held").unwrap();
        let held = tokio::spawn({
            let meter = meter.clone();
            async move { meter.hold().await }
        });
        started.recv().await.unwrap();
        for n in 0..3 {
            meter.note(n).unwrap();
        }
        assert_eq!(keeper.gauge("rpc_mailbox_depth", &depth), 3.0);
        assert_eq!(keeper.gauge("rpc_server_in_flight", &depth), 1.0);
        assert_eq!(
            keeper.gauge("rpc_client_in_flight", &[G, ("method", "hold")]),
            1.0
        );
        release.notify_one();
        held.await.unwrap().unwrap();
        assert_eq!(meter.echo(7).await.unwrap(), 7);
        assert_eq!(keeper.gauge("rpc_mailbox_depth", &depth), 0.0);

        // An ask that times out is an error of its kind, and no longer in flight.
        let timed_out = meter.with_timeout(Duration::from_millis(20)).hold().await;
        assert!(
            matches!(timed_out, Err(RpcError::Timeout { .. })),
            "{timed_out:?}"
        );
        // Releases it if it started (it may have been skipped, expired before its turn).
        release.notify_one();
        service.shutdown().await.unwrap();
    })
    .await;
    assert_eq!(
        keeper.counter(
            "rpc_client_errors_total",
            &[G, ("method", "hold"), ("error", "timeout")]
        ),
        1
    );
    assert_eq!(
        keeper.gauge("rpc_client_in_flight", &[G, ("method", "hold")]),
        0.0
    );
    assert_eq!(keeper.gauge("rpc_server_in_flight", &depth), 0.0);
    assert_eq!(
        keeper
            .entries(
                "rpc_server_call_duration_seconds",
                &[G, ("method", "note"), ("endpoint", "held")]
            )
            .len(),
        3
    );
}
