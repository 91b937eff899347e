//! An isolated endpoint crunching numbers for a second while an ordinary endpoint keeps
//! answering pings; then, for contrast, the same cruncher without isolation, which stalls
//! the pings until it is done.
//!
//! ```text
//! cargo run -p rpc-examples --example isolated
//! ```
//!
//! The program runs on a single-threaded tokio runtime, so that one busy handler is enough to
//! show the difference; on a multi-threaded runtime it takes as many busy handlers as worker
//! threads.

use std::time::Duration;

use rpc_core::EndpointOptions;
use rpc_examples::isolated::{
    CrunchGatewayClient, Cruncher, PingGatewayClient, Pinger, ping_while_crunching,
};

const CRUNCH: Duration = Duration::from_millis(800);
const PING_INTERVAL: Duration = Duration::from_millis(20);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rpc_examples::init_tracing();

    let server = rpc_netty::bind("127.0.0.1:0").await?;
    // The same endpoint twice: once on a thread of its own, once on the service's runtime.
    server
        .start_endpoint_with(
            "isolated-cruncher",
            Cruncher,
            EndpointOptions::new().isolated(true),
        )
        .await?;
    server.start_endpoint("shared-cruncher", Cruncher).await?;
    server.start_endpoint("pinger", Pinger).await?;
    let address = server.local_address()?;

    let client = rpc_netty::client();
    let pinger: PingGatewayClient = client.connect(address, "pinger").await?;

    let isolated: CrunchGatewayClient = client.connect(address, "isolated-cruncher").await?;
    let report = ping_while_crunching(&isolated, &pinger, CRUNCH, PING_INTERVAL).await?;
    println!(
        "isolated: found {} primes on thread {:?}; meanwhile {} pings answered on thread {:?}, \
         the slowest in {:.1?}",
        report.crunched.primes,
        report.crunched.thread,
        report.pings_answered,
        report.ping_thread,
        report.slowest_ping.unwrap_or_default()
    );
    assert_ne!(report.crunched.thread, report.ping_thread);
    assert!(
        report.pings_answered >= 10,
        "the pinger kept answering while the isolated endpoint crunched"
    );

    let shared: CrunchGatewayClient = client.connect(address, "shared-cruncher").await?;
    let report = ping_while_crunching(&shared, &pinger, CRUNCH, PING_INTERVAL).await?;
    println!(
        "not isolated: found {} primes on thread {:?}; meanwhile {} ping(s) answered",
        report.crunched.primes, report.crunched.thread, report.pings_answered
    );
    assert!(
        report.pings_answered <= 2,
        "the crunch held the only thread, so the pinger could hardly answer"
    );

    client.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}
