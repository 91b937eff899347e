//! Deadlines and cancellation: every ask ends once, on both sides. A timed-out, dropped or
//! aborted ask frees its place at once, is skipped if it has not run, and stops its `Deferred`
//! reply; a handler sees its deadline and the cancel. Each body runs in every mode.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Harness, Mode};
use futures::future::join_all;
use rpc_core::{
    CallContext, Deferred, RpcContext, RpcEndpoint, RpcError, RpcService, TimeoutSource,
    rpc_gateway,
};
use tokio::sync::{Semaphore, mpsc};

#[derive(Debug, PartialEq)]
enum Event {
    /// A handler (or the Deferred it returned) has begun.
    Started(&'static str),
    /// A handler saw its call cancelled.
    SawCancel,
    /// A `Deferred` reply's future was dropped before it finished.
    Dropped,
}

#[rpc_gateway]
pub trait Work {
    /// Holds the main thread until the test opens the gate.
    async fn hold(&mut self);
    /// Counts one run; returns the runs so far.
    async fn count(&mut self) -> u64;
    /// Never replies; its reply future reports when it is dropped.
    fn forever(&mut self) -> Deferred<u32>;
    /// Replies `ms` after it started, off the main thread.
    fn later(&mut self, ms: u64) -> Deferred<u64>;
    /// The time left until this call's deadline, in milliseconds, as the handler sees it.
    async fn budget(&mut self) -> Option<u64>;
    /// Holds the main thread until the call is cancelled; says whether it saw that.
    async fn until_cancelled(&mut self) -> bool;
}

/// Opens the gate [`Work::hold`] waits on. A second endpoint, reached over the same
/// connection as `worker`: its call arrives after every frame sent before it (cancels
/// included), so the test releases the held endpoint only once those have reached the server.
#[rpc_gateway]
pub trait Opener {
    async fn open(&mut self);
}

struct OpenerEndpoint(Arc<Shared>);

impl RpcEndpoint for OpenerEndpoint {
    rpc_core::serves!(Opener);
}

impl Opener for OpenerEndpoint {
    async fn open(&mut self) {
        self.0.gate.add_permits(1);
    }
}

struct Shared {
    gate: Semaphore,
    runs: AtomicU64,
    /// `Deferred` reply futures alive now.
    live: AtomicUsize,
    events: mpsc::UnboundedSender<Event>,
}

impl Shared {
    fn new(events: mpsc::UnboundedSender<Event>) -> Arc<Shared> {
        Arc::new(Shared {
            gate: Semaphore::new(0),
            runs: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            events,
        })
    }

    fn event(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

struct Worker(Arc<Shared>);

impl RpcEndpoint for Worker {
    rpc_core::serves!(Work);
}

/// Counts itself among the live reply futures until dropped.
struct Live(Arc<Shared>);

impl Live {
    fn new(shared: &Arc<Shared>) -> Live {
        shared.live.fetch_add(1, Ordering::SeqCst);
        Live(Arc::clone(shared))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
        self.0.event(Event::Dropped);
    }
}

impl Work for Worker {
    async fn hold(&mut self) {
        self.0.event(Event::Started("hold"));
        self.0.gate.acquire().await.expect("gate open").forget();
    }

    async fn count(&mut self) -> u64 {
        self.0.runs.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn forever(&mut self) -> Deferred<u32> {
        let live = Live::new(&self.0);
        Deferred::new(async move {
            live.0.event(Event::Started("forever"));
            std::future::pending::<()>().await;
            drop(live);
            0
        })
    }

    fn later(&mut self, ms: u64) -> Deferred<u64> {
        Deferred::new(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ms
        })
    }

    async fn budget(&mut self) -> Option<u64> {
        CallContext::current()
            .remaining()
            .map(|left| left.as_millis() as u64)
    }

    async fn until_cancelled(&mut self) -> bool {
        let call = CallContext::current();
        self.0.event(Event::Started("until_cancelled"));
        call.cancelled().await;
        let saw = call.is_cancelled();
        self.0.event(Event::SawCancel);
        saw
    }
}

struct Fixture {
    h: Harness,
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Event>,
    work: WorkClient,
    opener: OpenerClient,
    ctx: RpcContext<Worker>,
}

async fn fixture(mode: Mode) -> Fixture {
    let h = Harness::new(mode).await;
    let (events, receiver) = mpsc::unbounded_channel();
    let shared = Shared::new(events);
    let ctx = h
        .server
        .start_endpoint("worker", Worker(Arc::clone(&shared)))
        .await
        .unwrap();
    h.server
        .start_endpoint("opener", OpenerEndpoint(Arc::clone(&shared)))
        .await
        .unwrap();
    let work = h.gateway::<WorkClient>("worker").await.unwrap();
    let opener = h.gateway::<OpenerClient>("opener").await.unwrap();
    Fixture {
        h,
        shared,
        events: receiver,
        work,
        opener,
        ctx,
    }
}

impl Fixture {
    async fn next_event(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("an event within 10 s")
            .expect("the endpoint is alive")
    }

    /// Occupies the main thread until [`Fixture::release`]; returns once it is occupied.
    async fn hold(&mut self) -> tokio::task::JoinHandle<Result<(), RpcError>> {
        let hold = tokio::spawn(self.work.hold());
        assert_eq!(self.next_event().await, Event::Started("hold"));
        hold
    }

    /// Lets the held main thread go, through the same path (and connection) as the calls.
    async fn release(&self) {
        self.opener.open().await.unwrap();
    }

    /// Waits (at most 10 s) until no `Deferred` reply future is alive.
    async fn no_live_replies(&self) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.shared.live.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} Deferred replies still alive after 10 s",
                self.shared.live.load(Ordering::SeqCst)
            )
        });
    }
}

fn is_timeout<T: std::fmt::Debug>(result: &Result<T, RpcError>) -> bool {
    matches!(result, Err(RpcError::Timeout { .. }))
}

// ---------------------------------------------------------------------------------------------

/// 10,000 asks time out against a handler that never answers; the 100 asks after them on the
/// same proxy (and connection) all succeed at once: nothing of the timed-out ones is left in
/// the pending table (the default `max_in_flight` is 1,024) or on the server.
async fn timed_out_asks_release_their_place(mode: Mode) {
    let f = fixture(mode).await;
    let impatient = f.work.with_timeout(Duration::from_millis(20));
    for _round in 0..10 {
        let calls: Vec<_> = (0..1000).map(|_| impatient.forever()).collect();
        let results = join_all(calls).await;
        let other = results.iter().find(|r| !is_timeout(r));
        assert!(other.is_none(), "every ask times out: {other:?}");
    }
    let calls: Vec<_> = (0..100).map(|_| f.work.count()).collect();
    let results = tokio::time::timeout(Duration::from_secs(5), join_all(calls))
        .await
        .expect("the 100 asks are answered at once");
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed[0]
    );
    // The server dropped every reply future nobody waits for.
    f.no_live_replies().await;
    f.h.shutdown().await.unwrap();
}

/// An endpoint busy for a second while 1,000 asks with a 100 ms timeout queue behind it:
/// none of them runs once it is free (their deadline travelled with them, or their cancel
/// followed them).
async fn expired_asks_queued_behind_a_busy_endpoint_do_not_run(mode: Mode) {
    let mut f = fixture(mode).await;
    let hold = f.hold().await;
    let by_proxy = f.work.with_timeout(Duration::from_millis(100));
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                by_proxy.count()
            } else {
                f.work.count().with_timeout(Duration::from_millis(100))
            }
        })
        .collect();
    let timed_out = tokio::spawn(join_all(calls));
    // Busy for a second, as seen from here.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let results = timed_out.await.unwrap();
    assert!(results.iter().all(is_timeout), "every queued ask timed out");
    f.release().await;
    hold.await.unwrap().unwrap();
    // The ask after them runs after everything queued before it: it is the first to count.
    let runs = f.work.count().await.unwrap();
    assert!(runs <= 1, "{} expired asks ran", runs - 1);
    f.h.shutdown().await.unwrap();
}

/// Dropped and aborted asks still queued never run; an aborted call completes with
/// `Cancelled`.
async fn cancelled_queued_asks_never_run(mode: Mode) {
    let mut f = fixture(mode).await;
    let hold = f.hold().await;
    drop(f.work.count());
    f.work.count().abort();
    let aborted = f.work.count();
    let handle = aborted.abort_handle();
    handle.abort();
    assert!(handle.is_aborted());
    match aborted.await {
        Err(RpcError::Cancelled {
            gateway, method, ..
        }) => assert_eq!((gateway, method), ("Work", "count")),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    f.release().await;
    hold.await.unwrap().unwrap();
    assert_eq!(f.work.count().await.unwrap(), 1, "only the last ask ran");
    f.h.shutdown().await.unwrap();
}

/// A `Deferred` reply still running is dropped when its call is dropped, aborted or times out.
async fn cancelled_deferred_replies_stop(mode: Mode) {
    let mut f = fixture(mode).await;
    for how in ["drop", "abort", "timeout"] {
        let timeout = if how == "timeout" { 2_000 } else { 3_600_000 };
        let call = f
            .work
            .forever()
            .with_timeout(Duration::from_millis(timeout));
        let handle = call.abort_handle();
        let call = tokio::spawn(call);
        assert_eq!(f.next_event().await, Event::Started("forever"), "{how}");
        match how {
            "drop" => call.abort(),
            "abort" => handle.abort(),
            _ => {}
        }
        assert_eq!(f.next_event().await, Event::Dropped, "{how}");
        f.no_live_replies().await;
        let outcome = call.await;
        match how {
            "drop" => assert!(outcome.unwrap_err().is_cancelled()),
            "abort" => assert!(matches!(outcome.unwrap(), Err(RpcError::Cancelled { .. }))),
            _ => assert!(is_timeout(&outcome.unwrap())),
        }
    }
    f.h.shutdown().await.unwrap();
}

/// A handler holding the main thread sees its call's abort and can stop early.
async fn handlers_see_the_cancel(mode: Mode) {
    let mut f = fixture(mode).await;
    let call = f.work.until_cancelled();
    let handle = call.abort_handle();
    let call = tokio::spawn(call);
    assert_eq!(f.next_event().await, Event::Started("until_cancelled"));
    handle.abort();
    assert_eq!(f.next_event().await, Event::SawCancel);
    assert!(matches!(
        call.await.unwrap(),
        Err(RpcError::Cancelled { .. })
    ));
    // The endpoint is free again.
    assert_eq!(f.work.count().await.unwrap(), 1);
    f.h.shutdown().await.unwrap();
}

/// A handler reads the deadline its caller set, however far the call travelled, also one the
/// caller moved while the call waited in the mailbox.
async fn handlers_see_the_callers_deadline(mode: Mode) {
    let mut f = fixture(mode).await;
    let left = f
        .work
        .with_timeout(Duration::from_secs(5))
        .budget()
        .await
        .unwrap()
        .expect("an ask has a deadline");
    assert!((4_000..=5_000).contains(&left), "{left} ms left of 5 s");
    // Sent with the proxy's 10 s, given 60 s while it waits behind `hold`.
    let hold = f.hold().await;
    let call = f.work.budget().with_timeout(Duration::from_secs(60));
    f.release().await;
    hold.await.unwrap().unwrap();
    let left = call.await.unwrap().expect("an ask has a deadline");
    assert!(
        (55_000..=60_000).contains(&left),
        "{left} ms left of the call's 60 s"
    );
    f.h.shutdown().await.unwrap();
}

/// A call given a longer timeout than its proxy's gets it on the endpoint's side too: its
/// `Deferred` reply is not dropped at the proxy's deadline.
async fn a_longer_call_timeout_reaches_the_endpoint(mode: Mode) {
    let f = fixture(mode).await;
    let hasty = f.work.with_timeout(Duration::from_millis(200));
    let answer = hasty.later(600).with_timeout(Duration::from_secs(10)).await;
    assert_eq!(answer.unwrap(), 600);
    f.h.shutdown().await.unwrap();
}

in_every_mode!(
    timed_out_asks_release_their_place,
    expired_asks_queued_behind_a_busy_endpoint_do_not_run,
    cancelled_queued_asks_never_run,
    cancelled_deferred_replies_stop,
    handlers_see_the_cancel,
    handlers_see_the_callers_deadline,
    a_longer_call_timeout_reaches_the_endpoint,
);

// ---------------------------------------------------------------------------------------------
// The main-thread helpers: call_async with a timeout, scheduled calls that can be cancelled.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_async_times_out_and_never_runs_late() {
    common::bounded(async {
        let mut f = fixture(Mode::InProcess).await;
        let ran = Arc::new(AtomicBool::new(false));
        let hold = f.hold().await;
        let flag = Arc::clone(&ran);
        let late = f
            .ctx
            .call_async_timeout(Duration::from_millis(50), move |_| {
                flag.store(true, Ordering::SeqCst)
            })
            .await;
        match late {
            Err(error @ RpcError::Timeout { origin, .. }) => {
                assert_eq!(origin, TimeoutSource::CallAsync);
                assert!(
                    error.to_string().contains("call_async_timeout"),
                    "the message names the setting: {error}"
                );
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        // Dropped before it ran: cancelled too.
        let flag = Arc::clone(&ran);
        drop(
            f.ctx
                .call_async(move |_| flag.store(true, Ordering::SeqCst)),
        );
        f.release().await;
        hold.await.unwrap().unwrap();
        let answer = f
            .ctx
            .call_async_timeout(Duration::from_secs(10), |w| w.0.runs.load(Ordering::SeqCst))
            .await;
        assert_eq!(answer.unwrap(), 0);
        assert!(!ran.load(Ordering::SeqCst), "a cancelled closure ran");
        f.h.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_calls_return_values_and_never_run_after_cancel_or_stop() {
    common::bounded(async {
        let service = RpcService::new();
        let (events, _receiver) = mpsc::unbounded_channel();
        let shared = Shared::new(events);
        let ctx = service
            .start_endpoint("worker", Worker(Arc::clone(&shared)))
            .await
            .unwrap();
        let answer = ctx.schedule_call_async(Duration::from_millis(5), |_| 42u32);
        assert_eq!(answer.await.unwrap(), 42);

        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let cancelled = ctx.schedule_call_async(Duration::from_millis(20), move |_| {
            flag.store(true, Ordering::SeqCst)
        });
        cancelled.cancel();
        assert!(matches!(
            cancelled.await,
            Err(RpcError::Cancelled {
                method: "schedule_call_async",
                ..
            })
        ));
        // Scheduled later than the cancelled one: once it has run, the other would have.
        ctx.schedule_call_async(Duration::from_millis(100), |_| ())
            .await
            .unwrap();
        assert!(!ran.load(Ordering::SeqCst), "the cancelled call ran");

        let flag = Arc::clone(&ran);
        let after_stop = ctx.schedule_call_async(Duration::from_millis(50), move |_| {
            flag.store(true, Ordering::SeqCst)
        });
        ctx.stop();
        ctx.terminated().await;
        assert!(matches!(
            after_stop.await,
            Err(RpcError::EndpointStopped { .. })
        ));
        assert!(!ran.load(Ordering::SeqCst), "a call ran after the stop");
        service.shutdown().await.unwrap();
    })
    .await
}
