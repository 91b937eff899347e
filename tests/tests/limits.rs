//! Backpressure and limits: nothing grows without bound, and every refusal is a distinct,
//! immediate error.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Harness, Mode};
use rpc_core::{Deferred, EndpointOptions, RpcEndpoint, RpcError, rpc_gateway};
use rpc_netty::NettyBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc};

#[rpc_gateway]
pub trait Gate {
    /// Holds the main thread until released; says when it has started.
    async fn hold(&mut self) -> u32;
    async fn echo(&mut self, n: u64) -> u64;
    fn note(&mut self, n: u64);
    /// Replies once a permit is available, off the main thread.
    fn slow(&mut self, n: u64) -> Deferred<u64>;
    /// How many bytes `data` has.
    async fn size(&mut self, data: Vec<u8>) -> usize;
    /// One-way: adds `data`'s length to the total `kept` reports.
    fn keep(&mut self, data: Vec<u8>);
    /// The total of the lengths `keep` received.
    async fn kept(&mut self) -> usize;
}

struct Gatekeeper {
    release: Arc<Notify>,
    holding: Option<mpsc::UnboundedSender<()>>,
    permits: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
    most_pending: Arc<AtomicUsize>,
    kept: usize,
}

impl Default for Gatekeeper {
    fn default() -> Self {
        Gatekeeper {
            release: Arc::default(),
            holding: None,
            permits: Arc::new(Semaphore::new(0)),
            pending: Arc::default(),
            most_pending: Arc::default(),
            kept: 0,
        }
    }
}

impl RpcEndpoint for Gatekeeper {
    rpc_core::serves!(Gate);
}

impl Gate for Gatekeeper {
    async fn hold(&mut self) -> u32 {
        if let Some(holding) = &self.holding {
            let _ = holding.send(());
        }
        self.release.notified().await;
        1
    }

    async fn echo(&mut self, n: u64) -> u64 {
        n
    }

    fn note(&mut self, _n: u64) {}

    fn slow(&mut self, n: u64) -> Deferred<u64> {
        let now = self.pending.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_pending.fetch_max(now, Ordering::SeqCst);
        let (permits, pending) = (Arc::clone(&self.permits), Arc::clone(&self.pending));
        Deferred::new(async move {
            let _permit = permits.acquire().await;
            pending.fetch_sub(1, Ordering::SeqCst);
            n
        })
    }

    async fn size(&mut self, data: Vec<u8>) -> usize {
        data.len()
    }

    fn keep(&mut self, data: Vec<u8>) {
        self.kept += data.len();
    }

    async fn kept(&mut self) -> usize {
        self.kept
    }
}

async fn mailbox_full_refuses_calls_beyond_its_capacity(mode: Mode) {
    let h = Harness::new(mode).await;
    let (holding, mut started) = mpsc::unbounded_channel();
    let endpoint = Gatekeeper {
        holding: Some(holding),
        ..Gatekeeper::default()
    };
    let release = Arc::clone(&endpoint.release);
    let options = EndpointOptions::new().mailbox_capacity(3);
    h.server
        .start_endpoint_with("gate", endpoint, options)
        .await
        .unwrap();
    let gate: GateClient = h.gateway("gate").await.unwrap();

    let held = gate.hold();
    started.recv().await.unwrap(); // the main thread is busy; the mailbox fills up
    let queued = [gate.echo(1), gate.echo(2), gate.echo(3)];
    let refused = gate.echo(4);
    let tell = gate.note(5);
    match refused.await {
        Err(error @ RpcError::MailboxFull { .. }) => {
            let text = error.to_string();
            assert!(text.contains("`gate`") && text.contains('3'), "{text}");
        }
        other => panic!("expected MailboxFull, got {other:?}"),
    }
    if mode == Mode::Tcp {
        // A remote tell waits at the server (which stops reading) until there is room.
        assert!(tell.is_ok());
    } else {
        assert!(matches!(
            tell,
            Err(RpcError::MailboxFull { capacity: 3, .. })
        ));
    }
    release.notify_one();
    assert_eq!(held.await.unwrap(), 1);
    for (call, n) in queued.into_iter().zip(1..) {
        assert_eq!(call.await.unwrap(), n, "the calls within capacity all ran");
    }
    // Room again once the queue drained.
    assert_eq!(gate.echo(6).await.unwrap(), 6);
    h.shutdown().await.unwrap();
}

in_every_mode!(mailbox_full_refuses_calls_beyond_its_capacity);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_invocations_are_counted_in_bytes() {
    common::bounded(async {
        let h = Harness::new(Mode::Tcp).await;
        let (holding, mut started) = mpsc::unbounded_channel();
        let endpoint = Gatekeeper {
            holding: Some(holding),
            ..Gatekeeper::default()
        };
        let release = Arc::clone(&endpoint.release);
        let options = EndpointOptions::new().mailbox_bytes(1000);
        h.server
            .start_endpoint_with("gate", endpoint, options)
            .await
            .unwrap();
        let gate: GateClient = h.gateway("gate").await.unwrap();
        let held = gate.hold();
        started.recv().await.unwrap();
        // 600 bytes fit in a 1,000-byte mailbox; 600 more do not.
        let first = gate.size(vec![1; 600]);
        let refused = gate.size(vec![2; 600]);
        match refused.await {
            Err(error @ RpcError::MailboxFull { .. }) => {
                assert!(error.to_string().contains("mailbox_bytes"), "{error}");
            }
            other => panic!("expected MailboxFull, got {other:?}"),
        }
        // A tell waits at the server until there is room, and is not lost.
        gate.keep(vec![3; 600]).unwrap();
        // Calls behind the held tell wait with it, in order.
        let small = gate.size(vec![4; 10]);
        release.notify_one();
        assert_eq!(held.await.unwrap(), 1);
        assert_eq!(first.await.unwrap(), 600);
        assert_eq!(small.await.unwrap(), 10);
        assert_eq!(gate.kept().await.unwrap(), 600);
        // One invocation larger than the whole budget gets in when the mailbox is empty.
        assert_eq!(gate.size(vec![5; 5000]).await.unwrap(), 5000);
        h.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_reading_a_connection_at_its_backlog_limit() {
    common::bounded(async {
        let server = NettyBuilder::new()
            .max_backlog_bytes(1000)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let (holding, mut started) = mpsc::unbounded_channel();
        let endpoint = Gatekeeper {
            holding: Some(holding),
            ..Gatekeeper::default()
        };
        let release = Arc::clone(&endpoint.release);
        let options = EndpointOptions::new().mailbox_capacity(3);
        server
            .start_endpoint_with("held", endpoint, options)
            .await
            .unwrap();
        server
            .start_endpoint("free", Gatekeeper::default())
            .await
            .unwrap();
        let address = server.local_address().unwrap().to_string();
        let client = rpc_netty::client();
        let held: GateClient = client.connect(&address, "held").await.unwrap();
        let holding = held.hold();
        started.recv().await.unwrap();
        // Two 600-byte asks pass the connection's 1,000-byte backlog: the server stops
        // reading, so the third and fourth stay on the wire instead of meeting a mailbox of 3
        // that would refuse the fourth.
        let calls: Vec<_> = (0..4).map(|n| held.size(vec![n; 600])).collect();
        // Another connection is served meanwhile.
        let other = rpc_netty::client();
        let free: GateClient = other.connect(&address, "free").await.unwrap();
        assert_eq!(free.echo(7).await.unwrap(), 7);
        release.notify_one();
        assert_eq!(holding.await.unwrap(), 1);
        for call in calls {
            assert_eq!(call.await.unwrap(), 600, "no call was refused");
        }
        other.shutdown().await.unwrap();
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_reading_at_its_in_flight_limit() {
    common::init_tracing();
    let server = NettyBuilder::new()
        .max_in_flight(2)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let endpoint = Gatekeeper::default();
    let (permits, most) = (
        Arc::clone(&endpoint.permits),
        Arc::clone(&endpoint.most_pending),
    );
    server.start_endpoint("gate", endpoint).await.unwrap();
    let address = server.local_address().unwrap().to_string();
    let client = rpc_netty::client();
    let gate: GateClient = client.connect(&address, "gate").await.unwrap();

    // Six asks leave in one write; the server must not take more than two at a time.
    let calls: Vec<_> = (0..6).map(|n| gate.slow(n)).collect();
    permits.add_permits(6);
    for (call, n) in calls.into_iter().zip(0..) {
        assert_eq!(call.await.unwrap(), n);
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= 2,
        "the endpoint held {most} calls at once, over the limit of 2"
    );
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_refuses_asks_beyond_its_in_flight_limit() {
    common::init_tracing();
    let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    server
        .start_endpoint("gate", Gatekeeper::default())
        .await
        .unwrap();
    let address = server.local_address().unwrap().to_string();
    let client = NettyBuilder::new().max_in_flight(2).client();
    let gate: GateClient = client.connect(&address, "gate").await.unwrap();

    let _first = gate.slow(1); // never released: stays in flight
    let _second = gate.slow(2);
    match gate.slow(3).await {
        Err(error @ RpcError::Overloaded { .. }) => {
            assert!(error.to_string().contains("max_in_flight"), "{error}");
        }
        other => panic!("expected Overloaded, got {other:?}"),
    }
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

/// A peer that completes the handshake and binds, then stops reading.
async fn deaf_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        for _ in 0..2 {
            let length = stream.read_u32().await.unwrap();
            let mut rest = vec![0; length as usize];
            stream.read_exact(&mut rest).await.unwrap();
            match rest[0] {
                0x01 => stream.write_all(&common::SERVER_HELLO).await.unwrap(),
                _ => {
                    // Bound, to incarnation 0x11...: 16 bytes.
                    let mut bound = vec![0, 0, 0, 25, 0x05];
                    bound.extend_from_slice(&rest[1..9]);
                    bound.extend_from_slice(&[0x11; 16]);
                    stream.write_all(&bound).await.unwrap();
                }
            }
        }
        // Never read again, never close: keep the stream alive for the test's duration.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(stream);
    });
    address
}

#[rpc_gateway]
pub trait Sink {
    fn put(&mut self, data: Vec<u8>);
}

#[tokio::test]
async fn tells_to_a_peer_that_stops_reading_are_refused_not_buffered_forever() {
    common::init_tracing();
    let address = deaf_server().await;
    let client = NettyBuilder::new()
        .max_outbox_bytes(256 * 1024)
        .linger(Duration::from_millis(100))
        .client();
    let sink: SinkClient = client.connect(&address.to_string(), "sink").await.unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut refused = None;
    // The socket's buffers fill (a few MiB on loopback), then the outbox, then tells fail.
    for sent in 0..10_000 {
        match sink.put(chunk.clone()) {
            Ok(()) => tokio::task::yield_now().await,
            Err(error) => {
                refused = Some((sent, error));
                break;
            }
        }
    }
    match refused {
        Some((_, error @ RpcError::Overloaded { .. })) => {
            assert!(error.to_string().contains("max_outbox_bytes"), "{error}");
        }
        other => panic!("expected Overloaded within 10,000 tells, got {other:?}"),
    }
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_maximum_are_closed_on_accept() {
    common::init_tracing();
    let server = NettyBuilder::new()
        .max_connections(1)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    server
        .start_endpoint("gate", Gatekeeper::default())
        .await
        .unwrap();
    let address = server.local_address().unwrap().to_string();
    let client = rpc_netty::client();
    let gate: GateClient = client.connect(&address, "gate").await.unwrap();
    assert_eq!(gate.echo(1).await.unwrap(), 1);

    let mut extra = TcpStream::connect(&address).await.unwrap();
    let mut buffer = [0; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the connection over the maximum was not closed: {read:?}"
    );
    assert_eq!(
        gate.echo(2).await.unwrap(),
        2,
        "the first connection is unaffected"
    );
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[rpc_gateway]
pub trait Journal {
    /// Holds the main thread until released; says when it has started.
    async fn hold(&mut self);
    fn note(&mut self, n: u64);
    async fn notes(&mut self) -> Vec<u64>;
}

struct Recorder {
    release: Arc<Notify>,
    holding: mpsc::UnboundedSender<()>,
    notes: Vec<u64>,
}

impl RpcEndpoint for Recorder {
    rpc_core::serves!(Journal);
}

impl Journal for Recorder {
    async fn hold(&mut self) {
        let _ = self.holding.send(());
        self.release.notified().await;
    }
    fn note(&mut self, n: u64) {
        self.notes.push(n);
    }
    async fn notes(&mut self) -> Vec<u64> {
        self.notes.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_tells_to_a_full_mailbox_wait_instead_of_being_lost() {
    common::init_tracing();
    let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    let (holding, mut started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let recorder = Recorder {
        release: Arc::clone(&release),
        holding,
        notes: Vec::new(),
    };
    server
        .start_endpoint_with(
            "journal",
            recorder,
            EndpointOptions::new().mailbox_capacity(4),
        )
        .await
        .unwrap();
    let address = server.local_address().unwrap().to_string();
    let client = rpc_netty::client();
    let journal: JournalClient = client.connect(&address, "journal").await.unwrap();

    let held = journal.hold();
    started.recv().await.unwrap();
    // Fifty tells into a mailbox of four, while its main thread is busy.
    for n in 0..50 {
        journal.note(n).unwrap();
    }
    release.notify_one();
    held.await.unwrap();
    // The last tells may fill the mailbox again just before this ask is read, and an ask to a
    // full mailbox is refused (only tells wait): ask again until there is room.
    let notes = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match journal.notes().await {
                Err(RpcError::MailboxFull { .. }) => tokio::task::yield_now().await,
                other => break other.unwrap(),
            }
        }
    })
    .await
    .expect("the mailbox drains");
    assert_eq!(
        notes,
        (0..50).collect::<Vec<_>>(),
        "every tell arrived, in order"
    );
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}
