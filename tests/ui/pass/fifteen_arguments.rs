//! Fifteen arguments: the generated client method allows `clippy::too_many_arguments` itself.
#![deny(warnings)]

use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};

#[rpc_gateway]
pub trait Wide {
    #[allow(clippy::too_many_arguments)]
    async fn sum(
        &mut self,
        a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8,
        i: u8, j: u8, k: u8, l: u8, m: u8, n: u8, o: u8,
    ) -> u32;
}

struct Adder;

impl RpcEndpoint for Adder {
    rpc_core::serves!(Wide);
}

impl Wide for Adder {
    async fn sum(
        &mut self,
        a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8,
        i: u8, j: u8, k: u8, l: u8, m: u8, n: u8, o: u8,
    ) -> u32 {
        [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o].iter().map(|&x| u32::from(x)).sum()
    }
}

#[tokio::main]
async fn main() {
    let service = RpcService::builder().force_serialization(true).build();
    service.start_endpoint("wide", Adder).await.expect("start");
    let wide: WideClient = service.gateway("wide").expect("gateway");
    let total = wide.sum(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15).await.expect("sum");
    assert_eq!(total, 120);
}
