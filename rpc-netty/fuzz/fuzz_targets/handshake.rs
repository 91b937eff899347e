//! The handshake state machines and the encrypted record path, without sockets: whatever a
//! peer sends, a machine answers with frames or a refusal and never panics, and an opener
//! turns bytes that are not records sealed by the peer into an error, never into frames.
//!
//! The first byte picks the scenario; the rest is the peer's bytes.
//!
//! Run with `cargo fuzz run handshake` from `rpc-netty/`.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rpc_netty::Secret;
use rpc_netty::channel::WireCodec;
use rpc_netty::frame::DEFAULT_MAX_FRAME;
use rpc_netty::handshake::{Channel, ClientHandshake, ClientStep, ServerHandshake, ServerStep};
use rpc_netty::protocol::HANDSHAKE_MAX_FRAME;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&scenario, rest)) = data.split_first() else {
        return;
    };
    match scenario % 4 {
        0 | 1 => server(rest, scenario % 4 == 1),
        2 => client(rest),
        _ => sealed(rest),
    }
});

/// Frames decoded from `bytes` with the pre-handshake limit.
fn frames(bytes: &[u8]) -> Vec<rpc_netty::frame::Frame> {
    let mut codec = WireCodec::new(HANDSHAKE_MAX_FRAME);
    let mut buffer = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = codec.decode(&mut buffer) {
        frames.push(frame);
    }
    frames
}

fn server(bytes: &[u8], with_secret: bool) {
    let (mut machine, _hello) = ServerHandshake::new(with_secret.then(|| Secret::new("fuzz")));
    for frame in frames(bytes) {
        match machine.receive(frame) {
            Ok(ServerStep::Continue) => {}
            Ok(ServerStep::Done(..)) | Err(_) => return,
        }
    }
}

fn client(bytes: &[u8]) {
    let peer = ([127, 0, 0, 1], 1).into();
    let (mut machine, _hello) = ClientHandshake::new(peer, Some(Secret::new("fuzz")));
    for frame in frames(bytes) {
        match machine.receive(frame) {
            Ok(ClientStep::Send(_)) => {}
            Ok(ClientStep::Done(_)) | Err(_) => return,
        }
    }
}

/// A real key exchange, then `bytes` fed to the server as if they were the client's records:
/// nothing the fuzzer makes can open.
fn sealed(bytes: &[u8]) {
    let secret = || Some(Secret::new("fuzz"));
    let (mut client, client_hello) = ClientHandshake::new(([127, 0, 0, 1], 1).into(), secret());
    let (mut server, server_hello) = ServerHandshake::new(secret());
    let Ok(ServerStep::Continue) = server.receive(client_hello) else {
        panic!("the server accepts the client's hello");
    };
    let Ok(ClientStep::Send(exchange)) = client.receive(server_hello) else {
        panic!("the client answers the server's hello");
    };
    let Ok(ServerStep::Done(_, Channel::Sealed(keys))) = server.receive(exchange) else {
        panic!("the key exchange completes");
    };
    let (_, opener) = keys.split();
    let mut codec = WireCodec::new(HANDSHAKE_MAX_FRAME);
    codec.established(DEFAULT_MAX_FRAME, Some(opener));
    let mut buffer = BytesMut::from(bytes);
    if let Ok(Some(frame)) = codec.decode(&mut buffer) {
        panic!("forged bytes opened as a frame: {frame:?}");
    }
}
