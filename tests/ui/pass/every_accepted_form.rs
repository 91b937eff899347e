//! Every method form the macro accepts, in one gateway.

use rpc_core::{Deferred, RpcEndpoint, rpc_gateway};

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub id: u64,
}

#[rpc_gateway(name = "cluster.Base")]
pub trait Base: Send + Sync + 'static {
    async fn base(&mut self) -> u32;
}

#[rpc_gateway]
pub trait Everything: Base {
    /// An ask.
    async fn ask(&mut self, job: Job, tags: Vec<String>) -> Result<u64, String>;
    /// An ask with no value.
    async fn ack(&mut self);
    /// An ask on `&self`.
    async fn peek(&self) -> u32;
    /// A tell.
    fn tell(&mut self, job: Job);
    /// A deferred ask, sync and async.
    fn later(&mut self, n: u32) -> Deferred<u32>;
    async fn later_async(&mut self, n: u32) -> rpc_core::Deferred<u32>;
    /// A default body.
    async fn defaulted(&mut self, n: u32) -> u32 {
        n + 1
    }
    /// Owned data with a `'static` lifetime argument.
    async fn version(&mut self) -> std::borrow::Cow<'static, str>;
    /// The receivers spelled out.
    async fn typed_receiver(self: &mut Self, n: u32) -> u32;
    async fn typed_shared_receiver(self: &Self) -> u32;
}

struct All;

impl RpcEndpoint for All {
    rpc_core::serves!(Everything);
}

impl Base for All {
    async fn base(&mut self) -> u32 {
        0
    }
}

impl Everything for All {
    async fn ask(&mut self, job: Job, _tags: Vec<String>) -> Result<u64, String> {
        Ok(job.id)
    }
    async fn ack(&mut self) {}
    async fn peek(&self) -> u32 {
        1
    }
    fn tell(&mut self, _job: Job) {}
    fn later(&mut self, n: u32) -> Deferred<u32> {
        Deferred::ready(n)
    }
    async fn later_async(&mut self, n: u32) -> Deferred<u32> {
        Deferred::ready(n)
    }
    async fn version(&mut self) -> std::borrow::Cow<'static, str> {
        "1".into()
    }
    async fn typed_receiver(self: &mut Self, n: u32) -> u32 {
        n
    }
    async fn typed_shared_receiver(self: &Self) -> u32 {
        2
    }
}

fn main() {
    let _ = <EverythingClient as rpc_core::Gateway>::FINGERPRINT;
    let _ = <BaseClient as rpc_core::Gateway>::NAME;
}
