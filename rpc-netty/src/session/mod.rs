//! The rules of an established connection, as state machines without I/O.
//!
//! With [`handshake`](crate::handshake) (hello, version, key exchange) and
//! [`channel`](crate::channel) (the encrypted records), this is the connection core: frames
//! and time go in, events, frames to send and deadlines come out. The socket tasks in the
//! (private) `client` and `server` modules only move bytes, run timers and hand events to
//! endpoints; every rule a peer can test lives here once and is unit-tested (and fuzzed)
//! without sockets:
//!
//! - [`ClientSession`]: request ids, the calls awaiting replies (`max_in_flight`), the slot
//!   of each binding and slots whose bind was refused, what a server may send.
//! - [`ServerSession`]: the bind table (slot and name caps), what a client may send, where
//!   each call goes; [`Requests`]: the requests in flight and their controls (a request id
//!   may not be reused while in flight).
//! - [`Keepalive`]: pings, the keep-alive timeout and the idle close, the same on both sides.

mod client;
mod keepalive;
mod server;

pub use client::{ClientSession, Forgotten, Orphans, Received};
pub use keepalive::{Keepalive, Tick};
pub use server::{Event, Requests, ServerSession};

#[cfg(test)]
mod tests {
    //! Both sessions fed a long seeded stream of random frames: valid ones (binds, calls on
    //! bound and unbound slots, cancels, answers to real and unknown ids) mixed with
    //! arbitrary kinds and bodies. Neither panics, and each keeps its promises.

    use std::time::Duration;

    use bytes::Bytes;
    use rpc_core::transport::{Binding, ReplyTo};
    use tokio::time::Instant;

    use super::*;
    use crate::frame::{Frame, FrameKind};
    use crate::protocol;

    /// xorshift64*: a repeatable stream of numbers from a seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn bytes(&mut self) -> Vec<u8> {
            let len = self.below(24) as usize;
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// A frame as a peer might send it: often well-formed, sometimes not.
    fn frame(rng: &mut Rng) -> Frame {
        let id = rng.below(16);
        let slot = rng.below(8) as u32;
        let decoded = |frame: Frame| {
            // As the decoder hands it over: the slot inside the body.
            let mut body = Vec::new();
            if let Some(slot) = frame.slot {
                body.extend_from_slice(&slot.to_be_bytes());
            }
            body.extend_from_slice(&frame.body);
            Frame::new(frame.kind, frame.request_id, body)
        };
        match rng.below(17) {
            0..=2 => {
                let binding = Binding {
                    endpoint: ["e", "missing"][rng.below(2) as usize].to_owned(),
                    gateway: "G".to_owned(),
                    fingerprint: 1,
                    incarnation: None,
                    session: None,
                };
                protocol::bind(id, slot, &binding)
            }
            3..=5 => decoded(protocol::request(
                id,
                slot,
                rng.below(2000) as u32,
                &rng.bytes(),
            )),
            6 | 7 => decoded(protocol::tell(slot, Bytes::from(rng.bytes()))),
            8 => protocol::cancel(id),
            9 => protocol::deadline(id, rng.next() as u32),
            10 | 11 => protocol::failure(id, &protocol::WireError::UnknownSlot { slot }),
            12 | 13 => Frame::new(FrameKind::Response, id, rng.bytes()),
            14 => Frame::new(FrameKind::Ping, id, Vec::new()),
            15 => match rng.below(3) {
                // Stream frames: credit from a client, items and ends from a server.
                0 => protocol::stream_credit(id, rng.next() as u32),
                1 => protocol::stream_item(id, Bytes::from(rng.bytes())),
                _ => protocol::stream_end(id),
            },
            _ => {
                let kind = FrameKind::from_byte(rng.below(17) as u8).unwrap_or(FrameKind::Ping);
                Frame::new(kind, id, rng.bytes())
            }
        }
    }

    #[test]
    fn random_frames_never_panic_a_server_session_and_calls_reach_only_bound_slots() {
        let (mut asks, mut tells) = (0, 0);
        for seed in 1..=40u64 {
            let mut rng = Rng(seed);
            let mut session = ServerSession::<u32>::default();
            let mut requests = Requests::default();
            let mut bound = std::collections::HashSet::new();
            let now = Instant::now();
            for _ in 0..2000 {
                match session.receive(frame(&mut rng)) {
                    Ok(Event::Bind {
                        request_id,
                        slot,
                        binding,
                    }) => {
                        let outcome = if binding.endpoint == "e" {
                            bound.insert(slot);
                            Ok((slot, rpc_core::Incarnation::from_bytes([1; 16])))
                        } else {
                            bound.remove(&slot);
                            Err(protocol::WireError::EndpointNotFound {
                                endpoint: binding.endpoint,
                            })
                        };
                        session.bind(request_id, slot, outcome);
                    }
                    Ok(Event::Ask {
                        request_id, sink, ..
                    }) => {
                        assert!(bound.contains(sink), "an ask reached unbound slot {sink}");
                        asks += 1;
                        if requests.begin(request_id, None, now).is_err() {
                            // A reused id closes the connection: start a new one.
                            session = ServerSession::default();
                            requests = Requests::default();
                            bound.clear();
                        } else if rng.below(2) == 0 {
                            requests.finish(request_id);
                        }
                    }
                    Ok(Event::Tell { sink, .. }) => {
                        assert!(bound.contains(sink), "a tell reached unbound slot {sink}");
                        tells += 1;
                    }
                    Ok(Event::Cancel(id)) => requests.cancel(id),
                    Ok(Event::Deadline { request_id, budget }) => {
                        requests.extend(request_id, budget, now)
                    }
                    Ok(_) => {}
                    Err(_) => {
                        session = ServerSession::default();
                        requests = Requests::default();
                        bound.clear();
                    }
                }
            }
        }
        // The stream reached the interesting paths.
        assert!(asks > 100 && tells > 100, "{asks} asks, {tells} tells");
    }

    #[test]
    fn random_frames_never_panic_a_client_session_and_each_call_is_answered_at_most_once() {
        let mut replies = 0;
        for seed in 1..=40u64 {
            let mut rng = Rng(seed);
            let peer = ([127, 0, 0, 1], 1).into();
            let mut session = ClientSession::new(peer, 8);
            let mut receivers = Vec::new();
            for _ in 0..2000 {
                if rng.below(3) == 0 {
                    let (reply, receiver) = ReplyTo::channel();
                    if let Ok(id) = session.request_id(true) {
                        session.sent(id, Some(reply));
                        receivers.push(receiver);
                    }
                }
                match session.receive(frame(&mut rng)) {
                    // Sending twice on one reply cannot compile; a second answer to the same
                    // id must come back as late.
                    Ok(Received::Reply(reply, result)) => {
                        replies += 1;
                        reply.send(result);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let error = rpc_core::RpcError::Disconnected {
                            address: peer,
                            reason: "violation".to_owned(),
                        };
                        session.fail(&error).answer(&error);
                        // Every call was answered once, by a reply or by the failure.
                        for mut receiver in receivers.drain(..) {
                            assert!(receiver.try_recv().is_ok(), "a call left unanswered");
                        }
                        session = ClientSession::new(peer, 8);
                    }
                }
            }
            let error = rpc_core::RpcError::ServiceShutDown;
            session.fail(&error).answer(&error);
            for mut receiver in receivers {
                assert!(receiver.try_recv().is_ok(), "a call left unanswered");
            }
        }
        assert!(replies > 100, "{replies} replies");
    }

    #[test]
    fn keepalive_deadlines_only_move_forward() {
        let mut rng = Rng(7);
        let start = Instant::now();
        let ms = Duration::from_millis(1);
        let mut keepalive = Keepalive::new(start, 10 * ms, 50 * ms, Some(100 * ms));
        let mut now = start;
        for _ in 0..1000 {
            if rng.below(2) == 0 {
                keepalive.heard();
            }
            now = now.max(keepalive.deadline()) + ms * rng.below(5) as u32;
            let before = keepalive.deadline();
            if let Tick::Dead(_) | Tick::Idle(_) = keepalive.on_deadline(now, rng.below(4) == 0) {
                keepalive = Keepalive::new(now, 10 * ms, 50 * ms, Some(100 * ms));
            }
            assert!(keepalive.deadline() > before);
        }
    }
}
