//! The bulk lane: `bytes::Bytes` arguments, replies and stream items. In process they move
//! (the very buffer arrives, no copy); with forced serialization and over TCP they arrive
//! intact, large ones decoded as slices of the frame they came in (`rpc-core`'s unit tests
//! check that no copy is made there).

mod common;

use bytes::Bytes;
use common::{Harness, Mode};
use futures::StreamExt;
use rpc_core::{RpcEndpoint, RpcStream, rpc_gateway};

#[rpc_gateway]
pub trait Blocks {
    /// Keeps `block` and gives it back.
    async fn keep(&mut self, block: Bytes) -> Bytes;
    /// The kept block, `times` times.
    fn replay(&mut self, times: u32) -> RpcStream<Bytes>;
    /// `Option<Bytes>` and `Result<Bytes, _>` take the same lane.
    async fn maybe(&mut self, block: Option<Bytes>) -> Result<Bytes, String>;
}

#[derive(Default)]
struct Store {
    kept: Bytes,
}

impl RpcEndpoint for Store {
    rpc_core::serves!(Blocks);
}

impl Blocks for Store {
    async fn keep(&mut self, block: Bytes) -> Bytes {
        self.kept = block.clone();
        block
    }

    fn replay(&mut self, times: u32) -> RpcStream<Bytes> {
        RpcStream::iter(std::iter::repeat_n(self.kept.clone(), times as usize))
    }

    async fn maybe(&mut self, block: Option<Bytes>) -> Result<Bytes, String> {
        block.ok_or_else(|| "no block".to_owned())
    }
}

fn block(size: usize) -> Bytes {
    Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

async fn bytes_arrive_intact_and_move_in_process(mode: Mode) {
    let harness = Harness::new(mode).await;
    harness
        .server
        .start_endpoint("store", Store::default())
        .await
        .unwrap();
    let store: BlocksClient = harness.gateway("store").await.unwrap();
    for size in [0, 10, 40_000, 1 << 20] {
        let sent = block(size);
        let back = store.keep(sent.clone()).await.unwrap();
        assert_eq!(back, sent);
        let replayed: Vec<Bytes> = store.replay(3).map(|b| b.unwrap()).collect().await;
        assert_eq!(replayed.len(), 3);
        assert!(replayed.iter().all(|b| *b == sent));
        if mode == Mode::InProcess && size > 0 {
            // Moved, not copied: the endpoint held the caller's buffer, and gave it back.
            assert_eq!(
                back.as_ptr(),
                sent.as_ptr(),
                "the reply is the argument's buffer"
            );
            assert!(replayed.iter().all(|b| b.as_ptr() == sent.as_ptr()));
        }
    }
    assert_eq!(
        store.maybe(Some(block(50_000))).await.unwrap(),
        Ok(block(50_000))
    );
    assert_eq!(store.maybe(None).await.unwrap(), Err("no block".to_owned()));
    harness.shutdown().await.unwrap();
}

in_every_mode!(bytes_arrive_intact_and_move_in_process);
