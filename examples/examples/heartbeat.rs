//! Spark's HeartbeatReceiver pattern over loopback TCP: a driver endpoint, three executors
//! sending one-way heartbeats, and the driver expiring the one that goes silent first.
//!
//! ```text
//! cargo run --example heartbeat
//! ```

use std::time::Duration;

use rpc_examples::heartbeat::{HeartbeatGatewayClient, HeartbeatReceiver, run_executor};

const BEAT: Duration = Duration::from_millis(100);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rpc_examples::init_tracing();
    let driver_service = rpc_netty::bind("127.0.0.1:0").await?;
    let (expired, mut expirations) = tokio::sync::mpsc::unbounded_channel();
    let receiver = HeartbeatReceiver::new(5 * BEAT, BEAT).reporting_to(expired);
    driver_service
        .start_endpoint("heartbeat-receiver", receiver)
        .await?;
    let driver_address = driver_service.local_address()?;

    // Each executor is its own client service, with its own connection to the driver.
    let mut executors = Vec::new();
    for (id, beats) in [("exec-1", 20), ("exec-2", 5), ("exec-3", 20)] {
        let service = rpc_netty::client();
        let driver: HeartbeatGatewayClient = service
            .connect(driver_address, "heartbeat-receiver")
            .await?;
        let run = tokio::spawn(run_executor(driver, id.to_owned(), BEAT, beats));
        executors.push((service, run));
    }

    // exec-2 goes silent first and is expired while the others keep beating.
    let first = expirations.recv().await.ok_or("the driver stopped")?;
    let observer: HeartbeatGatewayClient = driver_service.gateway("heartbeat-receiver")?;
    println!(
        "first expired: {first}; still alive: {:?}",
        observer.live_executors().await?
    );

    for (service, run) in executors {
        run.await??;
        service.shutdown().await?;
    }
    // The rest go silent in turn and are expired too.
    for _ in 0..2 {
        expirations.recv().await.ok_or("the driver stopped")?;
    }
    println!("alive at the end: {:?}", observer.live_executors().await?);
    driver_service.shutdown().await?;
    Ok(())
}
