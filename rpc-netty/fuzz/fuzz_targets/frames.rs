//! Everything a peer's bytes go through before reaching an endpoint: the frame decoder, the
//! hello and reject bodies, bind requests, wire errors, and invocation
//! decoding of a gateway with varied argument types.
//!
//! Run with `cargo fuzz run frames` from `rpc-netty/` (see `rpc-netty/fuzz/README.md`).

#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rpc_netty::frame::{Frame, FrameCodec};
use rpc_netty::protocol::{self, BindBody, WireError};
use tokio_util::codec::Decoder;

#[rpc_core::rpc_gateway]
pub trait Sample {
    async fn scalar(&mut self, x: u64, text: String) -> Vec<u8>;
    fn nested(&mut self, items: Vec<(u32, Option<String>)>);
    async fn map(&mut self, entries: BTreeMap<String, i64>) -> bool;
    async fn float(&mut self, value: f64, flag: bool, c: char) -> Result<u8, String>;
}

fuzz_target!(|data: &[u8]| {
    let mut codec = FrameCodec::new(64 * 1024);
    let mut buffer = BytesMut::from(data);
    loop {
        match codec.decode_eof(&mut buffer) {
            Ok(Some(frame)) => inspect(frame),
            Ok(None) | Err(_) => break,
        }
    }
});

fn inspect(frame: Frame) {
    let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
    let _ = protocol::parse_hello(&frame.body);
    let _ = protocol::parse_reject(&frame.body);
    let _ = postcard::from_bytes::<BindBody>(&frame.body);
    let _ = WireError::decode(&frame.body, peer);
    let _ = protocol::parse_deadline(&frame.body);
    if let Ok((_slot, _budget, payload)) = protocol::split_request(frame.body.clone()) {
        let _ = postcard::take_from_bytes::<SampleInvocation>(&payload);
    }
    if let Ok((_slot, payload)) = protocol::split_tell(frame.body) {
        let _ = postcard::take_from_bytes::<SampleInvocation>(&payload);
    }
}
