//! Timing helpers and what one benchmark reports.

use std::future::Future;
use std::time::{Duration, Instant};

/// The unit of a benchmark's rate.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(clippy::enum_variant_names)]
pub enum Unit {
    CallsPerSec,
    MegabytesPerSec,
    ItemsPerSec,
}

impl Unit {
    pub fn label(self) -> &'static str {
        match self {
            Unit::CallsPerSec => "calls/s",
            Unit::MegabytesPerSec => "MB/s",
            Unit::ItemsPerSec => "items/s",
        }
    }
}

/// One benchmark's result in one run.
#[derive(Debug, Clone)]
pub struct Sample {
    pub id: &'static str,
    /// Median and 99th-percentile latency, for benchmarks that time each call.
    pub latency: Option<(Duration, Duration)>,
    pub rate: f64,
    pub unit: Unit,
}

/// Latencies of individual calls.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Latencies(Vec::with_capacity(n))
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// (p50, p99).
    pub fn percentiles(mut self) -> (Duration, Duration) {
        self.0.sort_unstable();
        let at = |p: f64| {
            let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
            self.0.get(i).copied().unwrap_or_default()
        };
        (at(0.50), at(0.99))
    }
}

/// Calls `call` `warmup` times untimed, then `n` times one after another, timing each.
pub async fn sequential<F, Fut>(id: &'static str, warmup: usize, n: usize, mut call: F) -> Sample
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    for i in 0..warmup {
        call(i as u64).await;
    }
    let mut latencies = Latencies::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        call(i as u64).await;
        latencies.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    Sample {
        id,
        latency: Some(latencies.percentiles()),
        rate: n as f64 / elapsed.as_secs_f64(),
        unit: Unit::CallsPerSec,
    }
}

/// `tasks` concurrent tasks each making `per_task` calls one after another (so `tasks` calls
/// are in flight); calls per second, and the latency of each call. `call` is given the
/// number of the task making it.
pub async fn concurrent<F, Fut>(
    id: &'static str,
    tasks: usize,
    warmup: usize,
    per_task: usize,
    call: F,
) -> Sample
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let run = |count: usize, timed: bool| {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let call = call.clone();
                tokio::spawn(async move {
                    let mut latencies = Latencies::with_capacity(if timed { count } else { 0 });
                    for _ in 0..count {
                        let start = Instant::now();
                        call(t).await;
                        if timed {
                            latencies.push(start.elapsed());
                        }
                    }
                    latencies
                })
            })
            .collect();
        async move {
            let mut all = Latencies::with_capacity(if timed { tasks * count } else { 0 });
            for handle in handles {
                all.extend(handle.await.expect("benchmark task"));
            }
            all
        }
    };
    run(warmup, false).await;
    let start = Instant::now();
    let latencies = run(per_task, true).await;
    let elapsed = start.elapsed();
    Sample {
        id,
        latency: Some(latencies.percentiles()),
        rate: (tasks * per_task) as f64 / elapsed.as_secs_f64(),
        unit: Unit::CallsPerSec,
    }
}

/// `n` one-at-a-time echoes of `bytes` bytes; megabytes (10^6) echoed per second. Each call
/// takes the buffer the previous one returned, so the harness copies nothing.
pub async fn bulk<S, F, Fut>(
    id: &'static str,
    warmup: usize,
    n: usize,
    bytes: usize,
    mut buffer: S,
    mut call: F,
) -> Sample
where
    F: FnMut(S) -> Fut,
    Fut: Future<Output = S>,
{
    for _ in 0..warmup {
        buffer = call(buffer).await;
    }
    let start = Instant::now();
    for _ in 0..n {
        buffer = call(buffer).await;
    }
    let elapsed = start.elapsed();
    drop(buffer);
    Sample {
        id,
        latency: None,
        rate: (n * bytes) as f64 / 1e6 / elapsed.as_secs_f64(),
        unit: Unit::MegabytesPerSec,
    }
}
