//! Gateways using every accepted form, compiled under the strictest lints a user might set:
//! `missing_docs`, `warnings` and clippy's `all` and `pedantic` groups as errors (clippy runs in
//! CI). Whatever the macro generates must pass them whenever the user's own items do.

#![deny(missing_docs, warnings, clippy::all, clippy::pedantic)]

use rpc_core::{Deferred, FencedEndpoint, FencingId, RpcEndpoint, rpc_gateway};
use serde::{Deserialize, Serialize};

/// A job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: u64,
}

/// A base gateway.
#[rpc_gateway(name = "lint.Base")]
pub trait Base {
    /// The base method.
    async fn base(&mut self) -> u32;
}

/// Every form.
#[rpc_gateway(client = "EverythingProxy")]
pub trait Everything: Base {
    /// An ask.
    async fn ask(&mut self, job: Job, tags: Vec<String>) -> Result<u64, String>;
    /// An ask with no value.
    async fn ack(&mut self);
    /// An ask on `&self`, spelled out.
    #[allow(clippy::needless_arbitrary_self_type)]
    async fn peek(self: &Self) -> u32;
    /// An ask on `&mut self`, spelled out.
    #[allow(clippy::needless_arbitrary_self_type)]
    async fn poke(self: &mut Self, n: u32) -> u32;
    /// A tell.
    fn tell(&mut self, job: Job);
    /// A deferred ask.
    fn later(&mut self, n: u32) -> Deferred<u32>;
    /// The old way.
    #[deprecated(note = "use `ask`")]
    async fn old(&mut self, n: u32) -> u32;
    /// Fifteen arguments.
    #[allow(clippy::too_many_arguments)]
    async fn wide(
        &mut self,
        a: u8,
        b: u8,
        c: u8,
        d: u8,
        e: u8,
        f: u8,
        g: u8,
        h: u8,
        i: u8,
        j: u8,
        k: u8,
        l: u8,
        m: u8,
        n: u8,
        o: u8,
    ) -> u8;
    /// An argument named as the user likes.
    #[allow(non_snake_case)]
    fn odd(&mut self, Key: String);
    /// Bytes in, bytes out.
    async fn bytes(&mut self, data: Vec<u8>, more: Option<Vec<u8>>) -> Result<Vec<u8>, String>;
    /// Bytes later.
    fn bytes_later(&mut self, data: Vec<u8>) -> Deferred<Option<Vec<u8>>>;
    /// Compiled out.
    #[cfg(any())]
    async fn never(&mut self, data: Vec<u8>) -> u32;
    /// Compiled in, with a compiled-out argument.
    #[cfg_attr(any(), deprecated)]
    async fn sometimes(&mut self, #[cfg(any())] never: Vec<u8>, always: u32) -> u32;
}

/// A fenced gateway.
#[rpc_gateway(fenced)]
pub trait Fenced {
    /// Only the leader answers.
    async fn lead(&mut self) -> bool;
}

/// An endpoint serving them all.
#[derive(Debug, Default)]
pub struct All;

impl RpcEndpoint for All {
    rpc_core::serves!(Everything, Fenced);
}

impl FencedEndpoint for All {
    type Token = FencingId;
}

#[allow(clippy::unused_async)]
impl Base for All {
    async fn base(&mut self) -> u32 {
        0
    }
}

// The user's own implementation: its choices, not generated code.
#[allow(deprecated, clippy::unused_async, clippy::too_many_arguments)]
impl Everything for All {
    async fn ask(&mut self, job: Job, _tags: Vec<String>) -> Result<u64, String> {
        Ok(job.id)
    }
    async fn ack(&mut self) {}
    async fn peek(&self) -> u32 {
        1
    }
    async fn poke(&mut self, n: u32) -> u32 {
        n
    }
    fn tell(&mut self, _job: Job) {}
    fn later(&mut self, n: u32) -> Deferred<u32> {
        Deferred::ready(n)
    }
    async fn old(&mut self, n: u32) -> u32 {
        n
    }
    async fn wide(
        &mut self,
        a: u8,
        _b: u8,
        _c: u8,
        _d: u8,
        _e: u8,
        _f: u8,
        _g: u8,
        _h: u8,
        _i: u8,
        _j: u8,
        _k: u8,
        _l: u8,
        _m: u8,
        _n: u8,
        o: u8,
    ) -> u8 {
        a.wrapping_add(o)
    }
    fn odd(&mut self, _key: String) {}
    async fn bytes(&mut self, data: Vec<u8>, more: Option<Vec<u8>>) -> Result<Vec<u8>, String> {
        Ok([data, more.unwrap_or_default()].concat())
    }
    fn bytes_later(&mut self, data: Vec<u8>) -> Deferred<Option<Vec<u8>>> {
        Deferred::ready(Some(data))
    }
    async fn sometimes(&mut self, always: u32) -> u32 {
        always
    }
}

#[allow(clippy::unused_async)]
impl Fenced for All {
    async fn lead(&mut self) -> bool {
        true
    }
}
