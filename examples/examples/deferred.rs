//! `Deferred` replies over loopback TCP: a job submission waits for a slot while the
//! dispatcher keeps answering, and completes when a task executor offers one.
//!
//! ```text
//! cargo run -p rpc-examples --example deferred
//! ```

use std::collections::BTreeMap;

use rpc_examples::deferred::{
    Dispatcher, DispatcherGatewayClient, ResourceManager, ResourceManagerGatewayClient,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rpc_examples::init_tracing();

    let server = rpc_netty::bind("127.0.0.1:0").await?;
    server
        .start_endpoint("resource-manager", ResourceManager::default())
        .await?;
    let resource_manager: ResourceManagerGatewayClient = server.gateway("resource-manager")?;
    server
        .start_endpoint("dispatcher", Dispatcher::new(resource_manager))
        .await?;
    let address = server.local_address()?;

    let client = rpc_netty::client();
    let dispatcher: DispatcherGatewayClient = client.connect(address, "dispatcher").await?;
    // The client also plays the task executor that offers slots.
    let resource_manager: ResourceManagerGatewayClient =
        client.connect(address, "resource-manager").await?;

    // No slot is free yet: the submission is queued now and waits for its reply.
    let submission = tokio::spawn(dispatcher.submit("job-a".into()));

    // Meanwhile the dispatcher answers other calls: its main thread is not held.
    let jobs = dispatcher.jobs().await?;
    println!("client: while job-a waits for a slot, the dispatcher answers: {jobs:?}");
    assert_eq!(jobs.pending, ["job-a"]);
    assert!(!submission.is_finished(), "job-a cannot have a slot yet");

    println!("client: a task executor offers slot 7");
    resource_manager.offer_slot(7)?;
    let slot = submission.await??;
    println!("client: job-a submitted, running on slot {slot:?}");
    assert_eq!(slot, Ok(7));

    // A slot offered before it is asked for is granted at once (`Deferred::ready`).
    resource_manager.offer_slot(8)?;
    let slot = dispatcher.submit("job-b".into()).await?;
    println!("client: job-b submitted, running on slot {slot:?}");
    assert_eq!(slot, Ok(8));

    let jobs = dispatcher.jobs().await?;
    println!("client: the dispatcher's jobs now: {jobs:?}");
    assert!(jobs.pending.is_empty());
    assert_eq!(
        jobs.running,
        BTreeMap::from([("job-a".to_owned(), 7), ("job-b".to_owned(), 8)])
    );

    client.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}
