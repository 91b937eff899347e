//! `Vec<u8>` in every position a gateway method has (arguments, replies, tells, `Deferred`,
//! inside `Option` and `Result`) arrives intact, in process, with forced serialization and over
//! TCP. The macro has these travel as one byte string; `rpc-core`'s unit tests check that those
//! are the very bytes serde's own encoding of a `Vec<u8>` gives.

mod common;

use common::{Harness, Mode, bounded};
use rpc_core::{Deferred, RpcEndpoint, rpc_gateway};
use tokio::sync::mpsc;

/// Written as an alias, `Vec<u8>` takes serde's element-by-element path: slower, same bytes.
pub type Blob = Vec<u8>;

#[rpc_gateway]
pub trait Bytes {
    async fn echo(&mut self, data: Vec<u8>) -> Vec<u8>;
    async fn maybe(&mut self, data: Option<Vec<u8>>) -> Option<Vec<u8>>;
    async fn checked(&mut self, data: Vec<u8>) -> Result<Vec<u8>, String>;
    async fn nested(&mut self, data: Result<Option<Vec<u8>>, u32>) -> Result<Option<Vec<u8>>, u32>;
    async fn spelled_out(&mut self, data: std::vec::Vec<u8>) -> ::std::vec::Vec<u8>;
    async fn aliased(&mut self, data: Blob) -> Blob;
    async fn several(&mut self, a: Vec<u8>, n: u32, b: Vec<u8>) -> (usize, u32, usize);
    fn later(&mut self, data: Vec<u8>) -> Deferred<Vec<u8>>;
    fn store(&mut self, data: Vec<u8>);
}

struct Mirror {
    stored: mpsc::UnboundedSender<Vec<u8>>,
}

impl RpcEndpoint for Mirror {
    rpc_core::serves!(Bytes);
}

impl Bytes for Mirror {
    async fn echo(&mut self, data: Vec<u8>) -> Vec<u8> {
        data
    }
    async fn maybe(&mut self, data: Option<Vec<u8>>) -> Option<Vec<u8>> {
        data
    }
    async fn checked(&mut self, data: Vec<u8>) -> Result<Vec<u8>, String> {
        if data.is_empty() {
            Err("empty".to_owned())
        } else {
            Ok(data)
        }
    }
    async fn nested(&mut self, data: Result<Option<Vec<u8>>, u32>) -> Result<Option<Vec<u8>>, u32> {
        data
    }
    async fn spelled_out(&mut self, data: std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
        data
    }
    async fn aliased(&mut self, data: Blob) -> Blob {
        data
    }
    async fn several(&mut self, a: Vec<u8>, n: u32, b: Vec<u8>) -> (usize, u32, usize) {
        (a.len(), n, b.len())
    }
    fn later(&mut self, data: Vec<u8>) -> Deferred<Vec<u8>> {
        Deferred::new(async move { data })
    }
    fn store(&mut self, data: Vec<u8>) {
        let _ = self.stored.send(data);
    }
}

/// Every byte value, in a length that is not a round number.
fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

async fn round_trips(mode: Mode) {
    let harness = Harness::new(mode).await;
    let (stored, mut received) = mpsc::unbounded_channel();
    harness
        .server
        .start_endpoint("mirror", Mirror { stored })
        .await
        .expect("start");
    let bytes: BytesClient = harness.gateway("mirror").await.expect("connect");
    let big = sample(3 * 1024 * 1024 + 17);
    let small = sample(300);

    assert_eq!(bytes.echo(big.clone()).await.expect("echo"), big);
    assert_eq!(
        bytes.echo(Vec::new()).await.expect("echo empty"),
        Vec::<u8>::new()
    );
    assert_eq!(
        bytes.maybe(Some(small.clone())).await.expect("some"),
        Some(small.clone())
    );
    assert_eq!(
        bytes.maybe(Some(Vec::new())).await.expect("some empty"),
        Some(Vec::new())
    );
    assert_eq!(bytes.maybe(None).await.expect("none"), None);
    assert_eq!(
        bytes.checked(small.clone()).await.expect("ok"),
        Ok(small.clone())
    );
    assert_eq!(
        bytes.checked(Vec::new()).await.expect("err"),
        Err("empty".to_owned())
    );
    for value in [Ok(Some(small.clone())), Ok(None), Err(9)] {
        assert_eq!(bytes.nested(value.clone()).await.expect("nested"), value);
    }
    assert_eq!(
        bytes.spelled_out(small.clone()).await.expect("spelled out"),
        small
    );
    assert_eq!(bytes.aliased(small.clone()).await.expect("aliased"), small);
    assert_eq!(
        bytes
            .several(small.clone(), 5, big.clone())
            .await
            .expect("several"),
        (small.len(), 5, big.len())
    );
    assert_eq!(bytes.later(big.clone()).await.expect("deferred"), big);
    bytes.store(small.clone()).expect("tell");
    assert_eq!(received.recv().await, Some(small));
    harness.shutdown().await.unwrap();
}

#[tokio::test]
async fn in_process() {
    bounded(round_trips(Mode::InProcess)).await;
}

#[tokio::test]
async fn serialized() {
    bounded(round_trips(Mode::Serialized)).await;
}

#[tokio::test]
async fn over_tcp() {
    bounded(round_trips(Mode::Tcp)).await;
}
