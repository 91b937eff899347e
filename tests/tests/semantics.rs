//! The gateway semantics users rely on, each test body run in every mode of the harness.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Harness, Mode};
use rpc_core::{BoxError, Deferred, RpcContext, RpcEndpoint, RpcError, TimeoutSource, rpc_gateway};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

// ---------------------------------------------------------------------------------------------
// The endpoint most tests use.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum MathError {
    #[error("division by zero")]
    DivisionByZero,
}

#[rpc_gateway]
pub trait Probe {
    async fn echo(&mut self, text: String) -> String;
    async fn divide(&mut self, a: i64, b: i64) -> Result<i64, MathError>;
    fn record(&mut self, seq: u64);
    async fn recorded(&mut self) -> Vec<u64>;
    /// Flags an overlap if another invocation is inside this one.
    async fn exclusive(&mut self) -> u32;
    async fn boom(&mut self, message: String) -> u32;
    /// Never replies, and does not hold the main thread while not replying.
    fn never(&mut self) -> Deferred<u32>;
    /// Asks itself through its own gateway; returns what the ask gave.
    async fn ask_self(&mut self) -> String;
    /// `call_async` on itself from its main thread; returns what it gave.
    async fn call_async_self(&mut self) -> String;
    /// Tells itself from its main thread; the tell runs after this handler.
    async fn tell_self(&mut self, seq: u64) -> bool;
    /// Whether this ran on the task that ran `on_start`.
    async fn on_main_task(&mut self) -> bool;
}

#[derive(Default)]
struct Probe1 {
    ctx: Option<RpcContext<Self>>,
    main_task: Option<tokio::task::Id>,
    recorded: Vec<u64>,
    busy: Arc<AtomicBool>,
    overlaps: Arc<AtomicUsize>,
}

impl Probe1 {
    fn ctx(&self) -> &RpcContext<Self> {
        self.ctx.as_ref().expect("on_start stored the context")
    }

    fn is_main_task(&self) -> bool {
        self.main_task.is_some() && tokio::task::try_id() == self.main_task
    }
}

impl RpcEndpoint for Probe1 {
    rpc_core::serves!(Probe);

    async fn on_start(&mut self, ctx: RpcContext<Self>) -> Result<(), BoxError> {
        self.ctx = Some(ctx);
        self.main_task = tokio::task::try_id();
        Ok(())
    }
}

impl Probe for Probe1 {
    async fn echo(&mut self, text: String) -> String {
        text
    }

    async fn divide(&mut self, a: i64, b: i64) -> Result<i64, MathError> {
        a.checked_div(b).ok_or(MathError::DivisionByZero)
    }

    fn record(&mut self, seq: u64) {
        self.recorded.push(seq);
    }

    async fn recorded(&mut self) -> Vec<u64> {
        self.recorded.clone()
    }

    async fn exclusive(&mut self) -> u32 {
        if self.busy.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        // Suspend inside the handler: a framework that ran invocations concurrently would
        // start another one now.
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        self.busy.store(false, Ordering::SeqCst);
        1
    }

    async fn boom(&mut self, message: String) -> u32 {
        panic!("{message}");
    }

    fn never(&mut self) -> Deferred<u32> {
        Deferred::new(std::future::pending())
    }

    async fn ask_self(&mut self) -> String {
        let me: ProbeClient = self.ctx().self_gateway();
        outcome(me.echo("me".into()).await)
    }

    async fn call_async_self(&mut self) -> String {
        outcome(self.ctx().call_async(|_| 1).await)
    }

    async fn tell_self(&mut self, seq: u64) -> bool {
        let me: ProbeClient = self.ctx().self_gateway();
        me.record(seq).is_ok()
    }

    async fn on_main_task(&mut self) -> bool {
        self.is_main_task()
    }
}

fn outcome<T: std::fmt::Debug>(result: Result<T, RpcError>) -> String {
    match result {
        Ok(value) => format!("ok: {value:?}"),
        Err(error @ RpcError::WouldDeadlock { .. }) => format!("deadlock: {error}"),
        Err(error) => format!("other error: {error:?}"),
    }
}

async fn start_probe(h: &Harness, name: &str) -> (RpcContext<Probe1>, ProbeClient) {
    let ctx = h
        .server
        .start_endpoint(name, Probe1::default())
        .await
        .expect("probe starts");
    let probe = h.gateway(name).await.expect("probe gateway");
    (ctx, probe)
}

// ---------------------------------------------------------------------------------------------
// Calls through the gateway.

async fn ask_tell_and_domain_error(mode: Mode) {
    let h = Harness::new(mode).await;
    let (_, probe) = start_probe(&h, "probe").await;

    assert_eq!(probe.echo("neo".into()).await.unwrap(), "neo");
    assert_eq!(probe.divide(10, 2).await.unwrap(), Ok(5));
    assert_eq!(
        probe.divide(1, 0).await.unwrap(),
        Err(MathError::DivisionByZero),
        "a domain error arrives as the value"
    );
    probe.record(7).unwrap();
    assert_eq!(probe.recorded().await.unwrap(), vec![7]);
    h.shutdown().await.unwrap();
}

async fn ten_thousand_tells_arrive_in_order(mode: Mode) {
    let h = Harness::new(mode).await;
    let (_, probe) = start_probe(&h, "probe").await;
    for seq in 0..10_000 {
        probe.record(seq).unwrap();
    }
    let seen = probe.recorded().await.unwrap();
    assert_eq!(seen, (0..10_000).collect::<Vec<_>>());
    h.shutdown().await.unwrap();
}

async fn concurrent_callers_never_overlap(mode: Mode) {
    let h = Harness::new(mode).await;
    let endpoint = Probe1::default();
    let overlaps = Arc::clone(&endpoint.overlaps);
    h.server.start_endpoint("probe", endpoint).await.unwrap();
    let probe: ProbeClient = h.gateway("probe").await.unwrap();

    let callers: Vec<_> = (0..8)
        .map(|_| {
            let probe = probe.clone();
            tokio::spawn(async move {
                let mut total = 0;
                for _ in 0..200 {
                    total += probe.exclusive().await.unwrap();
                }
                total
            })
        })
        .collect();
    let mut total = 0;
    for caller in callers {
        total += caller.await.unwrap();
    }
    assert_eq!(total, 8 * 200);
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two invocations ran at once"
    );
    h.shutdown().await.unwrap();
}

async fn panicking_handler_answers_and_keeps_serving(mode: Mode) {
    let h = Harness::new(mode).await;
    let (_, probe) = start_probe(&h, "probe").await;
    match probe.boom("kaboom".into()).await {
        Err(RpcError::HandlerPanicked {
            endpoint,
            gateway,
            method,
            message,
        }) => {
            assert_eq!(
                (endpoint.as_str(), gateway.as_str(), method.as_str()),
                ("probe", "Probe", "boom")
            );
            assert_eq!(message, "kaboom");
        }
        other => panic!("expected HandlerPanicked, got {other:?}"),
    }
    assert_eq!(probe.echo("still here".into()).await.unwrap(), "still here");
    h.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Timeouts: service default, per proxy, per call. The error names what timed out, and the
// setting that gave the timeout.

async fn timeouts_name_method_endpoint_and_duration(mode: Mode) {
    let h = Harness::with_timeout(mode, Duration::from_millis(40)).await;
    let (_, probe) = start_probe(&h, "sleepy").await;
    assert_eq!(probe.timeout(), Duration::from_millis(40));

    let expect_timeout =
        |result: Result<u32, RpcError>, expected: Duration, knob: TimeoutSource| match result {
            Err(RpcError::Timeout {
                gateway,
                method,
                endpoint,
                timeout,
                origin,
            }) => {
                assert_eq!((gateway, method), ("Probe", "never"));
                assert_eq!(endpoint.name(), "sleepy");
                assert_eq!(timeout, expected);
                assert_eq!(origin, knob);
            }
            other => panic!("expected a timeout, got {other:?}"),
        };

    let error = probe.never().await;
    let text = error.as_ref().map_err(ToString::to_string).unwrap_err();
    assert!(
        text.contains("Probe::never")
            && text.contains("sleepy")
            && text.contains("40ms")
            && text.contains("default ask timeout")
            && text.contains("default_timeout"),
        "{text}"
    );
    expect_timeout(
        error,
        Duration::from_millis(40),
        TimeoutSource::ServiceDefault,
    );

    let patient = probe.with_timeout(Duration::from_millis(60));
    assert_eq!(patient.timeout(), Duration::from_millis(60));
    let error = patient.never().await;
    let text = error.as_ref().map_err(ToString::to_string).unwrap_err();
    assert!(
        text.contains("proxy's timeout") && text.contains("with_timeout"),
        "{text}"
    );
    expect_timeout(error, Duration::from_millis(60), TimeoutSource::Proxy);

    let error = patient
        .never()
        .with_timeout(Duration::from_millis(20))
        .await;
    let text = error.as_ref().map_err(ToString::to_string).unwrap_err();
    assert!(text.contains("RpcCall::with_timeout"), "{text}");
    expect_timeout(error, Duration::from_millis(20), TimeoutSource::Call);

    // The endpoint kept serving throughout.
    assert_eq!(probe.echo("awake".into()).await.unwrap(), "awake");
    h.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The main thread.

async fn main_thread_executor_runs_everything_on_the_main_task(mode: Mode) {
    let h = Harness::new(mode).await;
    let (ctx, probe) = start_probe(&h, "probe").await;

    assert!(probe.on_main_task().await.unwrap(), "an invocation");

    let (sender, receiver) = oneshot::channel();
    ctx.run_async(move |probe| {
        let _ = sender.send(probe.is_main_task());
    })
    .unwrap();
    assert!(receiver.await.unwrap(), "a run_async closure");

    let on_main = ctx.call_async(|probe| probe.is_main_task()).await.unwrap();
    assert!(on_main, "a call_async closure");

    let (sender, receiver) = oneshot::channel();
    ctx.schedule_run_async(Duration::from_millis(1), move |probe| {
        let _ = sender.send(probe.is_main_task());
    });
    assert!(receiver.await.unwrap(), "a scheduled closure");
    h.shutdown().await.unwrap();
}

async fn self_calls_fail_fast_instead_of_hanging(mode: Mode) {
    let h = Harness::new(mode).await;
    let (_, probe) = start_probe(&h, "probe").await;

    let ask = probe.ask_self().await.unwrap();
    assert!(ask.starts_with("deadlock:"), "{ask}");
    assert!(
        ask.contains("`probe`") && ask.contains("Probe::echo"),
        "{ask}"
    );

    let call = probe.call_async_self().await.unwrap();
    assert!(call.starts_with("deadlock:"), "{call}");

    // A tell to itself is fine: it runs after the current handler.
    assert!(probe.tell_self(42).await.unwrap());
    assert_eq!(probe.recorded().await.unwrap(), vec![42]);
    h.shutdown().await.unwrap();
}

async fn self_gateway_calls_work_off_the_main_thread(mode: Mode) {
    let h = Harness::new(mode).await;
    let (ctx, _) = start_probe(&h, "probe").await;
    let me: ProbeClient = ctx.self_gateway();
    assert_eq!(
        me.echo("from outside".into()).await.unwrap(),
        "from outside"
    );
    h.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Lifecycle.

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, event: impl Into<String>) {
    log.lock().unwrap().push(event.into());
}

fn events(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[rpc_gateway]
pub trait Journal {
    fn note(&mut self, event: String);
    async fn ping(&mut self) -> u32;
    /// Logs nothing: a caller awaiting it knows its earlier calls have run.
    async fn sync(&mut self);
}

struct Lifecycle {
    log: Log,
    /// on_start waits for this before finishing, so the test can queue invocations first.
    gate: Option<oneshot::Receiver<()>>,
    fail_start: bool,
}

impl Lifecycle {
    fn new(log: &Log) -> Self {
        Lifecycle {
            log: Arc::clone(log),
            gate: None,
            fail_start: false,
        }
    }
}

impl RpcEndpoint for Lifecycle {
    rpc_core::serves!(Journal);

    async fn on_start(&mut self, _ctx: RpcContext<Self>) -> Result<(), BoxError> {
        push(&self.log, "start:begin");
        if let Some(gate) = self.gate.take() {
            let _ = gate.await;
        }
        if self.fail_start {
            return Err("the disk is on fire".into());
        }
        push(&self.log, "start:end");
        Ok(())
    }

    async fn on_stop(&mut self) -> Result<(), rpc_core::BoxError> {
        push(&self.log, "stop");
        Ok(())
    }
}

impl Journal for Lifecycle {
    fn note(&mut self, event: String) {
        push(&self.log, event);
    }

    async fn ping(&mut self) -> u32 {
        push(&self.log, "ping");
        1
    }

    async fn sync(&mut self) {}
}

async fn on_start_runs_before_the_first_invocation(mode: Mode) {
    let h = Harness::new(mode).await;
    let log = Log::default();
    let (open, gate) = oneshot::channel();
    let mut endpoint = Lifecycle::new(&log);
    endpoint.gate = Some(gate);
    let server = h.server.clone();
    let starting = tokio::spawn(async move { server.start_endpoint("life", endpoint).await });

    // The name is registered while on_start runs; invocations queue behind it.
    let journal: JournalClient = loop {
        match h.gateway("life").await {
            Ok(journal) => break journal,
            Err(RpcError::EndpointNotFound { .. }) => tokio::task::yield_now().await,
            Err(other) => panic!("{other}"),
        }
    };
    journal.note("early".into()).unwrap();
    let ping = journal.ping();
    open.send(()).unwrap();
    starting.await.unwrap().unwrap();
    assert_eq!(ping.await.unwrap(), 1);
    assert_eq!(events(&log), ["start:begin", "start:end", "early", "ping"]);
    h.shutdown().await.unwrap();
}

async fn failing_on_start_is_reported_to_the_starter(mode: Mode) {
    let h = Harness::new(mode).await;
    let log = Log::default();
    let mut endpoint = Lifecycle::new(&log);
    endpoint.fail_start = true;
    match h.server.start_endpoint("doomed", endpoint).await {
        Err(error @ RpcError::StartFailed { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("doomed") && text.contains("the disk is on fire"),
                "{text}"
            );
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert_eq!(events(&log), ["start:begin"], "on_stop does not run");
    assert!(matches!(
        h.gateway::<JournalClient>("doomed").await,
        Err(RpcError::EndpointNotFound { .. })
    ));
    // The name is free again.
    h.server
        .start_endpoint("doomed", Lifecycle::new(&log))
        .await
        .unwrap();
    h.shutdown().await.unwrap();
}

async fn stop_runs_queued_invocations_then_on_stop_once(mode: Mode) {
    let h = Harness::new(mode).await;
    let log = Log::default();
    let ctx = h
        .server
        .start_endpoint("life", Lifecycle::new(&log))
        .await
        .unwrap();
    let journal: JournalClient = h.gateway("life").await.unwrap();

    journal.note("a".into()).unwrap();
    let before = journal.ping();
    journal.note("b".into()).unwrap();
    if h.mode == Mode::Tcp {
        // The stop below is issued on the server, the calls above by a remote client: wait
        // until they have arrived. (In process they are still queued, unrun, at the stop.)
        journal.sync().await.unwrap();
    }
    ctx.stop();
    let after = journal.ping();
    ctx.stop(); // a second stop is a no-op

    assert_eq!(before.await.unwrap(), 1, "queued before the stop: runs");
    match after.await {
        Err(RpcError::EndpointStopped { endpoint }) => assert_eq!(endpoint, "life"),
        other => panic!("queued after the stop: expected EndpointStopped, got {other:?}"),
    }
    ctx.terminated().await;
    match journal.ping().await {
        Err(RpcError::EndpointStopped { .. }) => {}
        other => panic!("after termination: expected EndpointStopped, got {other:?}"),
    }
    let late = journal.note("late".into());
    if h.mode == Mode::Tcp {
        // A remote tell cannot be answered: the caller only learns that it was sent; the
        // server drops it with a warning.
        assert!(late.is_ok());
    } else {
        assert!(matches!(late, Err(RpcError::EndpointStopped { .. })));
    }
    assert_eq!(
        events(&log),
        ["start:begin", "start:end", "a", "ping", "b", "stop"]
    );
    h.shutdown().await.unwrap();
}

async fn shutdown_stops_every_endpoint(mode: Mode) {
    let h = Harness::new(mode).await;
    let log = Log::default();
    h.server
        .start_endpoint("one", Lifecycle::new(&log))
        .await
        .unwrap();
    h.server
        .start_endpoint("two", Lifecycle::new(&log))
        .await
        .unwrap();
    let one: JournalClient = h.gateway("one").await.unwrap();
    let server = h.server.clone();
    h.shutdown().await.unwrap();
    let stops = events(&log).iter().filter(|e| *e == "stop").count();
    assert_eq!(stops, 2, "shutdown completes after every on_stop");
    match (mode, one.ping().await) {
        (Mode::Tcp, Err(RpcError::ServiceShutDown | RpcError::ConnectFailed { .. })) => {}
        (Mode::InProcess | Mode::Serialized, Err(RpcError::EndpointStopped { .. })) => {}
        (mode, other) => panic!("{mode:?}: a call after shutdown gave {other:?}"),
    }
    assert!(matches!(
        server.start_endpoint("three", Lifecycle::new(&log)).await,
        Err(RpcError::ServiceShutDown)
    ));
}

// ---------------------------------------------------------------------------------------------
// Several gateways on one endpoint, supertraits included.

#[rpc_gateway]
pub trait Named {
    async fn name(&mut self) -> String;
}

#[rpc_gateway]
pub trait Worker: Named {
    async fn work(&mut self, units: u32) -> u32;
}

#[rpc_gateway]
pub trait Admin {
    async fn total(&mut self) -> u32;
}

#[derive(Default)]
struct Multi {
    done: u32,
}

impl RpcEndpoint for Multi {
    rpc_core::serves!(Worker, Admin);
}

impl Named for Multi {
    async fn name(&mut self) -> String {
        "multi".into()
    }
}

impl Worker for Multi {
    async fn work(&mut self, units: u32) -> u32 {
        self.done += units;
        self.done
    }
}

impl Admin for Multi {
    async fn total(&mut self) -> u32 {
        self.done
    }
}

async fn one_endpoint_serves_several_gateways(mode: Mode) {
    let h = Harness::new(mode).await;
    h.server
        .start_endpoint("multi", Multi::default())
        .await
        .unwrap();
    let worker: WorkerClient = h.gateway("multi").await.unwrap();
    let admin: AdminClient = h.gateway("multi").await.unwrap();
    let named: NamedClient = h.gateway("multi").await.unwrap();

    assert_eq!(worker.work(3).await.unwrap(), 3);
    assert_eq!(worker.work(4).await.unwrap(), 7);
    assert_eq!(
        admin.total().await.unwrap(),
        7,
        "same state behind both gateways"
    );
    assert_eq!(
        named.name().await.unwrap(),
        "multi",
        "the supertrait is served"
    );

    match h.gateway::<JournalClient>("multi").await {
        Err(error @ RpcError::IncompatibleGateway { .. }) => {
            let text = error.to_string();
            assert!(text.contains("`Journal`"), "{text}");
            assert!(
                text.contains("Worker") && text.contains("Named") && text.contains("Admin"),
                "{text}"
            );
        }
        other => panic!("expected IncompatibleGateway, got {other:?}"),
    }
    match h.gateway::<AdminClient>("nobody").await {
        Err(RpcError::EndpointNotFound { endpoint, .. }) => assert_eq!(endpoint, "nobody"),
        other => panic!("expected EndpointNotFound, got {other:?}"),
    }
    assert!(matches!(
        h.server.start_endpoint("multi", Multi::default()).await,
        Err(RpcError::NameInUse { .. })
    ));
    h.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Replying later without blocking the mailbox.

#[rpc_gateway]
pub trait Backend {
    fn slow(&mut self) -> Deferred<u32>;
}

struct SlowBackend {
    release: Arc<Notify>,
}

impl RpcEndpoint for SlowBackend {
    rpc_core::serves!(Backend);
}

impl Backend for SlowBackend {
    fn slow(&mut self) -> Deferred<u32> {
        let release = Arc::clone(&self.release);
        Deferred::new(async move {
            release.notified().await;
            42
        })
    }
}

#[rpc_gateway]
pub trait Front {
    fn relay(&mut self) -> Deferred<u32>;
    async fn ping(&mut self) -> u32;
}

struct Relay {
    backend: BackendClient,
    pings: u32,
}

impl RpcEndpoint for Relay {
    rpc_core::serves!(Front);
}

impl Front for Relay {
    fn relay(&mut self) -> Deferred<u32> {
        let backend = self.backend.clone();
        Deferred::new(async move { backend.slow().await.unwrap_or(0) })
    }

    async fn ping(&mut self) -> u32 {
        self.pings += 1;
        self.pings
    }
}

async fn deferred_reply_does_not_block_the_mailbox(mode: Mode) {
    let h = Harness::new(mode).await;
    let release = Arc::new(Notify::new());
    h.server
        .start_endpoint(
            "backend",
            SlowBackend {
                release: Arc::clone(&release),
            },
        )
        .await
        .unwrap();
    let backend = h.gateway("backend").await.unwrap();
    h.server
        .start_endpoint("front", Relay { backend, pings: 0 })
        .await
        .unwrap();
    let front: FrontClient = h.gateway("front").await.unwrap();

    let relayed = front.relay();
    // The relay is waiting on the backend, yet the front answers other calls.
    assert_eq!(front.ping().await.unwrap(), 1);
    assert_eq!(front.ping().await.unwrap(), 2);
    release.notify_one();
    assert_eq!(relayed.await.unwrap(), 42);
    h.shutdown().await.unwrap();
}

in_every_mode!(
    ask_tell_and_domain_error,
    ten_thousand_tells_arrive_in_order,
    concurrent_callers_never_overlap,
    panicking_handler_answers_and_keeps_serving,
    timeouts_name_method_endpoint_and_duration,
    main_thread_executor_runs_everything_on_the_main_task,
    self_calls_fail_fast_instead_of_hanging,
    self_gateway_calls_work_off_the_main_thread,
    on_start_runs_before_the_first_invocation,
    failing_on_start_is_reported_to_the_starter,
    stop_runs_queued_invocations_then_on_stop_once,
    shutdown_stops_every_endpoint,
    one_endpoint_serves_several_gateways,
    deferred_reply_does_not_block_the_mailbox,
);
