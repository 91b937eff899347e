//! Random and mutated frames thrown at a live server (a bounded property test). Whatever
//! arrives: no panic anywhere, no allocation beyond the frame limit, only the offending
//! connection is closed, and a well-behaved client keeps being answered.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};
use rpc_netty::NettyBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's frame limit in this test.
const MAX_FRAME: usize = 64 * 1024;
/// No single allocation in this process may be larger: the limit, plus room for buffers
/// that are not frames (the test's own, tokio's).
const LARGEST_ALLOWED: usize = 1024 * 1024;

/// Records the largest single allocation the process asks for.
struct Peak;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Peak = Peak;

static PANICS: AtomicUsize = AtomicUsize::new(0);

#[rpc_gateway]
pub trait Echo {
    async fn echo(&mut self, n: u64) -> u64;
    fn note(&mut self, text: String);
}

struct Server;

impl RpcEndpoint for Server {
    rpc_core::serves!(Echo);
}

impl Echo for Server {
    async fn echo(&mut self, n: u64) -> u64 {
        n
    }
    fn note(&mut self, _text: String) {}
}

/// One runtime, one server and one well-behaved client for every case.
struct Rig {
    runtime: tokio::runtime::Runtime,
    address: String,
    _server: RpcService,
    _client: RpcService,
    echo: EchoClient,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (server, client, echo, address) = runtime.block_on(async {
            common::init_tracing();
            let server = NettyBuilder::new()
                .max_frame_size(MAX_FRAME)
                .handshake_timeout(Duration::from_millis(500))
                .bind("127.0.0.1:0")
                .await
                .expect("bind");
            server.start_endpoint("echo", Server).await.expect("start");
            let address = server.local_address().expect("address").to_string();
            let client = rpc_netty::client();
            let echo: EchoClient = client.connect(&address, "echo").await.expect("connect");
            (server, client, echo, address)
        });
        Rig {
            runtime,
            address,
            _server: server,
            _client: client,
            echo,
        }
    })
}

/// A valid conversation: handshake, bind of slot 1 to `echo`/`Echo`, an ask and a tell.
fn valid_session() -> Vec<u8> {
    use rpc_core::Gateway;
    let mut bytes = common::handshake_bytes(rpc_netty::protocol::PROTOCOL_VERSION);
    let mut bind_body = vec![1, 4];
    bind_body.extend_from_slice(b"echo");
    bind_body.push(4);
    bind_body.extend_from_slice(b"Echo");
    let mut fingerprint = EchoClient::FINGERPRINT;
    loop {
        let byte = (fingerprint & 0x7f) as u8;
        fingerprint >>= 7;
        if fingerprint == 0 {
            bind_body.push(byte);
            break;
        }
        bind_body.push(byte | 0x80);
    }
    bind_body.push(0); // no incarnation: any running one
    bind_body.push(0); // no session: not a reverse bind through a Gate
    let frame = |kind: u8, id: u64, body: &[u8]| {
        let mut f = ((9 + body.len()) as u32).to_be_bytes().to_vec();
        f.push(kind);
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(body);
        f
    };
    bytes.extend(frame(0x04, 1, &bind_body));
    // echo(7) on slot 1 with a 5 s budget: no trace context (0), no relayed session (0),
    // variant 0, u64 7; note("hi"): the same header, variant 1, "hi".
    bytes.extend(frame(0x06, 2, &[0, 0, 0, 1, 0, 0, 0x13, 0x88, 0, 0, 0, 7]));
    bytes.extend(frame(0x07, 0, &[0, 0, 0, 1, 0, 0, 1, 2, b'h', b'i']));
    bytes
}

/// Mutations of a valid conversation: flipped bytes, cuts, insertions, huge lengths.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let session = valid_session();
    let len = session.len();
    (
        proptest::collection::vec((0..len, any::<u8>()), 0..8),
        proptest::option::of(0..len),
        proptest::collection::vec(any::<u8>(), 0..16),
        0..len,
    )
        .prop_map(move |(flips, cut, insert, at)| {
            let mut bytes = session.clone();
            for (i, byte) in flips {
                bytes[i] ^= byte;
            }
            let at = at.min(bytes.len());
            bytes.splice(at..at, insert);
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            bytes
        })
}

fn hostile() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        mutated(),
        // A valid handshake, then a length prefix anywhere up to 4 GiB.
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..32)).prop_map(|(len, tail)| {
            let mut bytes = common::handshake_bytes(rpc_netty::protocol::PROTOCOL_VERSION);
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend(tail);
            bytes
        }),
    ]
}

/// Sends `bytes`, ends the stream, and waits (bounded) for the server to close its side.
async fn throw(address: &str, bytes: &[u8]) -> bool {
    let Ok(mut raw) = TcpStream::connect(address).await else {
        return false;
    };
    let _ = raw.write_all(bytes).await;
    let _ = raw.shutdown().await;
    let mut sink = vec![0; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while raw.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    })
    .await
    .is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_bytes_cost_only_their_own_connection(bytes in hostile()) {
        let rig = rig();
        let closed = rig.runtime.block_on(throw(&rig.address, &bytes));
        prop_assert!(closed, "the server did not close a connection whose peer had finished");
        let answer = rig.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), rig.echo.echo(42)).await
        });
        prop_assert!(matches!(answer, Ok(Ok(42))), "the well-behaved client got {answer:?}");
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
        let largest = LARGEST.load(Ordering::Relaxed);
        prop_assert!(largest <= LARGEST_ALLOWED, "an allocation of {largest} bytes");
    }
}

/// The base the mutations start from is a conversation the server accepts: handshake, bind,
/// and an ask that is answered.
#[test]
fn the_unmutated_session_is_served() {
    let rig = rig();
    let kinds = rig.runtime.block_on(async {
        let mut raw = TcpStream::connect(&rig.address).await.unwrap();
        raw.write_all(&valid_session()).await.unwrap();
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let length = raw.read_u32().await.unwrap();
            let mut rest = vec![0; length as usize];
            raw.read_exact(&mut rest).await.unwrap();
            kinds.push(rest[0]);
        }
        kinds
    });
    assert_eq!(kinds, [0x01, 0x05, 0x08], "Hello, Bound, Response");
}
