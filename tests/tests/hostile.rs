//! Attacks by hostile peers, run against a server in a separate process (`attack-target`), so
//! that a crash or a memory blow-up is seen: deeply nested values both ways, a relay that
//! tampers with an authenticated channel, connections that never finish the handshake, and
//! peers that try to make the server hold more bytes than its budgets.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rpc_core::{Gateway, RpcError};
use rpc_netty::NettyBuilder;
use rpc_netty::frame::{Frame, FrameKind, encode_frame};
use rpc_netty::protocol;
use rpc_tests::target::{GateClient, TargetClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const SECRET: &str = "a secret only the two services know";

/// The attack target, running in its own process; killed when dropped.
struct Target {
    child: Child,
    address: SocketAddr,
}

impl Target {
    fn start(options: &[&str]) -> Target {
        let mut child = Command::new(env!("CARGO_BIN_EXE_attack-target"))
            .arg("serve")
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start attack-target");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the address");
        let address = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Target { child, address }
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// Samples the process's resident memory every 20 ms until the returned sender is
    /// dropped or sent to; the task's result is the highest sample, in KiB.
    fn watch_rss(
        &self,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<u64>,
    ) {
        let pid = self.child.id();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let peak = tokio::spawn(async move {
            let mut peak = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                peak = peak.max(rss_kib(pid));
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => return peak.max(rss_kib(pid)),
                }
            }
        });
        (stop, peak)
    }
}

/// The resident memory of process `pid`, in KiB (0 once it has exited).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wire(frame: &Frame) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    encode_frame(frame, &mut bytes, usize::MAX).expect("encodable");
    bytes.to_vec()
}

async fn read_frame(stream: &mut TcpStream) -> Option<(FrameKind, u64, Vec<u8>)> {
    let length = stream.read_u32().await.ok()?;
    let mut rest = vec![0; length as usize];
    stream.read_exact(&mut rest).await.ok()?;
    let kind = FrameKind::from_byte(rest[0])?;
    let id = u64::from_be_bytes(rest[1..9].try_into().ok()?);
    Some((kind, id, rest[9..].to_vec()))
}

/// A hand-driven client of the plain protocol: hello, then bind `target` on slot 1.
async fn raw_client(address: SocketAddr) -> TcpStream {
    let mut raw = TcpStream::connect(address).await.unwrap();
    let (kind, _, _) = read_frame(&mut raw).await.expect("the server's hello");
    assert_eq!(kind, FrameKind::Hello);
    raw.write_all(&common::handshake_bytes(protocol::PROTOCOL_VERSION))
        .await
        .unwrap();
    let binding = rpc_core::transport::Binding {
        endpoint: "target".into(),
        gateway: TargetClient::NAME.into(),
        fingerprint: TargetClient::FINGERPRINT,
        incarnation: None,
        session: None,
    };
    raw.write_all(&wire(&protocol::bind(1, 1, &binding)))
        .await
        .unwrap();
    let (kind, id, _) = read_frame(&mut raw).await.expect("the bind's answer");
    assert_eq!((kind, id), (FrameKind::Bound, 1));
    raw
}

/// A `Request` on slot 1 whose invocation is `body`, carrying no trace context.
fn request(id: u64, body: Vec<u8>) -> Vec<u8> {
    wire(&protocol::request(
        id,
        1,
        protocol::NO_BUDGET,
        &untraced(body),
    ))
}

/// `body` after the call header that says the call carries no trace context and no relayed
/// session.
fn untraced(mut body: Vec<u8>) -> Vec<u8> {
    body.splice(0..0, [0, 0]);
    body
}

/// postcard's `Tree` nested `depth` nodes deep: `depth` times variant 1, then variant 0.
fn deep_tree_bytes(depth: usize) -> Vec<u8> {
    let mut bytes = vec![1; depth];
    bytes.push(0);
    bytes
}

/// `echo("again")`: method 2, then the string.
fn echo_again() -> Vec<u8> {
    let mut body = vec![2, 5];
    body.extend_from_slice(b"again");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_deep_argument_fails_that_call_and_the_server_lives() {
    common::bounded(async {
        let mut target = Target::start(&[]);
        let mut raw = raw_client(target.address).await;
        // depth(tree): method 0, then a tree a million levels deep (about 1 MB).
        let mut body = vec![0];
        body.extend(deep_tree_bytes(1_000_000));
        raw.write_all(&request(2, body)).await.unwrap();
        let (kind, id, failure) = read_frame(&mut raw).await.expect("an answer");
        let text = String::from_utf8_lossy(&failure).into_owned();
        assert_eq!((kind, id), (FrameKind::Failure, 2), "{text}");
        assert!(text.contains("nested more than 128 levels"), "{text}");
        // The next call on the same connection is answered.
        raw.write_all(&request(3, echo_again())).await.unwrap();
        let (kind, id, reply) = read_frame(&mut raw).await.expect("an answer");
        assert_eq!(
            (kind, id, &reply[..]),
            (FrameKind::Response, 3, &b"\x05again"[..])
        );
        // Within the limit, a tree is decoded and answered.
        let mut body = vec![0];
        body.extend(deep_tree_bytes(100));
        raw.write_all(&request(4, body)).await.unwrap();
        let (kind, _, reply) = read_frame(&mut raw).await.expect("an answer");
        assert_eq!((kind, &reply[..]), (FrameKind::Response, &[100][..]));
        assert!(target.alive(), "the server process survived");
    })
    .await
}

/// A server that answers the first call with a tree a million levels deep and the second
/// with `"again"`.
async fn deep_replying_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(&common::SERVER_HELLO).await.unwrap();
        let mut asked = 0;
        while let Some((kind, id, _)) = read_frame(&mut stream).await {
            let answer = match kind {
                FrameKind::Bind => protocol::bound(id, rpc_core::Incarnation::from_bytes([1; 16])),
                FrameKind::Request if asked == 0 => {
                    asked += 1;
                    Frame::new(FrameKind::Response, id, deep_tree_bytes(1_000_000))
                }
                FrameKind::Request => Frame::new(FrameKind::Response, id, &b"\x05again"[..]),
                _ => continue,
            };
            stream.write_all(&wire(&answer)).await.unwrap();
        }
    });
    (address, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_deep_reply_fails_that_call_and_the_client_lives() {
    common::bounded(async {
        let (address, server) = deep_replying_server().await;
        // The victim is a client in its own process.
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_attack-target"))
            .args(["call", &address.to_string()])
            .output()
            .await
            .expect("run attack-target call");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "the client process died: {:?}\n{stdout}",
            output.status
        );
        assert!(
            stdout.contains("tree: Err(Serialization") && stdout.contains("128 levels"),
            "{stdout}"
        );
        assert!(stdout.contains("echo: Ok(\"again\")"), "{stdout}");
        server.abort();
    })
    .await
}

/// What a relay does to the traffic once the key exchange is over.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tamper {
    /// Forwards everything (and records it).
    Nothing,
    /// Flips one bit of the first sealed record from the client.
    Alter,
    /// Writes a plaintext frame of its own into the stream to the server.
    Inject,
    /// Sends the client a forged `Response` to its first request.
    ForgeReply,
}

/// Bytes of the frames before the channel is sealed: each side's `Hello` (20 bytes), then
/// its `KeyExchange` frame.
async fn relay_handshake(
    from: &mut TcpStream,
    to: &mut TcpStream,
    tape: &Mutex<Vec<u8>>,
) -> Option<()> {
    for _ in 0..2 {
        let length = from.read_u32().await.ok()?;
        let mut frame = length.to_be_bytes().to_vec();
        frame.resize(4 + length as usize, 0);
        from.read_exact(&mut frame[4..]).await.ok()?;
        tape.lock().unwrap().extend_from_slice(&frame);
        to.write_all(&frame).await.ok()?;
    }
    Some(())
}

/// Forwards `from` to `to`, recording; with `tamper`, damages the stream once, at the first
/// read after `armed` is set.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    tape: Arc<Mutex<Vec<u8>>>,
    tamper: Option<Tamper>,
    armed: Arc<AtomicBool>,
) {
    let mut buffer = vec![0; 65536];
    let mut tamper = tamper;
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        tape.lock().unwrap().extend_from_slice(&buffer[..n]);
        let now = if armed.load(Ordering::SeqCst) {
            tamper.take()
        } else {
            None
        };
        match now {
            Some(Tamper::Alter) => buffer[n - 1] ^= 0x01,
            Some(Tamper::Inject) | Some(Tamper::ForgeReply) => {
                // A Response to request 2 carrying 999, in the clear, ahead of the real bytes.
                let forged = wire(&Frame::new(FrameKind::Response, 2, vec![0xe7, 0x07]));
                if to.write_all(&forged).await.is_err() {
                    return;
                }
            }
            _ => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// The relay's address, its recording, and the switch that starts the tampering.
type Relay = (SocketAddr, Arc<Mutex<Vec<u8>>>, Arc<AtomicBool>);

/// A relay between a client and `target` that passes the handshake on untouched, then, once
/// armed, applies `tamper` to the stream towards the server (Alter, Inject) or the client
/// (ForgeReply).
async fn relay(target: SocketAddr, tamper: Tamper) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let tape = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&tape);
    let armed = Arc::new(AtomicBool::new(false));
    let switch = Arc::clone(&armed);
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut server = TcpStream::connect(target).await.unwrap();
        // Hellos cross at once; then the client's key exchange, then the server's.
        let handshake = async {
            let mut hello = [0; 20];
            server.read_exact(&mut hello).await.ok()?;
            client.write_all(&hello).await.ok()?;
            relay_handshake(&mut client, &mut server, &tape).await?;
            let length = server.read_u32().await.ok()?;
            let mut frame = length.to_be_bytes().to_vec();
            frame.resize(4 + length as usize, 0);
            server.read_exact(&mut frame[4..]).await.ok()?;
            client.write_all(&frame).await.ok()
        };
        if handshake.await.is_none() {
            return;
        }
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let (up, down) = match tamper {
            Tamper::Alter | Tamper::Inject => (Some(tamper), None),
            Tamper::ForgeReply => (None, Some(tamper)),
            Tamper::Nothing => (None, None),
        };
        let up = tokio::spawn(pump(
            client_read,
            server_write,
            Arc::clone(&tape),
            up,
            Arc::clone(&armed),
        ));
        let down = tokio::spawn(pump(server_read, client_write, tape, down, armed));
        let _ = (up.await, down.await);
    });
    (address, recorded, switch)
}

/// A client with the secret, through a relay doing `tamper`; returns the outcome of one
/// `echo` (after the connect, which the relay passes untouched) and the target's call count
/// as seen by a direct client afterwards.
async fn through_relay(target: &Target, tamper: Tamper) -> (Result<String, RpcError>, u64) {
    let (address, _, armed) = relay(target.address, tamper).await;
    let client = NettyBuilder::new().shared_secret(SECRET).client();
    let proxy: TargetClient = client
        .connect(&address.to_string(), "target")
        .await
        .expect("the relay passes the handshake and the bind");
    armed.store(true, Ordering::SeqCst);
    let outcome = proxy
        .with_timeout(Duration::from_secs(10))
        .echo("tampered?".into())
        .await;
    client.shutdown().await.unwrap();
    let direct = NettyBuilder::new().shared_secret(SECRET).client();
    let proxy: TargetClient = direct
        .connect(&target.address.to_string(), "target")
        .await
        .unwrap();
    let calls = proxy.calls().await.unwrap();
    direct.shutdown().await.unwrap();
    (outcome, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_cannot_alter_inject_or_forge_on_an_authenticated_channel() {
    common::bounded(async {
        let mut target = Target::start(&["--secret", SECRET]);
        // `calls` counts the echoes that reached the endpoint: an altered or injected record
        // closes the connection before its call runs; a forged reply is refused by the
        // client (the real call did run: the relay only forged the way back).
        let mut expected_calls = 0;
        for tamper in [Tamper::Alter, Tamper::Inject, Tamper::ForgeReply] {
            let (outcome, calls) = through_relay(&target, tamper).await;
            match outcome {
                Err(RpcError::Disconnected { .. }) => {}
                other => panic!("a tampered channel must close, got {other:?}"),
            }
            if tamper == Tamper::ForgeReply {
                expected_calls += 1;
            }
            assert_eq!(calls, expected_calls, "calls that ran after {tamper:?}");
        }
        let (outcome, calls) = through_relay(&target, Tamper::Nothing).await;
        assert_eq!(outcome.unwrap(), "tampered?");
        assert_eq!(calls, expected_calls + 1);
        assert!(target.alive());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_of_an_authenticated_channel_holds_no_plaintext() {
    common::bounded(async {
        let target = Target::start(&["--secret", SECRET]);
        let (address, tape, _) = relay(target.address, Tamper::Nothing).await;
        let client = NettyBuilder::new().shared_secret(SECRET).client();
        let proxy: TargetClient = client
            .connect(&address.to_string(), "target")
            .await
            .unwrap();
        let canary = "PLAINTEXT-CANARY-0123456789";
        assert_eq!(proxy.echo(canary.into()).await.unwrap(), canary);
        // Alone on its connection, this ask is written by its caller and its reply by the
        // endpoint's main thread, not by the writer tasks: sealed all the same.
        let alone = "PLAINTEXT-CANARY-ALONE-9876543210";
        assert_eq!(proxy.echo(alone.into()).await.unwrap(), alone);
        client.shutdown().await.unwrap();
        let tape = tape.lock().unwrap().clone();
        assert!(tape.len() > 100, "the relay saw the traffic");
        for needle in [
            canary.as_bytes(),
            alone.as_bytes(),
            b"target",
            TargetClient::NAME.as_bytes(),
            SECRET.as_bytes(),
        ] {
            assert!(
                !tape.windows(needle.len()).any(|w| w == needle),
                "{:?} crossed the wire in the clear",
                String::from_utf8_lossy(needle)
            );
        }
    })
    .await
}

/// Opens a connection to `address` from the loopback address `source` and reads the server's
/// `Hello`, so that the server has accepted it.
async fn greeted_socket(source: [u8; 4], address: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::from((source, 0))).ok()?;
    let mut stream = socket.connect(address).await.ok()?;
    let mut hello = [0; 20];
    stream.read_exact(&mut hello).await.ok()?;
    Some(stream)
}

/// Reads until the peer closes; false if it is still open after 10 s.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut sink = [0; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// The largest resident size seen over a few samples, in KiB: the server reads what the
/// sockets sent on its own schedule.
async fn settled_rss_kib(target: &Target) -> u64 {
    let mut highest = 0;
    for _ in 0..10 {
        highest = highest.max(target.rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    highest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_sockets_cost_little_memory() {
    common::bounded(async {
        // Room for all of them in the handshake, and time to measure.
        let mut target = Target::start(&[
            "--secret",
            SECRET,
            "--max-handshakes",
            "2000,2000",
            "--handshake-timeout-ms",
            "30000",
        ]);
        let before = settled_rss_kib(&target).await;
        // The start of a maximum-size frame (16 MiB): refused before anything is allocated.
        for _ in 0..100 {
            let mut socket = greeted_socket([127, 0, 0, 1], target.address)
                .await
                .unwrap();
            socket
                .write_all(&[1, 0, 0, 0, 0x01, 0, 0, 0])
                .await
                .unwrap();
            assert!(
                closed_by_peer(&mut socket).await,
                "a 16 MiB frame before the handshake"
            );
        }
        // The start of the largest frame allowed before the handshake (1 KiB), held open.
        let mut sockets = Vec::new();
        for _ in 0..1000 {
            let mut socket = greeted_socket([127, 0, 0, 1], target.address)
                .await
                .unwrap();
            socket
                .write_all(&[0, 0, 4, 0, 0x01, 0, 0, 0, 0])
                .await
                .unwrap();
            sockets.push(socket);
        }
        let during = settled_rss_kib(&target).await;
        let per_socket = during.saturating_sub(before) * 1024 / 1000;
        println!(
            "server RSS {before} KiB -> {during} KiB with 1,000 sockets: {per_socket} bytes each"
        );
        assert!(
            per_socket <= 64 * 1024,
            "{per_socket} bytes per unauthenticated socket"
        );
        assert!(target.alive());
        // They are all still held (none was closed for its size).
        let mut probe = sockets.pop().unwrap();
        probe.write_all(&[0; 8]).await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_unauthenticated_sockets_do_not_lock_out_a_client() {
    common::bounded(async {
        let target = Target::start(&[
            "--secret",
            SECRET,
            "--max-connections",
            "200",
            "--max-handshakes",
            "256,16",
        ]);
        let address = target.address;
        let attack = Duration::from_secs(10);
        let attacker = tokio::spawn(async move {
            // Sources rotate over 100 loopback addresses, so both the per-address and the
            // overall handshake budgets are under pressure.
            let source = |n: usize| [127, 0, 1, (n % 100) as u8 + 1];
            let mut idle = std::collections::VecDeque::new();
            let mut connects = 0;
            for n in 0..500 {
                if let Ok(socket) = TcpSocket::new_v4() {
                    let _ = socket.bind(SocketAddr::from((source(n), 0)));
                    if let Ok(stream) = socket.connect(address).await {
                        idle.push_back(stream);
                        connects += 1;
                    }
                }
            }
            let started = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(4));
            while started.elapsed() < attack {
                tick.tick().await;
                let socket = TcpSocket::new_v4().unwrap();
                let _ = socket.bind(SocketAddr::from((source(connects), 0)));
                if let Ok(stream) = socket.connect(address).await {
                    connects += 1;
                    idle.push_back(stream);
                    if idle.len() > 500 {
                        idle.pop_front();
                    }
                }
            }
            connects
        });
        let (mut calls, mut answered) = (0, 0);
        let started = tokio::time::Instant::now();
        while started.elapsed() < attack {
            let client = NettyBuilder::new()
                .shared_secret(SECRET)
                .connect_timeout(Duration::from_secs(2))
                .client();
            calls += 1;
            if let Ok(proxy) = client
                .connect::<TargetClient>(&address.to_string(), "target")
                .await
            {
                if proxy.echo("legit".into()).await.is_ok() {
                    answered += 1;
                }
            }
            client.shutdown().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connects = attacker.await.unwrap();
        println!("{answered} of {calls} calls answered during {connects} hostile connects");
        assert!(
            connects >= 100 * 10 + 500,
            "the attack ran at >= 100 connects/s: {connects}"
        );
        assert!(calls >= 100, "{calls} calls");
        assert!(
            answered * 100 >= calls * 99,
            "{answered} of {calls} answered"
        );
    })
    .await
}

/// postcard's unsigned varint.
fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

const MIB: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_flood_from_eight_connections_stays_within_the_mailbox_budget() {
    common::bounded(async {
        let mut target = Target::start(&[]);
        let address = target.address;
        let client = NettyBuilder::new()
            .default_timeout(Duration::from_secs(60))
            .client();
        let proxy: TargetClient = client
            .connect(&address.to_string(), "target")
            .await
            .unwrap();
        let gate: GateClient = client.connect(&address.to_string(), "gate").await.unwrap();
        let before = settled_rss_kib(&target).await;
        let (stop, peak) = target.watch_rss();
        // The main thread waits at the gate; everything sent meanwhile queues.
        let held = proxy.hold();
        // store(a million empty strings): 1 MiB on the wire, 24 MiB once decoded.
        const STRINGS: usize = 1 << 20;
        const TELLS: usize = 24;
        let mut body = vec![4];
        varint(STRINGS, &mut body);
        body.resize(body.len() + STRINGS, 0);
        let tell = Arc::new(wire(&protocol::tell(1, untraced(body).into())));
        let flooders: Vec<_> = (0..8)
            .map(|_| {
                let tell = Arc::clone(&tell);
                tokio::spawn(async move {
                    let mut raw = raw_client(address).await;
                    for _ in 0..TELLS {
                        raw.write_all(&tell).await.unwrap();
                    }
                    // `calls` behind them on the same connection: answered once they ran.
                    raw.write_all(&request(2, vec![3])).await.unwrap();
                    loop {
                        match read_frame(&mut raw).await.expect("an answer") {
                            (FrameKind::Ping, ..) => continue,
                            answer => break answer,
                        }
                    }
                })
            })
            .collect();
        // 192 MiB of tells against a 64 MiB mailbox: the server stops reading. Let the flood
        // press until the server's memory stops growing, then open the gate.
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = target.rss_kib();
            if now <= last + 1024 {
                break;
            }
            last = now;
        }
        let during = target.rss_kib();
        gate.open().await.unwrap();
        assert_eq!(held.await.unwrap(), 0, "hold ran first");
        for flooder in flooders {
            let (kind, _, _) = flooder.await.unwrap();
            assert_eq!(kind, FrameKind::Response);
        }
        // Nothing was lost: every tell ran.
        assert_eq!(proxy.calls().await.unwrap(), 8 * TELLS as u64);
        let _ = stop.send(());
        let peak = peak.await.unwrap();
        // The budget: the endpoint's mailbox (64 MiB of wire bytes), per connection the tell
        // waiting for room and the one being read (2 MiB), and the one decoded (24 MiB) once
        // per worker thread of the target: the main thread runs on either worker, and glibc
        // keeps what a thread freed in that thread's arena, so each worker's arena may still
        // hold a decoded tell's 24 MiB after it was dropped (with `MALLOC_ARENA_MAX=1` the
        // peak is one decoded tell lower per extra worker).
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let budget = 64 * MIB + 8 * 2 * MIB + 24 * MIB * workers;
        let slack = 32 * MIB;
        println!(
            "server RSS {before} KiB before, {during} KiB with the flood held, {peak} KiB at \
             most; budget {budget} KiB + {slack} KiB slack"
        );
        assert!(
            peak - before <= budget + slack,
            "grew by {} KiB",
            peak - before
        );
        assert!(target.alive());
        client.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_asks_and_never_reads_is_cut_off_at_the_outbox_limit() {
    common::bounded(async {
        let mut target = Target::start(&[]);
        let before = settled_rss_kib(&target).await;
        let (stop, peak) = target.watch_rss();
        let mut raw = raw_client(target.address).await;
        // 1,024 asks for 256 KiB each: 256 MiB of replies, against a 64 MiB outbox.
        let mut body = vec![5];
        varint(256 * 1024, &mut body);
        let mut asks = Vec::new();
        for id in 0..1024 {
            asks.extend_from_slice(&request(10 + id, body.clone()));
        }
        raw.write_all(&asks).await.unwrap();
        // Read nothing until the server has closed the connection (a second client watches);
        // then what is left in the socket is at most what the kernel buffered, and the stream
        // ends. The asks still queued when it closed are skipped: nobody can read their replies.
        let watcher = NettyBuilder::new().client();
        let proxy: TargetClient = watcher
            .connect(&target.address.to_string(), "target")
            .await
            .unwrap();
        while proxy.disconnects().await.unwrap() < 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ran = proxy.calls().await.unwrap();
        assert!(
            ran < 1024,
            "all {ran} asks ran for a connection that was closed"
        );
        let mut answered = 0;
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(30), read_frame(&mut raw)).await {
                Ok(Some((FrameKind::Response, _, _))) => answered += 1,
                Ok(Some((FrameKind::Ping, _, _))) => {}
                Ok(Some((kind, _, body))) => {
                    panic!("unexpected {kind:?}: {}", String::from_utf8_lossy(&body))
                }
                Ok(None) => break true,
                Err(_) => break false,
            }
        };
        assert!(ended, "the server closed the connection");
        assert!(
            answered < 1024,
            "{answered} replies reached a client that did not read"
        );
        let _ = stop.send(());
        let peak = peak.await.unwrap();
        // The budget: the outbox (64 MiB), one reply beyond it, and the replies being built.
        let budget = 64 * MIB + 2 * 256;
        let slack = 32 * MIB;
        println!(
            "server RSS {before} KiB before, {peak} KiB at most ({answered} replies read \
             afterwards); budget {budget} KiB + {slack} KiB slack"
        );
        assert!(
            peak - before <= budget + slack,
            "grew by {} KiB",
            peak - before
        );
        // The server lives and serves others.
        assert!(target.alive());
        assert_eq!(proxy.echo("still here".into()).await.unwrap(), "still here");
        watcher.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_thousand_binds_hold_at_most_the_slot_cap() {
    common::bounded(async {
        let mut target = Target::start(&[]);
        let before = settled_rss_kib(&target).await;
        let (stop, peak) = target.watch_rss();
        let raw = raw_client(target.address).await;
        let (mut read, mut write) = raw.into_split();
        // Replies are read as they come, so that only the bind table can grow.
        let reader = tokio::spawn(async move {
            let mut failures = 0;
            while let Ok(length) = read.read_u32().await {
                let mut rest = vec![0; length as usize];
                if read.read_exact(&mut rest).await.is_err() {
                    break;
                }
                if rest[0] == FrameKind::Failure as u8 {
                    failures += 1;
                }
            }
            failures
        });
        // 300,000 binds over the 4,096 slots allowed, each naming a 1,000-byte endpoint that
        // does not exist: the slot remembers the refusal, name included.
        const BINDS: u64 = 300_000;
        let name = "x".repeat(1000);
        let mut batch = Vec::new();
        for n in 0..BINDS {
            let binding = rpc_core::transport::Binding {
                endpoint: name.clone(),
                gateway: TargetClient::NAME.into(),
                fingerprint: TargetClient::FINGERPRINT,
                incarnation: None,
                session: None,
            };
            batch.extend(wire(&protocol::bind(100 + n, (n % 4096) as u32, &binding)));
            if batch.len() > 256 * 1024 {
                write.write_all(&batch).await.unwrap();
                batch.clear();
            }
        }
        // One slot more than the cap closes the connection.
        let binding = rpc_core::transport::Binding {
            endpoint: "target".into(),
            gateway: TargetClient::NAME.into(),
            fingerprint: TargetClient::FINGERPRINT,
            incarnation: None,
            session: None,
        };
        batch.extend(wire(&protocol::bind(1, 4096, &binding)));
        write.write_all(&batch).await.unwrap();
        let failures = reader.await.unwrap();
        assert_eq!(
            failures, BINDS,
            "every bind was answered, then the connection closed"
        );
        let _ = stop.send(());
        let peak = peak.await.unwrap();
        // The budget: 4,096 slots holding a refusal with a 1,000-byte name (about 1.1 KiB
        // each, 4.5 MiB), and the outbox's replies in flight.
        let budget = 5 * MIB;
        let slack = 16 * MIB;
        println!("server RSS {before} KiB before, {peak} KiB at most after {BINDS} binds");
        assert!(
            peak - before <= budget + slack,
            "grew by {} KiB",
            peak - before
        );
        assert!(target.alive());
    })
    .await
}

/// A stream of a million 1 KiB items to a consumer that reads more slowly than the producer
/// could send: the producer's process holds about one credit window for it, not the million
/// items (a gigabyte), and every item arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_items_to_a_slow_consumer_keep_the_producers_memory_bounded() {
    use futures::StreamExt;
    common::init_tracing();
    let test = async {
        let mut target = Target::start(&[]);
        let client = NettyBuilder::new().client();
        let proxy: TargetClient = client
            .connect(&target.address.to_string(), "target")
            .await
            .unwrap();
        // Warm the producer's allocator and buffers with a short stream first.
        assert_eq!(proxy.feed(10_000, 1024).count().await, 10_000);
        let before = settled_rss_kib(&target).await;
        let (stop, peak) = target.watch_rss();
        const ITEMS: u64 = 1_000_000;
        let started = std::time::Instant::now();
        let mut stream = proxy.feed(ITEMS, 1024);
        let mut next = 0u64;
        while let Some(item) = stream.next().await {
            let item = item.unwrap();
            assert_eq!(item.len(), 1024);
            let index = u64::from_be_bytes(item[..8].try_into().unwrap());
            assert_eq!(index, next, "items out of order");
            next += 1;
            if next % 2_000 == 0 {
                // The slow consumer: the producer waits for credit meanwhile.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let elapsed = started.elapsed();
        assert_eq!(next, ITEMS, "every item arrived");
        let _ = stop.send(());
        let peak = peak.await.unwrap();
        let grew = peak.saturating_sub(before);
        // The bound: the window (256 KiB) and one item in flight, the outbox's buffers and
        // the allocator's slack around them; far below the 1 GiB of items.
        let bound = 16 * MIB;
        println!(
            "streamed {ITEMS} items of 1 KiB in {elapsed:.2?} ({:.0} items/s, {:.0} MB/s) to a \
             slow consumer; producer RSS {before} KiB before, {peak} KiB at most (+{grew} KiB, \
             bound {bound} KiB)",
            ITEMS as f64 / elapsed.as_secs_f64(),
            ITEMS as f64 * 1024.0 / 1e6 / elapsed.as_secs_f64(),
        );
        assert!(grew <= bound, "the producer grew by {grew} KiB");
        assert!(target.alive());
        client.shutdown().await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(180), test)
        .await
        .expect("the stream did not finish within 180 s");
}
