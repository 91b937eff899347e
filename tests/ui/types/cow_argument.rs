//! `Cow<str>` borrows with an elided lifetime: the error says `String` (not to make the trait
//! generic, which a gateway cannot be).
use std::borrow::Cow;

use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Store {
    async fn put(&mut self, key: Cow<str>) -> u32;
}

fn main() {}
