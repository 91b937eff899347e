//! The same calls through a `#[rpc_gateway]` proxy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc_core::{
    BoxError, FencedEndpoint, FencingId, RpcCall, RpcContext, RpcEndpoint, RpcService, RpcStream,
    rpc_gateway,
};
use serde_bytes::ByteBuf;

use crate::stats::{Sample, Unit, bulk, concurrent, sequential};

#[rpc_gateway]
pub trait EchoBench {
    async fn echo(&mut self, payload: String) -> String;
    async fn bulk(&mut self, data: ByteBuf) -> ByteBuf;
    /// The same echo with the type users write: the macro sends it as one byte string.
    async fn bulk_vec(&mut self, data: Vec<u8>) -> Vec<u8>;
    fn tell(&mut self, n: u64);
    async fn told(&mut self) -> u64;
    /// `count` items of `size` bytes.
    fn stream(&mut self, count: u32, size: u32) -> RpcStream<bytes::Bytes>;
}

/// The same echo through a fenced gateway: each call carries a token the endpoint checks.
#[rpc_gateway(fenced)]
pub trait FencedEchoBench {
    async fn echo(&mut self, payload: String) -> String;
}

#[derive(Default)]
pub struct Echo {
    told: u64,
}

impl RpcEndpoint for Echo {
    rpc_core::serves!(EchoBench, FencedEchoBench);

    async fn on_start(&mut self, ctx: RpcContext<Self>) -> Result<(), BoxError> {
        ctx.set_fencing_token(Some(FencingId::random()))?;
        Ok(())
    }
}

impl FencedEndpoint for Echo {
    type Token = FencingId;
}

impl FencedEchoBench for Echo {
    async fn echo(&mut self, payload: String) -> String {
        payload
    }
}

impl EchoBench for Echo {
    async fn echo(&mut self, payload: String) -> String {
        payload
    }
    async fn bulk(&mut self, data: ByteBuf) -> ByteBuf {
        data
    }
    async fn bulk_vec(&mut self, data: Vec<u8>) -> Vec<u8> {
        data
    }
    fn tell(&mut self, _n: u64) {
        self.told += 1;
    }
    async fn told(&mut self) -> u64 {
        self.told
    }
    fn stream(&mut self, count: u32, size: u32) -> RpcStream<bytes::Bytes> {
        let item = bytes::Bytes::from(vec![7u8; size as usize]);
        RpcStream::iter(std::iter::repeat_n(item, count as usize))
    }
}

/// A server with the echo endpoint, and a remote and a local proxy to it.
pub struct Setup {
    pub server: RpcService,
    pub client: RpcService,
    pub remote: EchoBenchClient,
    /// A remote proxy through the fenced gateway, carrying the endpoint's token.
    pub fenced: FencedEchoBenchClient,
    pub local: EchoBenchClient,
    pub address: String,
}

pub async fn setup() -> Setup {
    setup_with(Channel::Plain).await
}

/// What the client's connection to the server runs over.
pub enum Channel {
    /// Plain TCP.
    Plain,
    /// The authenticated, encrypted channel a shared secret gives.
    Secret(&'static str),
    /// TLS, the server with a self-signed certificate the client trusts.
    Tls,
}

/// The same, over `channel`.
pub async fn setup_with(channel: Channel) -> Setup {
    let (server, client) = match channel {
        Channel::Plain => (
            rpc_netty::NettyBuilder::new(),
            rpc_netty::NettyBuilder::new(),
        ),
        Channel::Secret(secret) => (
            rpc_netty::NettyBuilder::new().shared_secret(secret),
            rpc_netty::NettyBuilder::new().shared_secret(secret),
        ),
        Channel::Tls => {
            use rpc_netty::tls::TlsOptions;
            use rpc_netty::tls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
            let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
                .expect("certificate");
            let certificate = made.cert.der().clone();
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
            (
                rpc_netty::NettyBuilder::new()
                    .tls(TlsOptions::new().identity(vec![certificate.clone()], key))
                    .expect("server TLS"),
                rpc_netty::NettyBuilder::new()
                    .tls(TlsOptions::new().trust_roots(vec![certificate]))
                    .expect("client TLS"),
            )
        }
    };
    let server = server.bind("127.0.0.1:0").await.expect("bind");
    let echo = server
        .start_endpoint("echo", Echo::default())
        .await
        .expect("start");
    let token = echo.fencing_token().expect("set in on_start");
    let address = server.local_address().expect("address").to_string();
    let client = client.client();
    let remote = client.connect(&address, "echo").await.expect("connect");
    let fenced = client
        .connect_fenced(&address, "echo", token)
        .await
        .expect("connect");
    let local = server.gateway("echo").expect("local gateway");
    Setup {
        server,
        client,
        remote,
        fenced,
        local,
        address,
    }
}

/// What a player calls on the Gate first: opens its session.
#[rpc_gateway(outer)]
pub trait BenchLogin {
    async fn login(&mut self) -> u64;
}

struct Logins;

impl RpcEndpoint for Logins {
    rpc_core::serves!(BenchLogin);
}

impl BenchLogin for Logins {
    async fn login(&mut self) -> u64 {
        let context = rpc_core::CallContext::current();
        let peer = context.caller().peer().expect("over the network");
        peer.open_session("bench").map_or(0, |session| session.id())
    }
}

/// The echo behind a Gate: a player's proxy through the Gate's relay `echo`, which forwards
/// each call undecoded to the echo endpoint of `server` (one more hop than `remote`).
pub struct Relayed {
    pub gate: RpcService,
    pub player: RpcService,
    pub echo: EchoBenchClient,
}

pub async fn relayed(server: &RpcService) -> Relayed {
    let map = server.local_address().expect("address");
    let gate = rpc_netty::NettyBuilder::new()
        .outer("127.0.0.1:0")
        .bind("127.0.0.1:0")
        .await
        .expect("bind the gate");
    gate.start_endpoint("login", Logins).await.expect("start");
    gate.start_relay("echo", move |_: rpc_core::RouteRequest<'_>| async move {
        Ok(rpc_core::Hop {
            address: map,
            endpoint: "echo".to_owned(),
            incarnation: None,
        })
    })
    .expect("relay");
    let outer = gate.outer_address().expect("outer address");
    let player = rpc_netty::client();
    let login: BenchLoginClient = player.connect(outer, "login").await.expect("connect");
    login.login().await.expect("log in");
    let echo = player.connect(outer, "echo").await.expect("connect");
    Relayed { gate, player, echo }
}

impl Relayed {
    pub async fn shutdown(self) -> Result<(), rpc_core::RpcError> {
        self.player.shutdown().await?;
        self.gate.shutdown().await
    }
}

impl Setup {
    pub async fn shutdown(self) -> Result<(), rpc_core::RpcError> {
        self.client.shutdown().await?;
        self.server.shutdown().await
    }
}

fn payload() -> String {
    "x".repeat(32)
}

pub async fn seq(id: &'static str, proxy: &EchoBenchClient, warmup: usize, n: usize) -> Sample {
    seq_with(id, warmup, n, |payload| proxy.echo(payload)).await
}

/// [`seq`] through the fenced gateway.
pub async fn fenced_seq(
    id: &'static str,
    proxy: &FencedEchoBenchClient,
    warmup: usize,
    n: usize,
) -> Sample {
    seq_with(id, warmup, n, |payload| proxy.echo(payload)).await
}

async fn seq_with(
    id: &'static str,
    warmup: usize,
    n: usize,
    echo: impl Fn(String) -> RpcCall<String>,
) -> Sample {
    let payload = payload();
    sequential(id, warmup, n, |_| {
        let call = echo(payload.clone());
        async move {
            call.await.expect("echo");
        }
    })
    .await
}

pub async fn pipe64(id: &'static str, proxy: &EchoBenchClient, warmup: usize, n: usize) -> Sample {
    let proxy = proxy.clone();
    pipe64_with(id, warmup, n, move |payload| proxy.echo(payload)).await
}

/// 64 callers, each making `echo` calls one after another.
async fn pipe64_with(
    id: &'static str,
    warmup: usize,
    n: usize,
    echo: impl Fn(String) -> RpcCall<String> + Clone + Send + 'static,
) -> Sample {
    concurrent(id, 64, warmup / 64, n / 64, move |_| {
        let call = echo(payload());
        async move {
            call.await.expect("echo");
        }
    })
    .await
}

/// How long each call of the `deadline` rows may take: its own timeout instead of the
/// proxy's default, which the server learns in the request's budget and checks before the
/// call runs.
const DEADLINE: Duration = Duration::from_millis(500);

/// [`seq`] with a timeout of its own on every call.
pub async fn deadline_seq(proxy: &EchoBenchClient, warmup: usize, n: usize) -> Sample {
    seq_with("ours.deadline.seq", warmup, n, |payload| {
        proxy.echo(payload).with_timeout(DEADLINE)
    })
    .await
}

/// [`pipe64`] with a timeout of its own on every call.
pub async fn deadline_pipe64(proxy: &EchoBenchClient, warmup: usize, n: usize) -> Sample {
    let proxy = proxy.clone();
    pipe64_with("ours.deadline.pipe64", warmup, n, move |payload| {
        proxy.echo(payload).with_timeout(DEADLINE)
    })
    .await
}

pub async fn bulk1m(proxy: &EchoBenchClient, warmup: usize, n: usize) -> Sample {
    let data = ByteBuf::from(vec![7u8; 1 << 20]);
    bulk("ours.bulk1m", warmup, n, 1 << 20, data, |data| {
        let call = proxy.bulk(data);
        async move {
            let back = call.await.expect("bulk");
            assert_eq!(back.len(), 1 << 20);
            back
        }
    })
    .await
}

/// [`bulk1m`] with `Vec<u8>` instead of `ByteBuf`.
pub async fn bulk1m_vec(proxy: &EchoBenchClient, warmup: usize, n: usize) -> Sample {
    bulk(
        "ours.bulk1m.vec",
        warmup,
        n,
        1 << 20,
        vec![7u8; 1 << 20],
        |data| {
            let call = proxy.bulk_vec(data);
            async move {
                let back = call.await.expect("bulk");
                assert_eq!(back.len(), 1 << 20);
                back
            }
        },
    )
    .await
}

/// `count` items of `size` bytes streamed from the endpoint, read as they come.
pub async fn stream(
    proxy: &EchoBenchClient,
    id: &'static str,
    count: usize,
    size: usize,
) -> Sample {
    use futures::StreamExt;
    let start = Instant::now();
    let mut items = proxy.stream(count as u32, size as u32);
    let mut seen = 0;
    while let Some(item) = items.next().await {
        assert_eq!(item.expect("item").len(), size);
        seen += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(seen, count, "every item arrived");
    crate::raw::stream_sample(id, count, size, elapsed)
}

/// One-way calls per second from one caller; an ask at the end makes sure all arrived.
pub async fn tell(proxy: &EchoBenchClient, n: usize) -> Sample {
    let before = proxy.told().await.expect("told");
    let start = Instant::now();
    for i in 0..n as u64 {
        proxy.tell(i).expect("tell");
    }
    let after = proxy.told().await.expect("told");
    let elapsed = start.elapsed();
    assert_eq!(after - before, n as u64, "every tell arrived");
    Sample {
        id: "ours.tell",
        latency: None,
        rate: n as f64 / elapsed.as_secs_f64(),
        unit: Unit::CallsPerSec,
    }
}

/// 100 client connections (each its own client service), 8 calls in flight on each.
pub async fn fanin(address: &str, warmup: usize, per_task: usize) -> Sample {
    let mut clients = Vec::new();
    for _ in 0..100 {
        let client = rpc_netty::client();
        let proxy: EchoBenchClient = client.connect(address, "echo").await.expect("connect");
        clients.push((client, proxy));
    }
    let proxies: Arc<Vec<EchoBenchClient>> =
        Arc::new(clients.iter().map(|(_, p)| p.clone()).collect());
    let sample = concurrent("ours.fanin", 800, warmup, per_task, move |task| {
        let call = proxies[task / 8].echo(payload());
        async move {
            call.await.expect("echo");
        }
    })
    .await;
    for (client, _) in clients {
        client.shutdown().await.expect("shutdown");
    }
    sample
}
