//! Fencing, Flink's scenarios, in every mode (in process, forced serialization, TCP): a call
//! carrying the endpoint's current token is served; another token, no token, or a token from
//! before a change is refused before the handler runs; a token change filters what was queued
//! under the old one; `run_async` and the self gateway follow the current token.

mod common;

use std::sync::Arc;

use common::{Harness, Mode};
use rpc_core::{FencedEndpoint, FencingId, RpcContext, RpcEndpoint, RpcError, rpc_gateway};
use tokio::sync::Semaphore;

/// What a leader does: fenced.
#[rpc_gateway(fenced)]
pub trait Leader {
    async fn submit(&mut self, job: u64) -> u64;
    fn note(&mut self, job: u64);
}

/// Managing the endpoint: not fenced, so it works whatever the token.
#[rpc_gateway]
pub trait Admin {
    /// Sets the fencing token (on the main thread).
    async fn set_token(&mut self, token: Option<FencingId>);
    /// Holds the main thread until the test opens the gate, then sets `token`.
    async fn hold_then_set(&mut self, token: FencingId);
    /// The jobs the handlers and closures ran, in order.
    async fn ran(&mut self) -> Vec<u64>;
}

/// Opens the gate `hold_then_set` waits for. Another endpoint, reached over the same
/// connection: when it runs, the frames sent before it are already in the master's mailbox.
#[rpc_gateway]
pub trait Opener {
    async fn open(&mut self);
}

struct Master {
    ctx: Option<RpcContext<Self>>,
    ran: Vec<u64>,
    gate: Arc<Semaphore>,
    /// Given a permit when `hold_then_set` starts holding.
    holding: Arc<Semaphore>,
}

impl RpcEndpoint for Master {
    rpc_core::serves!(Leader, Admin);

    async fn on_start(&mut self, ctx: RpcContext<Self>) -> Result<(), rpc_core::BoxError> {
        self.ctx = Some(ctx);
        Ok(())
    }
}

impl FencedEndpoint for Master {
    type Token = FencingId;
}

impl Master {
    fn ctx(&self) -> &RpcContext<Self> {
        self.ctx.as_ref().expect("started")
    }
}

impl Leader for Master {
    async fn submit(&mut self, job: u64) -> u64 {
        self.ran.push(job);
        job * 10
    }

    fn note(&mut self, job: u64) {
        self.ran.push(job);
    }
}

impl Admin for Master {
    async fn set_token(&mut self, token: Option<FencingId>) {
        self.ctx()
            .set_fencing_token(token)
            .expect("on the main thread");
    }

    async fn hold_then_set(&mut self, token: FencingId) {
        self.holding.add_permits(1);
        let permit = self.gate.acquire().await.expect("the gate stays open");
        permit.forget();
        self.ctx()
            .set_fencing_token(Some(token))
            .expect("on the main thread");
    }

    async fn ran(&mut self) -> Vec<u64> {
        self.ran.clone()
    }
}

struct Gate(Arc<Semaphore>);

impl RpcEndpoint for Gate {
    rpc_core::serves!(Opener);
}

impl Opener for Gate {
    async fn open(&mut self) {
        self.0.add_permits(1);
    }
}

struct Fixture {
    harness: Harness,
    master: RpcContext<Master>,
    holding: Arc<Semaphore>,
    admin: AdminClient,
    opener: OpenerClient,
}

async fn fixture(mode: Mode) -> Fixture {
    let harness = Harness::new(mode).await;
    let gate = Arc::new(Semaphore::new(0));
    let holding = Arc::new(Semaphore::new(0));
    let master = harness
        .server
        .start_endpoint(
            "master",
            Master {
                ctx: None,
                ran: Vec::new(),
                gate: Arc::clone(&gate),
                holding: Arc::clone(&holding),
            },
        )
        .await
        .unwrap();
    harness
        .server
        .start_endpoint("gate", Gate(gate))
        .await
        .unwrap();
    let admin = harness.gateway::<AdminClient>("master").await.unwrap();
    let opener = harness.gateway::<OpenerClient>("gate").await.unwrap();
    Fixture {
        harness,
        master,
        holding,
        admin,
        opener,
    }
}

fn assert_mismatch(
    result: Result<u64, RpcError>,
    expected: Option<FencingId>,
    received: FencingId,
) {
    match result {
        Err(RpcError::FencingTokenMismatch {
            endpoint,
            gateway,
            method,
            expected: was,
            received: got,
        }) => {
            assert_eq!((endpoint.as_str(), gateway.as_str()), ("master", "Leader"));
            assert_eq!(method, "submit");
            assert_eq!(was, expected.map(|token| format!("{token:?}")));
            assert_eq!(got, Some(format!("{received:?}")));
        }
        other => panic!("expected FencingTokenMismatch, got {other:?}"),
    }
}

async fn the_current_token_is_served_and_others_are_refused_before_the_handler(mode: Mode) {
    let f = fixture(mode).await;
    let (current, other) = (FencingId::random(), FencingId::random());
    let leader = f
        .harness
        .gateway_fenced::<LeaderClient>("master", current)
        .await
        .unwrap();
    let stale = leader.with_fencing_token(other);
    assert_eq!(stale.fencing_token(), Some(&other));

    // No token yet: every fenced call is refused.
    assert_mismatch(leader.submit(1).await, None, current);

    f.admin.set_token(Some(current)).await.unwrap();
    assert_eq!(leader.submit(2).await.unwrap(), 20);
    assert_mismatch(stale.submit(3).await, Some(current), other);
    stale.note(4).unwrap();
    leader.note(5).unwrap();
    // Handlers ran for the current token only.
    assert_eq!(f.admin.ran().await.unwrap(), [2, 5]);

    // Losing leadership: no token, every fenced call refused again.
    f.admin.set_token(None).await.unwrap();
    assert_mismatch(leader.submit(6).await, None, current);
    assert_eq!(f.admin.ran().await.unwrap(), [2, 5]);
    f.harness.shutdown().await.unwrap();
}

async fn a_token_change_filters_what_was_queued_under_the_old_one(mode: Mode) {
    let f = fixture(mode).await;
    let (old, new) = (FencingId::random(), FencingId::random());
    f.admin.set_token(Some(old)).await.unwrap();
    let leader = f
        .harness
        .gateway_fenced::<LeaderClient>("master", old)
        .await
        .unwrap();

    // The main thread is held; behind it: calls and closures under the old token.
    let held = f.admin.hold_then_set(new);
    let submitted = leader.submit(1);
    leader.note(2).unwrap();
    f.holding.acquire().await.unwrap().forget();
    f.master.run_async(|master| master.ran.push(3)).unwrap();
    let called = f.master.call_async(|master| master.ran.push(4));
    let unfenced = f.master.call_async_unfenced(|master| {
        master.ran.push(5);
        master.ctx().fencing_token()
    });
    let scheduled = f
        .master
        .schedule_call_async(std::time::Duration::ZERO, |master| master.ran.push(6));
    f.opener.open().await.unwrap();
    held.await.unwrap();

    assert_mismatch(submitted.await, Some(new), old);
    match called.await {
        Err(RpcError::FencingTokenMismatch {
            gateway,
            method,
            expected,
            received: None,
            ..
        }) => {
            assert_eq!(
                (gateway.as_str(), method.as_str()),
                ("RpcContext", "call_async")
            );
            assert_eq!(expected, Some(format!("{new:?}")));
        }
        other => panic!("expected FencingTokenMismatch, got {other:?}"),
    }
    assert_eq!(unfenced.await.unwrap(), Some(new), "ran after the change");
    assert!(matches!(
        scheduled.await,
        Err(RpcError::FencingTokenMismatch { .. })
    ));
    // Only the unfenced closure ran; the new token is served.
    assert_eq!(f.admin.ran().await.unwrap(), [5]);
    assert_eq!(leader.with_fencing_token(new).submit(7).await.unwrap(), 70);
    assert_eq!(f.admin.ran().await.unwrap(), [5, 7]);
    f.harness.shutdown().await.unwrap();
}

in_every_mode!(
    the_current_token_is_served_and_others_are_refused_before_the_handler,
    a_token_change_filters_what_was_queued_under_the_old_one,
);

#[tokio::test]
async fn the_self_gateway_and_run_async_follow_the_current_token() {
    let f = fixture(Mode::InProcess).await;
    let myself: LeaderClient = f.master.self_gateway();
    // No token: the self gateway carries none.
    match myself.submit(1).await {
        Err(RpcError::FencingTokenMissing {
            endpoint,
            gateway,
            method,
        }) => assert_eq!(
            (endpoint.as_str(), gateway.as_str(), method.as_str()),
            ("master", "Leader", "submit")
        ),
        other => panic!("expected FencingTokenMissing, got {other:?}"),
    }
    let first = FencingId::random();
    f.admin.set_token(Some(first)).await.unwrap();
    assert_eq!(f.master.fencing_token(), Some(first));
    assert_eq!(
        myself.submit(2).await.unwrap(),
        20,
        "stamps the current token"
    );
    let second = FencingId::random();
    f.admin.set_token(Some(second)).await.unwrap();
    assert_eq!(myself.submit(3).await.unwrap(), 30, "and the next one");
    // A closure queued now runs under the current token.
    f.master.run_async(|master| master.ran.push(4)).unwrap();
    assert_eq!(
        f.master
            .call_async(|master| master.ran.clone())
            .await
            .unwrap(),
        [2, 3, 4]
    );
    f.harness.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_token_may_only_change_on_the_main_thread() {
    let f = fixture(Mode::InProcess).await;
    match f.master.set_fencing_token(Some(FencingId::random())) {
        Err(RpcError::NotOnMainThread { endpoint, method }) => {
            assert_eq!((endpoint.as_str(), method), ("master", "set_fencing_token"));
        }
        other => panic!("expected NotOnMainThread, got {other:?}"),
    }
    assert_eq!(f.master.fencing_token(), None);
    f.harness.shutdown().await.unwrap();
}

/// A peer that stamps no token (here: raw frames) is refused with its own error.
#[tokio::test]
async fn a_remote_call_without_a_token_is_refused_before_the_handler() {
    use rpc_core::Gateway;
    use rpc_core::transport::Binding;
    use rpc_netty::protocol;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let f = fixture(Mode::Tcp).await;
    f.admin.set_token(Some(FencingId::random())).await.unwrap();
    let address = f.harness.server.local_address().unwrap();
    let mut raw = tokio::net::TcpStream::connect(address).await.unwrap();
    raw.write_all(&common::handshake_bytes(protocol::PROTOCOL_VERSION))
        .await
        .unwrap();
    let mut hello = [0; 20];
    raw.read_exact(&mut hello).await.unwrap();
    let binding = Binding {
        endpoint: "master".to_owned(),
        gateway: LeaderClient::NAME.to_owned(),
        fingerprint: LeaderClient::FINGERPRINT,
        incarnation: None,
        session: None,
    };
    // `submit(1)` with no trace context, no relayed session and no token: postcard `None`
    // three times (0, 0, 0), method 0, job 1.
    let mut bytes = wire(&protocol::bind(1, 1, &binding));
    bytes.extend(wire(&protocol::request(
        2,
        1,
        protocol::NO_BUDGET,
        &[0, 0, 0, 0, 1],
    )));
    raw.write_all(&bytes).await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let length = raw.read_u32().await.unwrap();
        let mut rest = vec![0; length as usize];
        raw.read_exact(&mut rest).await.unwrap();
        answers.push(rest);
    }
    assert_eq!(answers[0][0], 0x05, "bound");
    assert_eq!(answers[1][0], 0x09, "a failure");
    let error = protocol::WireError::decode(&answers[1][9..], address);
    assert!(
        matches!(&error, RpcError::FencingTokenMissing { method, .. } if method == "submit"),
        "{error:?}"
    );
    assert!(
        f.admin.ran().await.unwrap().is_empty(),
        "the handler did not run"
    );
    f.harness.shutdown().await.unwrap();
}

fn wire(frame: &rpc_netty::frame::Frame) -> Vec<u8> {
    let mut bytes = bytes::BytesMut::new();
    rpc_netty::frame::encode_frame(frame, &mut bytes, usize::MAX).expect("encodable");
    bytes.to_vec()
}

/// A fenced gateway's contract includes its token type: the fingerprint says so.
#[test]
fn the_token_type_is_part_of_the_fingerprint() {
    use rpc_core::Gateway;

    #[rpc_gateway]
    pub trait Plain {
        async fn submit(&mut self, job: u64) -> u64;
        fn note(&mut self, job: u64);
    }

    #[rpc_gateway(fenced = u64)]
    pub trait Numbered {
        async fn submit(&mut self, job: u64) -> u64;
        fn note(&mut self, job: u64);
    }

    let fingerprints = [
        PlainClient::FINGERPRINT,
        LeaderClient::FINGERPRINT,
        NumberedClient::FINGERPRINT,
    ];
    assert_ne!(fingerprints[0], fingerprints[1]);
    assert_ne!(fingerprints[1], fingerprints[2]);
    assert_ne!(fingerprints[0], fingerprints[2]);
}
