//! Spark's `IsolatedRpcEndpoint`: an endpoint whose main thread is an OS thread of its own
//! (`EndpointOptions::isolated(true)`), so that CPU-heavy or blocking handlers cannot starve
//! the endpoints sharing the service's runtime.
//!
//! An ordinary endpoint's main thread is a task on the service's tokio runtime: a handler that
//! computes for a second without awaiting holds one of the runtime's worker threads for that
//! second, and with as many such handlers as workers, every other endpoint waits. An isolated
//! endpoint runs its handlers one at a time as usual, on its own thread, while the rest keep
//! being served.

use std::time::{Duration, Instant};

use rpc_core::{RpcEndpoint, RpcError, rpc_gateway};
use serde::{Deserialize, Serialize};

/// What a cruncher found, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crunched {
    /// How many primes it found.
    pub primes: u64,
    /// The name of the thread the handler ran on.
    pub thread: String,
}

/// A CPU-heavy service.
#[rpc_gateway]
pub trait CrunchGateway {
    /// Counts primes by trial division for `millis` milliseconds, without ever yielding its
    /// thread.
    async fn crunch(&mut self, millis: u64) -> Crunched;
}

/// A light service that should stay responsive.
#[rpc_gateway]
pub trait PingGateway {
    /// Answers at once with the name of the thread the handler ran on.
    async fn ping(&mut self) -> String;
}

/// The CPU-heavy endpoint.
#[derive(Debug, Default)]
pub struct Cruncher;

impl RpcEndpoint for Cruncher {
    rpc_core::serves!(CrunchGateway);
}

impl CrunchGateway for Cruncher {
    async fn crunch(&mut self, millis: u64) -> Crunched {
        let deadline = Instant::now() + Duration::from_millis(millis);
        let mut primes = 0;
        let mut candidate: u64 = 2;
        // No `.await` in here: the thread is busy until the deadline.
        while Instant::now() < deadline {
            for _ in 0..1_000 {
                if is_prime(candidate) {
                    primes += 1;
                }
                candidate += 1;
            }
        }
        Crunched {
            primes,
            thread: thread_name(),
        }
    }
}

/// The light endpoint.
#[derive(Debug, Default)]
pub struct Pinger;

impl RpcEndpoint for Pinger {
    rpc_core::serves!(PingGateway);
}

impl PingGateway for Pinger {
    async fn ping(&mut self) -> String {
        thread_name()
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("an unnamed thread")
        .to_owned()
}

/// How the light endpoint fared while the heavy one crunched.
#[derive(Debug, Clone)]
pub struct Report {
    /// The cruncher's answer.
    pub crunched: Crunched,
    /// Pings answered before the crunch finished.
    pub pings_answered: u32,
    /// The longest an answered ping took, if any was answered.
    pub slowest_ping: Option<Duration>,
    /// The thread the pinger's handler ran on.
    pub ping_thread: String,
}

/// Asks `cruncher` to crunch for `crunch`, and pings `pinger` every `interval` until the
/// crunch is done.
pub async fn ping_while_crunching(
    cruncher: &CrunchGatewayClient,
    pinger: &PingGatewayClient,
    crunch: Duration,
    interval: Duration,
) -> Result<Report, RpcError> {
    let millis = u64::try_from(crunch.as_millis()).unwrap_or(u64::MAX);
    // The invocation is queued here; awaiting only waits for its reply.
    let crunching = cruncher.crunch(millis);
    tokio::pin!(crunching);
    let mut pings_answered = 0;
    let mut slowest_ping: Option<Duration> = None;
    let mut ping_thread = String::new();
    loop {
        let asked = Instant::now();
        tokio::select! {
            biased;
            crunched = &mut crunching => {
                return Ok(Report {
                    crunched: crunched?,
                    pings_answered,
                    slowest_ping,
                    ping_thread,
                });
            }
            pong = pinger.ping() => {
                ping_thread = pong?;
                slowest_ping = slowest_ping.max(Some(asked.elapsed()));
                pings_answered += 1;
            }
        }
        tokio::time::sleep(interval).await;
    }
}
