//! The harness every gateway-semantics test runs on, so that one test body is checked in each
//! mode: in process, in process with forced serialization (and, with the transport, over TCP).

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use rpc_core::{Gateway, RpcError, RpcService, RpcServiceBuilder};

/// How the test reaches its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Gateways from the same service: values move, nothing is encoded.
    InProcess,
    /// Same, but the service forces every invocation and reply through postcard.
    Serialized,
}

/// Where endpoints run and how the test gets gateways to them.
pub struct Harness {
    /// The service running the endpoints under test.
    pub server: RpcService,
    pub mode: Mode,
}

impl Harness {
    pub async fn new(mode: Mode) -> Harness {
        Harness::with(mode, RpcService::builder()).await
    }

    pub async fn with(mode: Mode, builder: RpcServiceBuilder) -> Harness {
        let builder = match mode {
            Mode::InProcess => builder,
            Mode::Serialized => builder.force_serialization(true),
        };
        Harness {
            server: builder.build(),
            mode,
        }
    }

    /// A proxy to endpoint `name`, reached the way this mode reaches it.
    pub async fn gateway<G: Gateway>(&self, name: &str) -> Result<G, RpcError> {
        self.server.gateway(name)
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Every test is bounded: a hang fails instead of blocking the suite.
pub async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test did not finish within 60 s")
}

/// Instantiates each listed `async fn(Mode)` test once per mode.
#[macro_export]
macro_rules! in_every_mode {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn in_process() {
                common::bounded(super::$test(common::Mode::InProcess)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn serialized() {
                common::bounded(super::$test(common::Mode::Serialized)).await
            }
        }
    )*};
}
