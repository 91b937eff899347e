//! An established connection's rules, without sockets: the peer's bytes go through the frame
//! decoder into the server's session (bind table, requests in flight) or the client's (calls
//! awaiting replies). Whatever arrives, a session answers with an event or a violation and
//! never panics; a call reaches only a slot whose bind succeeded; every call a client made is
//! answered exactly once, by a reply or by the connection's failure.
//!
//! The first byte picks the side; the rest is the peer's bytes.
//!
//! Run with `cargo fuzz run session` from `rpc-netty/`.

#![no_main]

use std::collections::HashSet;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rpc_core::RpcError;
use rpc_core::transport::ReplyTo;
use rpc_netty::frame::{Frame, FrameCodec};
use rpc_netty::protocol::WireError;
use rpc_netty::session::{ClientSession, Event, Received, Requests, ServerSession};
use tokio::time::Instant;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&side, rest)) = data.split_first() else {
        return;
    };
    if side % 2 == 0 {
        server(rest);
    } else {
        client(rest);
    }
});

/// The frames in `bytes`, up to the first that does not decode.
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut codec = FrameCodec::new(64 * 1024);
    let mut buffer = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = codec.decode(&mut buffer) {
        frames.push(frame);
    }
    frames
}

fn server(bytes: &[u8]) {
    let mut session = ServerSession::<u32>::default();
    let mut requests = Requests::default();
    let mut bound = HashSet::new();
    let now = Instant::now();
    for frame in frames(bytes) {
        let event = match session.receive(frame) {
            Ok(event) => event,
            Err(_) => return, // a violation closes the connection
        };
        match event {
            Event::Bind {
                request_id,
                slot,
                binding,
            } => {
                // Endpoints whose name starts with 'e' exist.
                let outcome = if binding.endpoint.starts_with('e') {
                    bound.insert(slot);
                    Ok((slot, rpc_core::Incarnation::from_bytes([1; 16])))
                } else {
                    bound.remove(&slot);
                    Err(WireError::EndpointNotFound {
                        endpoint: binding.endpoint,
                    })
                };
                session.bind(request_id, slot, outcome);
            }
            Event::Ask {
                request_id,
                sink,
                budget,
                ..
            } => {
                assert!(bound.contains(sink), "an ask reached unbound slot {sink}");
                if requests.begin(request_id, budget, now).is_err() {
                    return;
                }
            }
            Event::Tell { sink, .. } => {
                assert!(bound.contains(sink), "a tell reached unbound slot {sink}");
            }
            Event::Cancel(request_id) => {
                requests.cancel(request_id);
                requests.finish(request_id);
            }
            Event::Deadline { request_id, budget } => requests.extend(request_id, budget, now),
            _ => {}
        }
    }
}

fn client(bytes: &[u8]) {
    let peer = ([127, 0, 0, 1], 1).into();
    let mut session = ClientSession::new(peer, 8);
    let mut receivers = Vec::new();
    for _ in 0..8 {
        let (reply, receiver) = ReplyTo::channel();
        let id = session.request_id(true).expect("room for 8 calls");
        session.sent(id, Some(reply));
        receivers.push(receiver);
    }
    for frame in frames(bytes) {
        match session.receive(frame) {
            Ok(Received::Reply(reply, result)) => reply.send(result),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let error = RpcError::ServiceShutDown;
    session.fail(&error).answer(&error);
    for mut receiver in receivers {
        assert!(receiver.try_recv().is_ok(), "a call left unanswered");
    }
}
