//! `schedule_run_async` under tokio's paused clock: deterministic, no real waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rpc_core::{RpcContext, RpcEndpoint, RpcService};

#[derive(Default)]
struct Ticker {
    ticks: Arc<AtomicU32>,
}

impl RpcEndpoint for Ticker {}

/// A running ticker, its context, and its tick counter.
async fn ticker() -> (RpcService, RpcContext<Ticker>, Arc<AtomicU32>) {
    let service = RpcService::new();
    let ticker = Ticker::default();
    let ticks = Arc::clone(&ticker.ticks);
    let ctx = service.start_endpoint("ticker", ticker).await.unwrap();
    (service, ctx, ticks)
}

#[tokio::test(start_paused = true)]
async fn scheduled_closure_runs_after_its_delay() {
    let (service, ctx, ticks) = ticker().await;

    ctx.schedule_run_async(Duration::from_secs(5), |t| {
        t.ticks.fetch_add(1, Ordering::SeqCst);
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), 0, "not before its delay");
    // Once the delay has passed, a call_async queued behind it observes its effect.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = ctx
        .call_async(|t| t.ticks.load(Ordering::SeqCst))
        .await
        .unwrap();
    assert_eq!(seen, 1);
    service.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn scheduled_closure_never_runs_after_stop() {
    let (service, ctx, ticks) = ticker().await;

    ctx.schedule_run_async(Duration::from_secs(5), |t| {
        t.ticks.fetch_add(1, Ordering::SeqCst);
    });
    ctx.stop();
    ctx.terminated().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), 0);
    service.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn cancelled_schedule_does_not_run() {
    let (service, ctx, _) = ticker().await;

    let scheduled = ctx.schedule_run_async(Duration::from_secs(5), |t| {
        t.ticks.fetch_add(1, Ordering::SeqCst);
    });
    ctx.schedule_run_async(Duration::from_secs(6), |t| {
        t.ticks.fetch_add(10, Ordering::SeqCst);
    });
    scheduled.cancel();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let seen = ctx
        .call_async(|t| t.ticks.load(Ordering::SeqCst))
        .await
        .unwrap();
    assert_eq!(seen, 10, "only the uncancelled run happened");
    service.shutdown().await.unwrap();
}
