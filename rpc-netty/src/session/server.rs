//! The server's side of an established connection: the bind table and what a client may
//! send ([`ServerSession`]), and the requests in flight with their controls ([`Requests`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::Incarnation;
use rpc_core::transport::{Binding, CallControl};
use tokio::time::Instant;

use crate::frame::{Frame, FrameKind};
use crate::ids::IdMap;
use crate::protocol::{self, BindBody, MAX_NAME_LEN, MAX_SLOTS, WireError};

/// What a frame from the client means, for the driver to carry out. `S` is what a bound slot
/// leads to (the endpoint's inbound sink).
#[derive(Debug)]
pub enum Event<'a, S> {
    /// Bind `slot` to `binding`: resolve it, then record the outcome with
    /// [`ServerSession::bind`], which gives the answer to send.
    Bind {
        /// The bind's request id.
        request_id: u64,
        /// The client-chosen slot.
        slot: u32,
        /// What to bind it to.
        binding: Binding,
    },
    /// An ask on a bound slot: register it in [`Requests`] and hand `payload` to `sink`.
    Ask {
        /// The request id its answer carries.
        request_id: u64,
        /// Where it goes.
        sink: &'a S,
        /// How long the caller waits, if it set a limit.
        budget: Option<Duration>,
        /// The encoded invocation.
        payload: Bytes,
    },
    /// A tell on a bound slot.
    Tell {
        /// Where it goes.
        sink: &'a S,
        /// The encoded invocation.
        payload: Bytes,
    },
    /// A tell on a slot that is not bound (or whose bind failed): dropped, with a log line.
    Unroutable {
        /// The slot.
        slot: u32,
    },
    /// The client cancelled request `request_id`.
    Cancel(u64),
    /// The client of request `request_id` now waits `budget` from now.
    Deadline {
        /// The request.
        request_id: u64,
        /// The new time budget; `None`: no limit.
        budget: Option<Duration>,
    },
    /// The consumer of stream `request_id` grants its producer `bytes` more.
    Credit {
        /// The stream's request.
        request_id: u64,
        /// How many more bytes of items may be sent.
        bytes: u32,
    },
    /// Send this frame back at once: a `Pong`, or the failure of an ask on a slot that is not
    /// bound.
    Answer(Frame),
    /// Nothing to do (a `Pong`).
    Nothing,
}

/// One inbound connection's bind table: what each client-chosen slot is bound to, or why its
/// bind failed. A client may bind at most [`MAX_SLOTS`] slots, with names of at most
/// [`MAX_NAME_LEN`] bytes.
#[derive(Debug)]
pub struct ServerSession<S> {
    slots: IdMap<u32, Result<S, WireError>>,
    /// A bind or call arrived since [`ServerSession::take_used`] last looked.
    used: bool,
}

impl<S> Default for ServerSession<S> {
    fn default() -> Self {
        ServerSession {
            slots: IdMap::default(),
            used: false,
        }
    }
}

impl<S> ServerSession<S> {
    /// What a frame from the client means. An error is a protocol violation: the driver
    /// closes the connection with it.
    pub fn receive(&mut self, frame: Frame) -> Result<Event<'_, S>, String> {
        if matches!(
            frame.kind,
            FrameKind::Bind | FrameKind::Request | FrameKind::Tell
        ) {
            self.used = true;
        }
        Ok(match frame.kind {
            FrameKind::Bind => {
                let body: BindBody = postcard::from_bytes(&frame.body)
                    .map_err(|e| format!("undecodable bind: {e}"))?;
                if body.endpoint.len() > MAX_NAME_LEN || body.gateway.len() > MAX_NAME_LEN {
                    return Err(format!(
                        "a bind names an endpoint or gateway longer than {MAX_NAME_LEN} bytes"
                    ));
                }
                if self.slots.len() >= MAX_SLOTS && !self.slots.contains_key(&body.slot) {
                    return Err(format!(
                        "more than {MAX_SLOTS} slots bound on one connection"
                    ));
                }
                Event::Bind {
                    request_id: frame.request_id,
                    slot: body.slot,
                    binding: body.binding(),
                }
            }
            FrameKind::Request => {
                let (slot, budget, payload) = protocol::split_request(frame.body)?;
                match self.slots.get(&slot) {
                    Some(Ok(sink)) => Event::Ask {
                        request_id: frame.request_id,
                        sink,
                        budget,
                        payload,
                    },
                    Some(Err(error)) => Event::Answer(protocol::failure(frame.request_id, error)),
                    None => Event::Answer(protocol::failure(
                        frame.request_id,
                        &WireError::UnknownSlot { slot },
                    )),
                }
            }
            FrameKind::Tell => {
                let (slot, payload) = protocol::split_tell(frame.body)?;
                match self.slots.get(&slot) {
                    Some(Ok(sink)) => Event::Tell { sink, payload },
                    _ => Event::Unroutable { slot },
                }
            }
            FrameKind::Cancel => Event::Cancel(frame.request_id),
            FrameKind::Deadline => Event::Deadline {
                request_id: frame.request_id,
                budget: protocol::parse_deadline(&frame.body)?,
            },
            FrameKind::Unbind => {
                // Calls already queued on the slot hold its sink; later ones find no slot.
                self.slots.remove(&protocol::parse_unbind(&frame.body)?);
                Event::Nothing
            }
            FrameKind::StreamCredit => Event::Credit {
                request_id: frame.request_id,
                bytes: protocol::parse_credit(&frame.body)?,
            },
            FrameKind::Ping => {
                Event::Answer(Frame::new(FrameKind::Pong, frame.request_id, Vec::new()))
            }
            FrameKind::Pong => Event::Nothing,
            other => return Err(format!("a client may not send {other:?} frames")),
        })
    }

    /// Records how the bind of `slot` (request `request_id`) turned out, with the endpoint
    /// incarnation it reached, and gives the answer to send. Calls on a slot whose bind failed
    /// are answered with the bind's error.
    pub fn bind(
        &mut self,
        request_id: u64,
        slot: u32,
        bound: Result<(S, Incarnation), WireError>,
    ) -> Frame {
        let (answer, bound) = match bound {
            Ok((sink, incarnation)) => (protocol::bound(request_id, incarnation), Ok(sink)),
            Err(error) => (protocol::failure(request_id, &error), Err(error)),
        };
        self.slots.insert(slot, bound);
        answer
    }

    /// Whether a bind or call arrived since the last look. For the idle close.
    pub fn take_used(&mut self) -> bool {
        std::mem::take(&mut self.used)
    }
}

/// The requests of one connection that endpoints have not answered yet, by request id, with
/// their controls: how a `Cancel` or `Deadline` frame reaches them.
#[derive(Debug, Default)]
pub struct Requests {
    calls: IdMap<u64, Arc<CallControl>>,
}

impl Requests {
    /// Request `request_id` arrived at `now`; its caller waits `budget`. A request id that is
    /// still in flight is a protocol violation (the client would not know which answer is
    /// which, and a cancel would reach the wrong call).
    pub fn begin(
        &mut self,
        request_id: u64,
        budget: Option<Duration>,
        now: Instant,
    ) -> Result<Arc<CallControl>, String> {
        if self.calls.contains_key(&request_id) {
            return Err(format!("request id {request_id} reused while in flight"));
        }
        // The caller's deadline, on this side's clock.
        let control = CallControl::new(budget.and_then(|budget| now.checked_add(budget)));
        control.set_request_id(request_id);
        self.calls.insert(request_id, Arc::clone(&control));
        Ok(control)
    }

    /// The client cancelled request `request_id`: it is skipped if still queued, dropped if
    /// a `Deferred` is finishing it, and visible to a running handler. An unknown id (already
    /// answered) is ignored.
    pub fn cancel(&self, request_id: u64) {
        if let Some(control) = self.calls.get(&request_id) {
            control.cancel();
        }
    }

    /// The control of request `request_id`, if it is in flight.
    pub fn control(&self, request_id: u64) -> Option<&Arc<CallControl>> {
        self.calls.get(&request_id)
    }

    /// The client of request `request_id` now waits `budget` from `now`.
    pub fn extend(&self, request_id: u64, budget: Option<Duration>, now: Instant) {
        if let Some(control) = self.calls.get(&request_id) {
            control.set_deadline(budget.and_then(|budget| now.checked_add(budget)));
        }
    }

    /// Request `request_id` leaves the table; whether its caller still wants an answer (an
    /// unknown id: no).
    pub fn finish(&mut self, request_id: u64) -> bool {
        self.calls
            .remove(&request_id)
            .is_some_and(|control| !control.is_cancelled())
    }

    /// The connection has ended: every request still in flight leaves the table, for the
    /// driver to cancel.
    pub fn drain(&mut self) -> Vec<Arc<CallControl>> {
        std::mem::take(&mut self.calls).into_values().collect()
    }

    /// How many requests are in flight.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_frame(request_id: u64, slot: u32, endpoint: &str) -> Frame {
        let binding = Binding {
            endpoint: endpoint.to_owned(),
            gateway: "G".to_owned(),
            fingerprint: 1,
            incarnation: None,
            session: None,
        };
        protocol::bind(request_id, slot, &binding)
    }

    fn incarnation() -> Incarnation {
        Incarnation::from_bytes([7; 16])
    }

    /// `frame` as the peer's decoder sees it: the slot in the body.
    fn decoded(frame: Frame) -> Frame {
        use tokio_util::codec::{Decoder, Encoder};
        let mut codec = crate::frame::FrameCodec::new(1 << 20);
        let mut bytes = bytes::BytesMut::new();
        codec.encode(frame, &mut bytes).expect("encodes");
        codec.decode(&mut bytes).expect("decodes").expect("a frame")
    }

    fn request(request_id: u64, slot: u32, payload: &[u8]) -> Frame {
        decoded(protocol::request(request_id, slot, 500, payload))
    }

    #[test]
    fn calls_reach_the_sink_of_their_slot_and_unbound_slots_are_answered() {
        let mut session = ServerSession::<&str>::default();
        let Ok(Event::Bind {
            request_id: 1,
            slot: 3,
            binding,
        }) = session.receive(bind_frame(1, 3, "e"))
        else {
            panic!("a bind");
        };
        assert_eq!(binding.endpoint, "e");
        let answer = session.bind(1, 3, Ok(("sink-e", incarnation())));
        assert_eq!((answer.kind, answer.request_id), (FrameKind::Bound, 1));
        match session.receive(request(2, 3, b"abc")) {
            Ok(Event::Ask {
                request_id: 2,
                sink: &"sink-e",
                budget: Some(budget),
                payload,
            }) => {
                assert_eq!(budget, Duration::from_millis(500));
                assert_eq!(&payload[..], b"abc");
            }
            other => panic!("an ask to sink-e, got {other:?}"),
        }
        let Ok(Event::Answer(failure)) = session.receive(request(4, 9, b"x")) else {
            panic!("an answer");
        };
        assert_eq!((failure.kind, failure.request_id), (FrameKind::Failure, 4));
        let tell = decoded(protocol::tell(9, Bytes::from_static(b"x")));
        assert!(matches!(
            session.receive(tell),
            Ok(Event::Unroutable { slot: 9 })
        ));
    }

    #[test]
    fn calls_on_a_refused_slot_get_the_binds_error() {
        let mut session = ServerSession::<()>::default();
        let _ = session.receive(bind_frame(1, 3, "missing"));
        let refusal = WireError::EndpointNotFound {
            endpoint: "missing".to_owned(),
        };
        let answer = session.bind(1, 3, Err(refusal.clone()));
        assert_eq!(answer.kind, FrameKind::Failure);
        let Ok(Event::Answer(failure)) = session.receive(request(2, 3, b"")) else {
            panic!("an answer");
        };
        let error: WireError = postcard::from_bytes(&failure.body).expect("a wire error");
        assert_eq!(error, refusal);
    }

    #[test]
    fn long_names_and_too_many_slots_close_the_connection() {
        let mut session = ServerSession::<()>::default();
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(session.receive(bind_frame(1, 1, &long)).is_err());
        for slot in 0..MAX_SLOTS as u32 {
            let _ = session.receive(bind_frame(1, slot, "e"));
            session.bind(1, slot, Ok(((), incarnation())));
        }
        // Rebinding a slot it has is allowed; a new one is not.
        assert!(session.receive(bind_frame(1, 0, "e")).is_ok());
        let refused = session.receive(bind_frame(1, MAX_SLOTS as u32, "e"));
        assert!(
            matches!(&refused, Err(reason) if reason.contains("slots")),
            "{refused:?}"
        );
        // A slot the client unbinds makes room, and calls on it find no slot.
        let mut session = ServerSession::<()>::default();
        for slot in 0..MAX_SLOTS as u32 {
            let _ = session.receive(bind_frame(1, slot, "e"));
            session.bind(1, slot, Ok(((), incarnation())));
        }
        assert!(matches!(
            session.receive(protocol::unbind(7)),
            Ok(Event::Nothing)
        ));
        assert!(
            session
                .receive(bind_frame(1, MAX_SLOTS as u32, "e"))
                .is_ok()
        );
        let Ok(Event::Answer(failure)) = session.receive(request(2, 7, b"")) else {
            panic!("an answer");
        };
        let error: WireError = postcard::from_bytes(&failure.body).expect("a wire error");
        assert_eq!(error, WireError::UnknownSlot { slot: 7 });
        assert!(
            session
                .receive(Frame::new(FrameKind::Unbind, 0, vec![1]))
                .is_err()
        );
    }

    #[test]
    fn a_client_may_not_send_what_only_a_server_sends_and_garbage_is_a_violation() {
        let mut session = ServerSession::<()>::default();
        for kind in [
            FrameKind::Response,
            FrameKind::Failure,
            FrameKind::Bound,
            FrameKind::Hello,
        ] {
            assert!(
                session.receive(Frame::new(kind, 1, Vec::new())).is_err(),
                "{kind:?}"
            );
        }
        assert!(
            session
                .receive(Frame::new(FrameKind::Bind, 1, vec![0xff; 3]))
                .is_err()
        );
        assert!(
            session
                .receive(Frame::new(FrameKind::Request, 1, vec![0; 3]))
                .is_err()
        );
        assert!(
            session
                .receive(Frame::new(FrameKind::Deadline, 1, vec![0; 9]))
                .is_err()
        );
    }

    #[test]
    fn only_binds_and_calls_count_as_use() {
        let mut session = ServerSession::<()>::default();
        let _ = session.receive(Frame::new(FrameKind::Ping, 0, Vec::new()));
        let _ = session.receive(Frame::new(FrameKind::Pong, 0, Vec::new()));
        assert!(!session.take_used());
        let _ = session.receive(bind_frame(1, 1, "e"));
        assert!(session.take_used());
        assert!(!session.take_used());
    }

    #[test]
    fn a_new_budget_moves_the_deadline() {
        let mut requests = Requests::default();
        let now = Instant::now();
        let control = requests.begin(1, None, now).expect("new");
        requests.extend(1, Some(Duration::from_secs(5)), now);
        assert_eq!(control.deadline(), Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn a_request_id_in_flight_may_not_be_reused() {
        let mut requests = Requests::default();
        let now = Instant::now();
        let control = requests
            .begin(7, Some(Duration::from_secs(1)), now)
            .expect("new");
        assert_eq!(control.deadline(), Some(now + Duration::from_secs(1)));
        assert!(requests.begin(7, None, now).is_err());
        assert!(requests.finish(7), "its caller waits");
        assert!(!requests.finish(7), "answered once");
        assert!(
            requests.begin(7, None, now).is_ok(),
            "free again once answered"
        );
    }

    #[test]
    fn a_cancelled_request_is_not_answered_and_a_closed_connection_cancels_all() {
        let mut requests = Requests::default();
        let now = Instant::now();
        let first = requests.begin(1, None, now).expect("new");
        let second = requests.begin(2, None, now).expect("new");
        requests.cancel(1);
        requests.cancel(99); // unknown: ignored
        assert!(first.is_cancelled());
        assert!(!requests.finish(1), "cancelled: no answer");
        assert_eq!(requests.len(), 1);
        for control in requests.drain() {
            control.cancel();
        }
        assert!(second.is_cancelled() && requests.is_empty());
    }
}
