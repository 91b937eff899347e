//! Spark's classic Hello service: `say_hi`, `say_bye` and a one-way `heartbeat`.
//!
//! Run it with `cargo run --example hello`.

use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};
use serde::{Deserialize, Serialize};

/// Why the endpoint refuses to say goodbye.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ByeError {
    /// Nobody by this name was greeted.
    #[error("never said hi to {0}")]
    Stranger(String),
}

/// The gateway: what a client may ask of the Hello service.
#[rpc_gateway]
pub trait HelloGateway {
    /// Greets `name` and remembers it.
    async fn say_hi(&mut self, name: String) -> String;
    /// Says goodbye to someone greeted before.
    async fn say_bye(&mut self, name: String) -> Result<String, ByeError>;
    /// One-way liveness signal from an executor.
    fn heartbeat(&mut self, executor_id: String);
}

/// The endpoint: plain state, touched only on its main thread.
#[derive(Default)]
struct Hello {
    greeted: Vec<String>,
    heartbeats: u64,
}

impl RpcEndpoint for Hello {
    rpc_core::serves!(HelloGateway);

    async fn on_stop(&mut self) {
        println!(
            "hello endpoint stopping after {} heartbeats, {} still greeted",
            self.heartbeats,
            self.greeted.len()
        );
    }
}

impl HelloGateway for Hello {
    async fn say_hi(&mut self, name: String) -> String {
        self.greeted.push(name.clone());
        format!("hi, {name}")
    }

    async fn say_bye(&mut self, name: String) -> Result<String, ByeError> {
        match self.greeted.iter().position(|n| *n == name) {
            Some(i) => {
                self.greeted.remove(i);
                Ok(format!("bye, {name}"))
            }
            None => Err(ByeError::Stranger(name)),
        }
    }

    fn heartbeat(&mut self, executor_id: String) {
        self.heartbeats += 1;
        println!("heartbeat from {executor_id}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let service = RpcService::new();
    service
        .start_endpoint("hello-service", Hello::default())
        .await?;

    let hello: HelloGatewayClient = service.gateway("hello-service")?;
    println!("{}", hello.say_hi("neo".into()).await?);
    hello.heartbeat("exec-1".into())?;
    println!("{:?}", hello.say_bye("neo".into()).await?);
    println!("{:?}", hello.say_bye("smith".into()).await?);

    service.shutdown().await;
    Ok(())
}
