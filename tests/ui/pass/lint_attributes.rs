//! Lint levels on methods and arguments reach the generated client, so the user's `allow`
//! silences the lint there too.
#![deny(warnings, non_snake_case)]

use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Store {
    #[allow(non_snake_case)]
    async fn Get(&mut self, #[allow(non_snake_case)] Key: String) -> Option<String>;
    #[cfg_attr(all(), allow(non_snake_case))]
    fn Put(&mut self, #[cfg_attr(all(), allow(non_snake_case))] Value: String);
}

fn main() {}
