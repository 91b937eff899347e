//! `Rc` is not `Send`: the error says to send the value, or an `Arc`.
use std::rc::Rc;

use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Store {
    async fn put(&mut self, value: Rc<String>) -> u32;
}

fn main() {}
