//! Spark's classic Hello service: `say_hi`, `say_bye` and a one-way `heartbeat`.

use rpc_core::{RpcEndpoint, rpc_gateway};
use serde::{Deserialize, Serialize};

/// Why the endpoint refuses to say goodbye.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum ByeError {
    /// Nobody by this name was greeted.
    #[error("never said hi to {0}")]
    Stranger(String),
}

/// What a client may ask of the Hello service.
#[rpc_gateway]
pub trait HelloGateway {
    /// Greets `name` and remembers it.
    async fn say_hi(&mut self, name: String) -> String;
    /// Says goodbye to someone greeted before; a domain error otherwise.
    async fn say_bye(&mut self, name: String) -> Result<String, ByeError>;
    /// One-way liveness signal from an executor.
    fn heartbeat(&mut self, executor_id: String);
}

/// The endpoint: plain state, touched only on its main thread.
#[derive(Debug, Default)]
pub struct Hello {
    /// Names greeted and not yet said goodbye to.
    pub greeted: Vec<String>,
    /// Heartbeats received.
    pub heartbeats: u64,
}

impl RpcEndpoint for Hello {
    rpc_core::serves!(HelloGateway);

    async fn on_stop(&mut self) -> Result<(), rpc_core::BoxError> {
        println!(
            "hello endpoint stopping after {} heartbeat(s), {} still greeted",
            self.heartbeats,
            self.greeted.len()
        );
        Ok(())
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

/// What the example's client does: greet, beat, say goodbye twice (once to a stranger),
/// printing each reply.
pub async fn run_client(hello: &HelloGatewayClient) -> Result<(), rpc_core::RpcError> {
    println!("{}", hello.say_hi("neo".into()).await?);
    hello.heartbeat("exec-1".into())?;
    match hello.say_bye("neo".into()).await? {
        Ok(bye) => println!("{bye}"),
        Err(refused) => println!("refused: {refused}"),
    }
    match hello.say_bye("smith".into()).await? {
        Ok(bye) => println!("{bye}"),
        Err(refused) => println!("refused: {refused}"),
    }
    Ok(())
}
