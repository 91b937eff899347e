//! The Gate's relay: a player logs in on the Gate's outer listener, then calls a gateway the
//! Gate does not know through its relay, which forwards each call undecoded to the Map
//! server over one inner connection, with the player's session in the call's header.
//!
//! The Gate runs as a separate process (`relay-gate`, in `tests/src/bin`). The gateway the
//! player calls, and its argument type, are declared in this file only: the Gate's binary
//! does not contain them, so it cannot decode what it relays.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rpc_core::{CallContext, Caller, RpcEndpoint, RpcError, RpcService, rpc_gateway};
use rpc_tests::relay_gate::LoginClient;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// An argument type only this test (the player and the Map) knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub sequence: u64,
    pub path: Vec<(i32, i32)>,
    pub note: Option<String>,
}

/// What a player's unit does, hosted on the Map.
#[rpc_gateway]
pub trait Unit {
    /// Who the Map believes is calling, and the order back.
    async fn act(&mut self, order: Order) -> (String, u64, Order);
    /// Answers only once its caller gave up (then 0, which nobody reads).
    async fn stall(&mut self) -> u64;
    /// The time the caller still waits, as the Map sees it, in milliseconds.
    async fn budget(&mut self) -> Option<u64>;
    /// One-way.
    fn nudge(&mut self, by: u64);
    /// One-way, with a payload.
    fn load(&mut self, cargo: bytes::Bytes);
    /// A stream: not relayed.
    fn ticks(&mut self, n: u32) -> rpc_core::RpcStream<u32>;
    /// The sum of the nudges so far, per player.
    async fn nudged(&mut self) -> u64;
    /// Where the Map sends the player's messages: an endpoint of the player, which does not
    /// listen, reached back through the Gate.
    async fn watch(&mut self, events: EventsClient);
    /// Makes the Map ask the player's `events`, then tell it; the player's answer.
    async fn poke(&mut self, n: u64) -> Result<u64, String>;
}

/// What the Map sends a player: served by the player's own endpoint.
#[rpc_gateway]
pub trait Events {
    /// An ask down to the player.
    async fn notify(&mut self, n: u64) -> u64;
    /// A tell down to the player.
    fn told(&mut self, what: String);
}

struct Player {
    seen: mpsc::UnboundedSender<String>,
}

impl RpcEndpoint for Player {
    rpc_core::serves!(Events);
}

impl Events for Player {
    async fn notify(&mut self, n: u64) -> u64 {
        let _ = self.seen.send(format!("notify {n}"));
        n * 2
    }

    fn told(&mut self, what: String) {
        let _ = self.seen.send(what);
    }
}

#[derive(Default)]
struct Units {
    nudged: std::collections::HashMap<String, u64>,
    stalled: Option<mpsc::UnboundedSender<()>>,
    gave_up: Option<mpsc::UnboundedSender<()>>,
    watchers: std::collections::HashMap<String, EventsClient>,
}

impl RpcEndpoint for Units {
    rpc_core::serves!(Unit);
}

fn player() -> String {
    let context = CallContext::current();
    match context.caller() {
        Caller::Relayed { session, .. } => session.identity().to_owned(),
        other => panic!("a call that was not relayed: {other}"),
    }
}

impl Unit for Units {
    async fn act(&mut self, order: Order) -> (String, u64, Order) {
        let context = CallContext::current();
        let session = context.session().expect("a relayed call has a session");
        (session.identity().to_owned(), session.id(), order)
    }

    async fn stall(&mut self) -> u64 {
        if let Some(stalled) = &self.stalled {
            let _ = stalled.send(());
        }
        CallContext::current().cancelled().await;
        if let Some(gave_up) = &self.gave_up {
            let _ = gave_up.send(());
        }
        0
    }

    async fn budget(&mut self) -> Option<u64> {
        let remaining = CallContext::current().remaining()?;
        Some(remaining.as_millis() as u64)
    }

    fn nudge(&mut self, by: u64) {
        *self.nudged.entry(player()).or_default() += by;
    }

    fn load(&mut self, _cargo: bytes::Bytes) {}

    fn ticks(&mut self, n: u32) -> rpc_core::RpcStream<u32> {
        rpc_core::RpcStream::iter(0..n)
    }

    async fn nudged(&mut self) -> u64 {
        self.nudged.get(&player()).copied().unwrap_or(0)
    }

    async fn watch(&mut self, events: EventsClient) {
        self.watchers.insert(player(), events);
    }

    async fn poke(&mut self, n: u64) -> Result<u64, String> {
        let events = self.watchers.get(&player()).ok_or("nobody watches")?;
        let answer = events.notify(n).await.map_err(|e| e.to_string())?;
        events
            .told(format!("told {n}"))
            .map_err(|e| e.to_string())?;
        Ok(answer)
    }
}

/// The Gate process; killed when dropped.
struct Gate {
    child: Child,
    outer: SocketAddr,
}

impl Gate {
    fn start(map: SocketAddr) -> Gate {
        let mut child = Command::new(env!("CARGO_BIN_EXE_relay-gate"))
            .arg(map.to_string())
            .arg("units")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start relay-gate");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the addresses");
        let outer = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|addresses| addresses.split(' ').nth(1))
            .and_then(|outer| outer.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Gate { child, outer }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A player: a client service logged in at the Gate as `name`, and its unit there.
async fn log_in(gate: &Gate, name: &str) -> (RpcService, u64, UnitClient) {
    let player = rpc_netty::client();
    let login: LoginClient = player.connect(gate.outer, "login").await.unwrap();
    let session = login.login(name.to_owned()).await.unwrap().unwrap();
    let unit: UnitClient = player.connect(gate.outer, "unit").await.unwrap();
    (player, session, unit)
}

async fn map() -> RpcService {
    let map = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    map.start_endpoint("units", Units::default()).await.unwrap();
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_relayed_calls_carry_the_players_session() {
    common::bounded(async {
        let map = map().await;
        let gate = Gate::start(map.local_address().unwrap());
        let players = [log_in(&gate, "alice").await, log_in(&gate, "bob").await];
        assert_ne!(players[0].1, players[1].1, "two sessions, two ids");

        let calls = players.iter().flat_map(|(_, session, unit)| {
            (0..500u64).map(move |sequence| {
                let order = Order {
                    sequence,
                    path: vec![(sequence as i32, -1), (2, 3)],
                    note: (sequence % 2 == 0).then(|| format!("order {sequence}")),
                };
                async move { (unit.act(order.clone()).await, *session, order) }
            })
        });
        let answers = futures::future::join_all(calls).await;
        assert_eq!(answers.len(), 1000);
        for (index, (answer, session, order)) in answers.into_iter().enumerate() {
            let (who, seen, back) = answer.unwrap();
            assert_eq!(who, if index < 500 { "alice" } else { "bob" });
            assert_eq!(seen, session, "the Map saw the caller's own session");
            assert_eq!(back, order);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_are_relayed_in_order_with_asks() {
    common::bounded(async {
        let map = map().await;
        let gate = Gate::start(map.local_address().unwrap());
        let (_player, _, unit) = log_in(&gate, "carol").await;
        for by in 1..=100 {
            unit.nudge(by).unwrap();
        }
        // The ask follows the tells through the relay, in order.
        assert_eq!(unit.nudged().await.unwrap(), 5050);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_who_has_not_logged_in_is_refused() {
    common::bounded(async {
        let map = map().await;
        let gate = Gate::start(map.local_address().unwrap());
        let stranger = rpc_netty::client();
        let unit: UnitClient = stranger.connect(gate.outer, "unit").await.unwrap();
        let order = Order {
            sequence: 1,
            path: Vec::new(),
            note: None,
        };
        match unit.act(order).await {
            Err(error @ RpcError::Relay { .. }) => {
                let text = error.to_string();
                assert!(
                    text.contains("no session") && text.contains("log in"),
                    "{text}"
                );
            }
            other => panic!("expected a relay refusal, got {other:?}"),
        }
        // The same connection logs in and is relayed from then on.
        let login: LoginClient = stranger.connect(gate.outer, "login").await.unwrap();
        login.login("dave".into()).await.unwrap().unwrap();
        assert!(
            login.login("eve".into()).await.unwrap().is_err(),
            "one session per connection"
        );
        let order = Order {
            sequence: 2,
            path: Vec::new(),
            note: None,
        };
        assert_eq!(unit.act(order).await.unwrap().0, "dave");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_dropping_mid_call_fails_the_players_call_fast() {
    common::bounded(async {
        // The Map runs on a runtime of its own, so that dropping it ends the Map at once,
        // sockets and all, as a crash would.
        let (stalled, mut entered) = mpsc::unbounded_channel();
        let (address_sender, address) = std::sync::mpsc::channel();
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let map_thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let map = rpc_netty::bind("127.0.0.1:0").await.unwrap();
                let units = Units {
                    stalled: Some(stalled),
                    ..Units::default()
                };
                map.start_endpoint("units", units).await.unwrap();
                address_sender.send(map.local_address().unwrap()).unwrap();
                let _ = killed.await;
                std::mem::forget(map); // no shutdown: the runtime goes down under it
            });
            runtime.shutdown_background();
        });
        let map_address = address.recv().unwrap();
        let gate = Gate::start(map_address);
        let (_player, _, unit) = log_in(&gate, "frank").await;
        let call = tokio::spawn(async move { unit.stall().await });
        entered.recv().await.expect("the call reached the Map");
        kill.send(()).unwrap();
        // Far sooner than the call's 10 s timeout: the Gate sees the connection go.
        let outcome = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the call failed within 5 s")
            .unwrap();
        match outcome {
            Err(error @ RpcError::Relay { .. }) => {
                let text = error.to_string();
                assert!(text.contains(&map_address.to_string()), "{text}");
            }
            other => panic!("expected a relay failure, got {other:?}"),
        }
        map_thread.join().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_reaches_the_players_endpoint_down_its_session() {
    common::bounded(async {
        let map = map().await;
        let gate = Gate::start(map.local_address().unwrap());
        let (seen, mut events) = mpsc::unbounded_channel();
        let mut players = Vec::new();
        for name in ["gina", "hal"] {
            let (player, _, unit) = log_in(&gate, name).await;
            // The player listens nowhere: its endpoint is reached over its Gate connection.
            player
                .start_endpoint("events", Player { seen: seen.clone() })
                .await
                .unwrap();
            let me: EventsClient = player.gateway("events").unwrap();
            unit.watch(me).await.unwrap();
            players.push((player, unit));
        }
        for (index, (_, unit)) in players.iter().enumerate() {
            let n = 10 + index as u64;
            assert_eq!(unit.poke(n).await.unwrap(), Ok(2 * n));
            assert_eq!(events.recv().await.unwrap(), format!("notify {n}"));
            assert_eq!(events.recv().await.unwrap(), format!("told {n}"));
        }
    })
    .await;
}

/// A hand-driven player on the Gate's outer listener: hello, then `binds` on slots 1, 2, ..
async fn raw_player(gate: &Gate, binds: &[(&str, &str, u64)]) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(gate.outer).await.unwrap();
    raw.write_all(&common::handshake_bytes(
        rpc_netty::protocol::PROTOCOL_VERSION,
    ))
    .await
    .unwrap();
    let mut hello = [0; 20];
    raw.read_exact(&mut hello).await.unwrap();
    for (slot, (endpoint, gateway, fingerprint)) in binds.iter().enumerate() {
        let binding = rpc_core::transport::Binding {
            endpoint: (*endpoint).into(),
            gateway: (*gateway).into(),
            fingerprint: *fingerprint,
            incarnation: None,
            session: None,
        };
        let slot = slot as u32 + 1;
        raw.write_all(&frame_bytes(rpc_netty::protocol::bind(
            u64::from(slot),
            slot,
            &binding,
        )))
        .await
        .unwrap();
        let (kind, _) = read_answer(&mut raw).await;
        assert_eq!(kind, rpc_netty::frame::FrameKind::Bound as u8);
    }
    raw
}

fn frame_bytes(frame: rpc_netty::frame::Frame) -> Vec<u8> {
    let mut bytes = bytes::BytesMut::new();
    rpc_netty::frame::encode_frame(&frame, &mut bytes, usize::MAX).unwrap();
    bytes.to_vec()
}

/// The next frame's kind and body.
async fn read_answer(raw: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let length = tokio::time::timeout(Duration::from_secs(10), raw.read_u32())
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let mut rest = vec![0; length as usize];
    raw.read_exact(&mut rest).await.unwrap();
    (rest[0], rest[9..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_cannot_claim_a_session_of_its_own() {
    use rpc_core::Gateway;
    use tokio::io::AsyncWriteExt;
    common::bounded(async {
        let map = map().await;
        let gate = Gate::start(map.local_address().unwrap());
        let mut raw = raw_player(
            &gate,
            &[
                ("unit", UnitClient::NAME, UnitClient::FINGERPRINT),
                ("login", LoginClient::NAME, LoginClient::FINGERPRINT),
            ],
        )
        .await;
        // A header naming session "x" (id 5): no trace context, then `01 01 'x' 05`.
        let forged = [0, 1, 1, b'x', 5];
        let protocol = |id, slot, invocation: &[u8]| {
            let mut body = forged.to_vec();
            body.extend_from_slice(invocation);
            frame_bytes(rpc_netty::protocol::request(
                id,
                slot,
                rpc_netty::protocol::NO_BUDGET,
                &body,
            ))
        };
        // It logs in as "mallory" (a clean header: `00 00`).
        let login = [0, 0, 0, 7, b'm', b'a', b'l', b'l', b'o', b'r', b'y'];
        raw.write_all(&frame_bytes(rpc_netty::protocol::request(
            2,
            2,
            rpc_netty::protocol::NO_BUDGET,
            &login,
        )))
        .await
        .unwrap();
        let (kind, _) = read_answer(&mut raw).await;
        assert_eq!(kind, rpc_netty::frame::FrameKind::Response as u8);
        // Through the relay, `nudge(1000)` claiming to be "x": refused by the relay.
        raw.write_all(&protocol(3, 1, &[2, 0xe8, 0x07])).await.unwrap();
        let (kind, body) = read_answer(&mut raw).await;
        assert_eq!(kind, rpc_netty::frame::FrameKind::Failure as u8);
        let error = rpc_netty::protocol::WireError::decode(&body, gate.outer);
        assert!(
            matches!(&error, RpcError::Serialization { reason, .. } if reason.contains("only the relay sets it")),
            "{error:?}"
        );
        // To an endpoint of the Gate itself, over its outer listener: refused there, before
        // the handler runs.
        raw.write_all(&protocol(4, 2, &[0, 7, b'm', b'a', b'l', b'l', b'o', b'r', b'y']))
            .await
            .unwrap();
        let (kind, body) = read_answer(&mut raw).await;
        assert_eq!(kind, rpc_netty::frame::FrameKind::Failure as u8);
        let error = rpc_netty::protocol::WireError::decode(&body, gate.outer);
        assert!(
            matches!(&error, RpcError::Serialization { reason, .. } if reason.contains("outer network")),
            "{error:?}"
        );
        // Nothing reached the Map as "x": the real "x" has no nudges.
        let (_player, _, unit) = log_in(&gate, "x").await;
        assert_eq!(unit.nudged().await.unwrap(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_and_a_cancel_travel_on_through_the_relay() {
    common::bounded(async {
        let (stalled, mut entered) = mpsc::unbounded_channel();
        let (gave_up, mut cancelled) = mpsc::unbounded_channel();
        let map = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        let units = Units {
            stalled: Some(stalled),
            gave_up: Some(gave_up),
            ..Units::default()
        };
        map.start_endpoint("units", units).await.unwrap();
        let gate = Gate::start(map.local_address().unwrap());
        let (_player, _, unit) = log_in(&gate, "ivy").await;

        // The Map sees what is left of the player's 2 s, not a fresh budget of its own.
        let budget = unit
            .clone()
            .with_timeout(Duration::from_secs(2))
            .budget()
            .await
            .unwrap()
            .expect("the relayed call has a deadline");
        assert!(budget > 0 && budget <= 2_000, "{budget} ms");

        // A call the player stops waiting for is cancelled on the Map too.
        let call = tokio::spawn(unit.stall().with_timeout(Duration::from_millis(300)));
        entered.recv().await.expect("the call reached the Map");
        assert!(matches!(call.await.unwrap(), Err(RpcError::Timeout { .. })));
        cancelled
            .recv()
            .await
            .expect("the Map saw the call cancelled");

        // Dropped before its answer: cancelled as well.
        let call = tokio::spawn(unit.stall());
        entered.recv().await.expect("the call reached the Map");
        call.abort();
        cancelled
            .recv()
            .await
            .expect("the Map saw the dropped call cancelled");
    })
    .await;
}

/// The Gate process's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// A player floods tells through the relay to a Map that does not take them (its unit is
/// busy): the Map's mailbox fills, then its connection from the Gate stops being read, then
/// the Gate's outbox to the Map fills and the Gate drops what does not fit. The Gate's memory
/// stays within its budgets, and it keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_flood_through_the_relay_stays_within_the_gates_budgets() {
    common::bounded(async {
        let (stalled, mut entered) = mpsc::unbounded_channel();
        let map = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        let units = Units {
            stalled: Some(stalled),
            ..Units::default()
        };
        map.start_endpoint("units", units).await.unwrap();
        let gate = Gate::start(map.local_address().unwrap());
        let pid = gate.child.id();
        let (player, _, unit) = log_in(&gate, "flood").await;
        // The unit's main thread is taken: what arrives for it waits in its mailbox.
        let busy = tokio::spawn(unit.stall().into_future());
        entered.recv().await.expect("the unit is busy");
        let before = rss_kib(pid);
        let cargo = bytes::Bytes::from(vec![7u8; 64 * 1024]);
        let mut sent = 0u64;
        let mut refused = 0u64;
        for _ in 0..4_096 {
            match unit.load(cargo.clone()) {
                Ok(()) => sent += 1,
                // The player's own outbox full: it waits for the Gate to read.
                Err(RpcError::Overloaded { .. }) => {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(other) => panic!("{other}"),
            }
        }
        // An ask on the same connection, behind the tells: once it is answered the Gate has
        // read them all (it never stops reading a relay's tells).
        let same: LoginClient = player.connect(gate.outer, "login").await.unwrap();
        assert!(same.login("again".into()).await.unwrap().is_err(), "one session");
        let grown = rss_kib(pid).saturating_sub(before);
        // And it serves another player.
        let other = rpc_netty::client();
        let login: LoginClient = other.connect(gate.outer, "login").await.unwrap();
        assert!(login.login("other".into()).await.unwrap().is_ok());
        println!(
            "{sent} tells of 64 KiB sent ({refused} refused at the player), the Gate grew {grown} KiB"
        );
        assert!(sent * 64 > 128 * 1024, "more than the Gate's budgets went out: {sent}");
        // The outbox to the Map (max_outbox_bytes, 64 MiB), read buffers, and 48 MiB of slack
        // for the allocator; 256 MiB went out.
        assert!(grown < 112 * 1024, "the Gate grew {grown} KiB");
        busy.abort();
    })
    .await;
}

/// A stream method called through the relay is refused at once with a clear error, not
/// opened to deliver nothing; the player's other calls go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_method_through_the_relay_is_refused_clearly() {
    use futures::StreamExt;
    common::bounded(async {
        let map = map().await;
        let gate = Gate::start(map.local_address().unwrap());
        let (_player, _, unit) = log_in(&gate, "lee").await;
        let mut ticks = unit.ticks(3);
        match ticks.next().await {
            Some(Err(error @ RpcError::Relay { .. })) => {
                let text = error.to_string();
                assert!(text.contains("streams are not relayed"), "{text}");
            }
            other => panic!("expected a relay refusal, got {other:?}"),
        }
        assert!(ticks.next().await.is_none(), "the stream ended");
        assert_eq!(unit.nudged().await.unwrap(), 0);
    })
    .await;
}
