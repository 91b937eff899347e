//! `Arc<T>` (sent as the value) and `Vec<u8>` in every position are accepted.
use std::sync::Arc;

use rpc_core::{Deferred, rpc_gateway};

#[rpc_gateway]
pub trait Blobs {
    async fn put(&mut self, name: Arc<str>, data: Vec<u8>) -> Option<Vec<u8>>;
    async fn get(&mut self, name: Arc<String>) -> Result<Vec<u8>, String>;
    fn later(&mut self) -> Deferred<Vec<u8>>;
    fn drop_all(&mut self, names: Vec<Vec<u8>>);
}

fn main() {}
