//! Streamed replies: items in order, errors and panics mid-stream, the consumer's drop
//! cancelling the producer, a cut connection, and many streams sharing a connection with
//! ordinary calls. The semantics run in every mode; the transport's rules over TCP.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Harness, Mode};
use futures::StreamExt;
use rpc_core::{RpcEndpoint, RpcError, RpcService, RpcStream, STREAM_WINDOW, rpc_gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

#[rpc_gateway]
pub trait Feed {
    /// `0..count`.
    fn count(&mut self, count: u64) -> RpcStream<u64>;
    /// `0..fail_at`, then the producer's error.
    fn failing(&mut self, fail_at: u64) -> RpcStream<u64>;
    /// `0..panic_at`, then a panic in the producer.
    fn panicking(&mut self, panic_at: u64) -> RpcStream<u64>;
    /// Items of `size` bytes without end, counting each one produced; the test learns when
    /// the producer is dropped.
    fn endless(&mut self, size: u32) -> RpcStream<Vec<u8>>;
    /// `0..count`, each after `pause_ms`.
    async fn slow(&mut self, count: u64, pause_ms: u64) -> RpcStream<u64>;
    /// An ordinary ask.
    async fn ping(&mut self, n: u64) -> u64;
    /// Stream items that are `bytes::Bytes`, `count` of `size` bytes each.
    fn blobs(&mut self, count: u32, size: u32) -> RpcStream<bytes::Bytes>;
}

struct FeedEndpoint {
    produced: Arc<AtomicU64>,
    dropped: mpsc::UnboundedSender<u64>,
}

impl RpcEndpoint for FeedEndpoint {
    rpc_core::serves!(Feed);
}

/// Reports, when dropped, how many items its stream produced.
struct DropReport {
    produced: Arc<AtomicU64>,
    dropped: mpsc::UnboundedSender<u64>,
}

impl Drop for DropReport {
    fn drop(&mut self) {
        let _ = self.dropped.send(self.produced.load(Ordering::SeqCst));
    }
}

impl Feed for FeedEndpoint {
    fn count(&mut self, count: u64) -> RpcStream<u64> {
        RpcStream::iter(0..count)
    }

    fn failing(&mut self, fail_at: u64) -> RpcStream<u64> {
        RpcStream::try_new(futures::stream::iter((0..=fail_at).map(move |i| {
            if i == fail_at {
                Err(format!("disk full at item {i}"))
            } else {
                Ok(i)
            }
        })))
    }

    fn panicking(&mut self, panic_at: u64) -> RpcStream<u64> {
        RpcStream::new(futures::stream::iter(0..=panic_at).inspect(move |i| {
            assert!(*i < panic_at, "the producer broke at item {i}");
        }))
    }

    fn endless(&mut self, size: u32) -> RpcStream<Vec<u8>> {
        let report = DropReport {
            produced: Arc::clone(&self.produced),
            dropped: self.dropped.clone(),
        };
        let produced = Arc::clone(&self.produced);
        RpcStream::new(futures::stream::repeat_with(move || {
            let _held = &report;
            produced.fetch_add(1, Ordering::SeqCst);
            vec![7; size as usize]
        }))
    }

    async fn slow(&mut self, count: u64, pause_ms: u64) -> RpcStream<u64> {
        RpcStream::new(futures::stream::iter(0..count).then(move |i| async move {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            i
        }))
    }

    async fn ping(&mut self, n: u64) -> u64 {
        n + 1
    }

    fn blobs(&mut self, count: u32, size: u32) -> RpcStream<bytes::Bytes> {
        RpcStream::iter((0..count).map(move |i| bytes::Bytes::from(vec![i as u8; size as usize])))
    }
}

struct Fixture {
    harness: Harness,
    feed: FeedClient,
    dropped: mpsc::UnboundedReceiver<u64>,
    produced: Arc<AtomicU64>,
}

async fn fixture(mode: Mode) -> Fixture {
    let harness = Harness::new(mode).await;
    let produced = Arc::new(AtomicU64::new(0));
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    harness
        .server
        .start_endpoint(
            "feed",
            FeedEndpoint {
                produced: Arc::clone(&produced),
                dropped: dropped_tx,
            },
        )
        .await
        .unwrap();
    let feed = harness.gateway::<FeedClient>("feed").await.unwrap();
    Fixture {
        harness,
        feed,
        dropped,
        produced,
    }
}

async fn items_arrive_in_order(mode: Mode) {
    let f = fixture(mode).await;
    let items: Vec<u64> = f
        .feed
        .count(10_000)
        .map(|item| item.expect("an item"))
        .collect()
        .await;
    assert_eq!(items, (0..10_000).collect::<Vec<_>>());
    // An empty stream ends at once.
    assert_eq!(f.feed.count(0).count().await, 0);
    // Ordinary calls still work on the same proxy afterwards.
    assert_eq!(f.feed.ping(1).await.unwrap(), 2);
    f.harness.shutdown().await.unwrap();
}

async fn an_error_ends_the_stream_with_it(mode: Mode) {
    let f = fixture(mode).await;
    let items: Vec<Result<u64, RpcError>> = f.feed.failing(3).collect().await;
    assert_eq!(items.len(), 4, "{items:?}");
    for (i, item) in items[..3].iter().enumerate() {
        assert_eq!(item.as_ref().ok(), Some(&(i as u64)));
    }
    match &items[3] {
        Err(RpcError::StreamFailed { message }) => assert_eq!(message, "disk full at item 3"),
        other => panic!("expected StreamFailed, got {other:?}"),
    }
    f.harness.shutdown().await.unwrap();
}

async fn a_panicking_producer_ends_the_stream_and_the_endpoint_serves_on(mode: Mode) {
    let f = fixture(mode).await;
    let items: Vec<Result<u64, RpcError>> = f.feed.panicking(2).collect().await;
    assert_eq!(items.len(), 3, "{items:?}");
    match &items[2] {
        Err(RpcError::HandlerPanicked {
            endpoint,
            method,
            message,
            ..
        }) => {
            assert_eq!((endpoint.as_str(), method.as_str()), ("feed", "panicking"));
            assert!(message.contains("broke at item 2"), "{message}");
        }
        other => panic!("expected HandlerPanicked, got {other:?}"),
    }
    assert_eq!(f.feed.ping(5).await.unwrap(), 6);
    f.harness.shutdown().await.unwrap();
}

/// The consumer reads a few items of an endless stream and drops it: the producer is
/// dropped, having produced at most one credit window beyond what was read.
async fn dropping_the_consumer_cancels_the_producer(mode: Mode) {
    let mut f = fixture(mode).await;
    const SIZE: u32 = 1024;
    let mut stream = f.feed.endless(SIZE);
    for _ in 0..10 {
        assert_eq!(stream.next().await.unwrap().unwrap().len(), SIZE as usize);
    }
    drop(stream);
    let produced = f.dropped.recv().await.expect("the producer was dropped");
    // An item's encoding: its length prefix and its bytes.
    let window_items = u64::from(STREAM_WINDOW / SIZE) + 1;
    let bound = match mode {
        // Polled by the consumer itself: nothing runs ahead.
        Mode::InProcess | Mode::Serialized => 10,
        Mode::Tcp => 10 + window_items,
    };
    assert!(
        produced <= bound,
        "{produced} items produced for 10 consumed (at most {bound})"
    );
    assert_eq!(produced, f.produced.load(Ordering::SeqCst), "nothing after");
    // The endpoint serves on.
    assert_eq!(f.feed.ping(1).await.unwrap(), 2);
    f.harness.shutdown().await.unwrap();
}

/// A stream whose handler is slow to return is bounded by the proxy's timeout; a stream that
/// opened outlives it.
async fn the_timeout_bounds_the_opening_not_the_stream(mode: Mode) {
    let f = fixture(mode).await;
    let feed = f.feed.with_timeout(Duration::from_millis(300));
    // Each item 150 ms apart: 5 items take longer than the timeout, which only bounds the
    // opening (the handler returns at once).
    let items: Vec<u64> = feed.slow(5, 150).map(|i| i.unwrap()).collect().await;
    assert_eq!(items, [0, 1, 2, 3, 4]);
    f.harness.shutdown().await.unwrap();
}

async fn bytes_items_arrive_whole(mode: Mode) {
    let f = fixture(mode).await;
    let sizes = [0u32, 1, 1000, 40_000, 1 << 20];
    for size in sizes {
        let items: Vec<bytes::Bytes> = f
            .feed
            .blobs(3, size)
            .map(|item| item.unwrap())
            .collect()
            .await;
        assert_eq!(items.len(), 3);
        for (i, item) in items.iter().enumerate() {
            assert_eq!(item.len(), size as usize);
            assert!(item.iter().all(|b| *b == i as u8));
        }
    }
    f.harness.shutdown().await.unwrap();
}

in_every_mode!(
    items_arrive_in_order,
    an_error_ends_the_stream_with_it,
    a_panicking_producer_ends_the_stream_and_the_endpoint_serves_on,
    dropping_the_consumer_cancels_the_producer,
    the_timeout_bounds_the_opening_not_the_stream,
    bytes_items_arrive_whole,
);

/// A TCP relay between one client and `target` that the test can cut.
async fn cuttable_relay(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (cut, cut_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(target).await.unwrap();
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let up = async {
            let mut buffer = vec![0; 64 * 1024];
            while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
                if server_write.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        };
        let down = async {
            let mut buffer = vec![0; 64 * 1024];
            while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
                if client_write.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::join!(up, down) } => {}
            _ = cut_rx => {}
        }
        // Dropping the halves closes both connections.
    });
    (address, cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_ends_the_stream_with_disconnected() {
    common::bounded(async {
        let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
        server
            .start_endpoint(
                "feed",
                FeedEndpoint {
                    produced: Arc::default(),
                    dropped: dropped_tx,
                },
            )
            .await
            .unwrap();
        let (relay, cut) = cuttable_relay(server.local_address().unwrap()).await;
        let client = rpc_netty::client();
        let feed: FeedClient = client.connect(&relay.to_string(), "feed").await.unwrap();
        let mut stream = feed.endless(100);
        for _ in 0..5 {
            stream.next().await.unwrap().unwrap();
        }
        cut.send(()).unwrap();
        // What was in flight may still arrive; then the stream ends with Disconnected.
        let end = loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        };
        assert!(
            matches!(end, Some(Err(RpcError::Disconnected { .. }))),
            "{end:?}"
        );
        assert!(stream.next().await.is_none(), "nothing after the end");
        // The server noticed too, and dropped the producer.
        dropped.recv().await.expect("the producer was dropped");
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
    })
    .await
}

/// A hundred streams share one connection with ordinary asks: every ask is answered while
/// the streams are still running, and every stream completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_streams_and_asks_share_a_connection_without_starving() {
    common::bounded(async {
        let f = fixture(Mode::Tcp).await;
        const STREAMS: usize = 100;
        const ITEMS: u64 = 2_000;
        let finished = Arc::new(AtomicU64::new(0));
        let mut consumers = Vec::new();
        for _ in 0..STREAMS {
            let feed = f.feed.clone();
            let finished = Arc::clone(&finished);
            consumers.push(tokio::spawn(async move {
                let mut stream = feed.blobs(ITEMS as u32, 1024);
                let mut count = 0u64;
                while let Some(item) = stream.next().await {
                    assert_eq!(item.unwrap().len(), 1024);
                    count += 1;
                    if count % 10 == 0 {
                        // A consumer slower than the wire: the producers wait for credit.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                finished.fetch_add(1, Ordering::SeqCst);
                count
            }));
        }
        // Asks while the streams run: each answered within a bound far below the streams'
        // total time, and before the streams have all finished.
        let mut answered_while_streaming = 0;
        let mut slowest = Duration::ZERO;
        for n in 0..50 {
            let asked = tokio::time::Instant::now();
            let reply = tokio::time::timeout(Duration::from_secs(1), f.feed.ping(n))
                .await
                .expect("an ask starved behind the streams")
                .unwrap();
            slowest = slowest.max(asked.elapsed());
            assert_eq!(reply, n + 1);
            if finished.load(Ordering::SeqCst) == 0 {
                answered_while_streaming += 1;
            }
        }
        eprintln!("the slowest of 50 asks beside {STREAMS} streams took {slowest:?}");
        assert_eq!(
            answered_while_streaming, 50,
            "asks were answered only after streams had finished"
        );
        for consumer in consumers {
            assert_eq!(consumer.await.unwrap(), ITEMS);
        }
        f.harness.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn a_stream_called_directly_is_the_endpoints_stream() {
    let (dropped, _) = mpsc::unbounded_channel();
    let mut endpoint = FeedEndpoint {
        produced: Arc::default(),
        dropped,
    };
    let items: Vec<u64> = endpoint.count(3).map(Result::unwrap).collect().await;
    assert_eq!(items, [0, 1, 2]);
    let failed: Vec<_> = endpoint.failing(1).collect().await;
    assert!(matches!(failed[1], Err(RpcError::StreamFailed { .. })));
    // A service is not needed for that; it is here to show the proxy reads the same.
    let service = RpcService::new();
    service.start_endpoint("feed", endpoint).await.unwrap();
    let feed: FeedClient = service.gateway("feed").unwrap();
    let via_proxy: Vec<u64> = feed.count(3).map(Result::unwrap).collect().await;
    assert_eq!(via_proxy, [0, 1, 2]);
}

/// A server that ignores the consumer's credit and floods a stream is cut off: the client
/// closes the connection (a protocol violation) and the stream ends with `Disconnected`,
/// having held at most one window of items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_overruns_the_credit_is_disconnected() {
    use bytes::BytesMut;
    use rpc_netty::frame::{Frame, FrameCodec, FrameKind};
    use rpc_netty::protocol;
    use tokio_util::codec::{Decoder, Encoder};
    common::bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (overran, overran_at) = oneshot::channel::<usize>();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(&common::SERVER_HELLO).await.unwrap();
            let mut codec = FrameCodec::new(1 << 20);
            let mut buffer = BytesMut::new();
            let mut out = BytesMut::new();
            let mut sent = 0;
            loop {
                let frame = match codec.decode(&mut buffer).unwrap() {
                    Some(frame) => frame,
                    None => {
                        if socket.read_buf(&mut buffer).await.unwrap_or(0) == 0 {
                            break;
                        }
                        continue;
                    }
                };
                match frame.kind {
                    FrameKind::Bind => {
                        let bound = protocol::bound(
                            frame.request_id,
                            rpc_core::Incarnation::from_bytes([1; 16]),
                        );
                        codec.encode(bound, &mut out).unwrap();
                    }
                    FrameKind::Request => {
                        // Open the stream, then send 64 KiB items without waiting for credit.
                        let id = frame.request_id;
                        codec
                            .encode(Frame::new(FrameKind::Response, id, Vec::new()), &mut out)
                            .unwrap();
                        // A `Vec<u8>` of 65,536 bytes: varint length 0x80 0x80 0x04, the bytes.
                        let mut item = vec![0x80, 0x80, 0x04];
                        item.extend_from_slice(&[7u8; 64 * 1024]);
                        for _ in 0..64 {
                            codec
                                .encode(protocol::stream_item(id, item.clone().into()), &mut out)
                                .unwrap();
                            sent += 1;
                        }
                    }
                    _ => {}
                }
                if !out.is_empty() && socket.write_all(&out.split()).await.is_err() {
                    break;
                }
            }
            let _ = overran.send(sent);
        });
        let client = rpc_netty::client();
        let feed: FeedClient = client.connect(&address.to_string(), "feed").await.unwrap();
        // The stream is asked for now; it is read only once the server has seen the client
        // close the connection, so no credit goes back meanwhile.
        let mut stream = feed.endless(64 * 1024);
        let sent = overran_at.await.unwrap();
        assert!(sent > 5, "the fake server sent {sent}");
        let mut received = 0;
        let end = loop {
            match stream.next().await {
                Some(Ok(_)) => received += 1,
                other => break other,
            }
        };
        assert!(
            matches!(end, Some(Err(RpcError::Disconnected { .. }))),
            "{end:?}"
        );
        // The window (256 KiB) in 64 KiB items, and no more.
        assert_eq!(received, 4, "64 KiB items accepted");
        client.shutdown().await.unwrap();
    })
    .await
}
