//! An endpoint is an ordinary value: its methods are tested by calling them, with no service,
//! no runtime glue and no network.

use rpc_core::{Deferred, RpcEndpoint, rpc_gateway};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum ByeError {
    Stranger(String),
}

#[rpc_gateway]
pub trait HelloGateway {
    async fn say_hi(&mut self, name: String) -> String;
    async fn say_bye(&mut self, name: String) -> Result<String, ByeError>;
    fn heartbeat(&mut self, executor_id: String);
    fn later(&mut self, n: u32) -> Deferred<u32>;
    /// A default body is allowed; it runs like any other method.
    async fn greeted(&mut self) -> usize {
        0
    }
}

#[derive(Default)]
struct Hello {
    greeted: Vec<String>,
    beats: Vec<String>,
}

impl RpcEndpoint for Hello {
    rpc_core::serves!(HelloGateway);
}

impl HelloGateway for Hello {
    async fn say_hi(&mut self, name: String) -> String {
        self.greeted.push(name.clone());
        format!("hi, {name}")
    }

    async fn say_bye(&mut self, name: String) -> Result<String, ByeError> {
        if self.greeted.contains(&name) {
            Ok(format!("bye, {name}"))
        } else {
            Err(ByeError::Stranger(name))
        }
    }

    fn heartbeat(&mut self, executor_id: String) {
        self.beats.push(executor_id);
    }

    fn later(&mut self, n: u32) -> Deferred<u32> {
        Deferred::ready(n * 2)
    }
}

#[tokio::test]
async fn methods_are_called_directly() {
    let mut hello = Hello::default();
    assert_eq!(hello.say_hi("neo".into()).await, "hi, neo");
    assert_eq!(hello.say_bye("neo".into()).await, Ok("bye, neo".into()));
    assert_eq!(
        hello.say_bye("smith".into()).await,
        Err(ByeError::Stranger("smith".into()))
    );
    hello.heartbeat("exec-1".into());
    assert_eq!(hello.beats, ["exec-1"]);
    assert_eq!(hello.later(21).await, 42);
    assert_eq!(hello.greeted().await, 0);
}
