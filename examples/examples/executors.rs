//! Spark's executor registration across processes: a listening driver, executors that do
//! not listen.
//!
//! ```text
//! cargo run --example executors                          # a driver here, two executor processes
//! cargo run --example executors -- driver 127.0.0.1:7077 2 # a driver waiting for 2 executors
//! cargo run --example executors -- executor 127.0.0.1:7077 exec-1
//! ```
//!
//! Each executor connects to the driver and registers by sending a reference to its own
//! endpoint. The driver calls every executor back over the connection that executor opened
//! (the executors have no port), launching tasks whose results the executor streams back;
//! then it stops them.

use std::process::Stdio;

use rpc_examples::executors::{run_driver, run_executor};
use tokio::process::Command;

type Error = Box<dyn std::error::Error + Send + Sync>;

const TASKS_EACH: u64 = 1_000;

#[tokio::main]
async fn main() -> Result<(), Error> {
    rpc_examples::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => everything().await,
        ["driver", address, count] => {
            let driver = rpc_netty::bind(*address).await?;
            let results = run_driver(&driver, count.parse()?, TASKS_EACH).await?;
            println!("driver: {results} results in all");
            driver.shutdown().await?;
            Ok(())
        }
        ["executor", address, id] => Ok(run_executor(address, id).await?),
        _ => Err("usage: executors [driver ADDR COUNT | executor ADDR ID]".into()),
    }
}

/// A driver in this process and two executor processes (this program, as `executor`).
async fn everything() -> Result<(), Error> {
    let driver = rpc_netty::bind("127.0.0.1:0").await?;
    let address = driver.local_address()?.to_string();
    let mut children = Vec::new();
    for id in ["exec-1", "exec-2"] {
        children.push(
            Command::new(std::env::current_exe()?)
                .args(["executor", &address, id])
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    let results = run_driver(&driver, children.len(), TASKS_EACH).await?;
    for mut child in children {
        let status = child.wait().await?;
        if !status.success() {
            return Err(format!("an executor exited with {status}").into());
        }
    }
    assert_eq!(results as u64, 2 * TASKS_EACH);
    println!("driver: {results} results from 2 executor processes that do not listen");
    driver.shutdown().await?;
    Ok(())
}
