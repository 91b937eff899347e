//! The client's side of an established connection: request ids, the calls awaiting replies,
//! the slot of each binding, and what the server may send.

use std::collections::HashMap;
use std::net::SocketAddr;

use rpc_core::transport::{Binding, ReplyResult, ReplyTo, ReplyValue, StreamSink};
use rpc_core::{RpcError, STREAM_WINDOW};

use crate::frame::{Frame, FrameKind};
use crate::ids::IdMap;
use crate::protocol::WireError;

/// What a frame from the server means, for the driver to carry out (after releasing whatever
/// lock guards the session: a reply may run a callback that takes it again).
pub enum Received {
    /// The answer to a call: deliver `result` to `reply`.
    Reply(ReplyTo, ReplyResult),
    /// The answer to a call nobody awaits any more (it was cancelled): drop it.
    Late(u64),
    /// Send this frame back (a `Pong`).
    Answer(Frame),
    /// Nothing to do (a `Pong`).
    Nothing,
}

/// A stream that has opened: where its items go, and how many more bytes its producer may
/// send (it may send an item while this is above zero, so it ends at most one item below).
#[derive(Debug)]
struct OpenStream {
    sink: StreamSink,
    credit: i64,
}

/// What [`ClientSession::cancel`] took out of the session: dropped by the driver once it has
/// released the session's lock.
#[derive(Debug)]
pub struct Forgotten {
    _reply: Option<ReplyTo>,
    _stream: Option<StreamSink>,
}

/// The calls and streams a dead connection leaves unanswered, for the driver to fail outside
/// the lock.
#[derive(Debug, Default)]
pub struct Orphans {
    replies: Vec<ReplyTo>,
    streams: Vec<StreamSink>,
}

impl Orphans {
    /// How many calls and streams wait.
    pub fn len(&self) -> usize {
        self.replies.len() + self.streams.len()
    }

    /// Whether none does.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fails each with `error`.
    pub fn answer(self, error: &RpcError) {
        for reply in self.replies {
            reply.send(Err(error.clone()));
        }
        for stream in self.streams {
            stream.end(Err(error.clone()));
        }
    }
}

/// One outbound connection's calls and bindings.
///
/// The driver queues a call's frame between [`ClientSession::request_id`] (which applies the
/// rules: a dead connection fails at once, `max_in_flight` caps the asks awaiting replies)
/// and [`ClientSession::sent`] (which registers the reply), both under one lock, so that a
/// call is either failed by [`ClientSession::fail`] or refused, never lost.
pub struct ClientSession {
    peer: SocketAddr,
    max_in_flight: usize,
    /// Replies awaited, by request id, with the slot each call (or bind) went on (0: none).
    pending: IdMap<u64, (ReplyTo, u32)>,
    /// Streams that have opened, by request id.
    streams: IdMap<u64, OpenStream>,
    /// The slot of each binding on this connection.
    slots: HashMap<Binding, u32>,
    /// Slots retired: their bind was refused, or their endpoint incarnation stopped. Calls
    /// must not use them; the server was (or is about to be) told to forget them.
    refused: IdMap<u32, ()>,
    /// Retired slots the server has not been told of yet (`Unbind` frames to send).
    unbinds: Vec<u32>,
    /// Why the connection ended, once it has: new calls fail with it at once.
    dead: Option<RpcError>,
    /// A frame was queued since [`ClientSession::take_active`] last looked.
    used: bool,
    next_request: u64,
    next_slot: u32,
}

impl ClientSession {
    /// A session with `peer`, allowing `max_in_flight` asks to await replies at once.
    pub fn new(peer: SocketAddr, max_in_flight: usize) -> ClientSession {
        ClientSession {
            peer,
            max_in_flight,
            pending: IdMap::default(),
            streams: IdMap::default(),
            slots: HashMap::new(),
            refused: IdMap::default(),
            unbinds: Vec::new(),
            dead: None,
            used: false,
            next_request: 1,
            next_slot: 1,
        }
    }

    /// Whether the connection has ended.
    pub fn is_dead(&self) -> bool {
        self.dead.is_some()
    }

    /// Calls and streams awaiting replies.
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.streams.len()
    }

    /// The request id for a new frame: a fresh one for an ask, 0 for a tell. Fails if the
    /// connection has ended, or if an ask would exceed `max_in_flight`.
    pub fn request_id(&mut self, ask: bool) -> Result<u64, RpcError> {
        if let Some(dead) = &self.dead {
            return Err(dead.clone());
        }
        if !ask {
            return Ok(0);
        }
        if self.pending.len() + self.streams.len() >= self.max_in_flight {
            return Err(RpcError::Overloaded {
                address: self.peer,
                reason: format!(
                    "{} calls and streams already await replies on it (max_in_flight)",
                    self.max_in_flight
                ),
            });
        }
        let id = self.next_request;
        self.next_request += 1;
        Ok(id)
    }

    /// The frame of `request_id` was queued; `reply` awaits its answer (`None` for a tell).
    pub fn sent(&mut self, request_id: u64, reply: Option<ReplyTo>) {
        self.sent_on(request_id, reply, 0);
    }

    /// [`ClientSession::sent`] for a call or bind on `slot`: if the answer says the slot's
    /// endpoint incarnation has stopped, the slot is retired.
    pub fn sent_on(&mut self, request_id: u64, reply: Option<ReplyTo>, slot: u32) {
        if let Some(reply) = reply {
            self.pending.insert(request_id, (reply, slot));
        }
        self.used = true;
    }

    /// The slot `binding` is bound to on this connection, if any.
    pub fn slot(&self, binding: &Binding) -> Option<u32> {
        self.slots.get(binding).copied()
    }

    /// A fresh slot for a new binding.
    pub fn new_slot(&mut self) -> u32 {
        let slot = self.next_slot;
        self.next_slot += 1;
        slot
    }

    /// `binding` is (about to be) bound to `slot`: later calls use it.
    pub fn bound(&mut self, binding: Binding, slot: u32) {
        self.slots.insert(binding, slot);
    }

    /// The server refused to bind `slot`: calls must not use it, and a later call on
    /// `binding` binds again.
    pub fn refused(&mut self, binding: &Binding, slot: u32) {
        if self.slots.get(binding) == Some(&slot) {
            self.slots.remove(binding);
        }
        self.retire(slot);
    }

    /// `slot` leads nowhere any more (its bind was refused, or its endpoint incarnation
    /// stopped, which never runs again): calls must not use it, a later call on its binding
    /// binds again, and the server is told to forget it, so that a connection's slots count
    /// only live bindings however often endpoints restart or move.
    fn retire(&mut self, slot: u32) {
        if slot == 0 || self.refused.insert(slot, ()).is_some() {
            return;
        }
        self.slots.retain(|_, bound| *bound != slot);
        self.unbinds.push(slot);
    }

    /// The retired slots the server must be told to forget (`Unbind`), once each.
    pub fn take_unbinds(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.unbinds)
    }

    /// Whether a call may still go out on `slot`: the connection lives and the slot was not
    /// retired.
    pub fn usable(&self, slot: u32) -> bool {
        self.dead.is_none() && !self.refused.contains_key(&slot)
    }

    /// Whether request `request_id` still awaits its reply.
    pub fn awaits(&self, request_id: u64) -> bool {
        self.pending.contains_key(&request_id)
    }

    /// The caller of `request_id` gave up (or dropped its stream): forget its reply slot or
    /// stream. `None` if it was answered (or ended) already; otherwise the driver tells the
    /// server (`Cancel`).
    pub fn cancel(&mut self, request_id: u64) -> Option<Forgotten> {
        let reply = self.pending.remove(&request_id).map(|(reply, _)| reply);
        let stream = self.streams.remove(&request_id).map(|open| open.sink);
        (reply.is_some() || stream.is_some()).then_some(Forgotten {
            _reply: reply,
            _stream: stream,
        })
    }

    /// The consumer of stream `request_id` consumed `bytes` more: its producer may send that
    /// much more. Whether the stream is still open (then the driver sends `StreamCredit`).
    pub fn grant(&mut self, request_id: u64, bytes: u32) -> bool {
        match self.streams.get_mut(&request_id) {
            Some(open) => {
                open.credit = open.credit.saturating_add(i64::from(bytes));
                true
            }
            None => false,
        }
    }

    /// Whether the connection was used since the last look: a frame queued, or a call
    /// awaiting its reply, or a stream open. For the idle close.
    pub fn take_active(&mut self) -> bool {
        std::mem::take(&mut self.used) || !self.pending.is_empty() || !self.streams.is_empty()
    }

    /// What a frame from the server means. An error is a protocol violation: the driver
    /// closes the connection with it.
    pub fn receive(&mut self, frame: Frame) -> Result<Received, String> {
        let result = match frame.kind {
            // A bind's answer carries the incarnation reached; the binder reads it.
            FrameKind::Response | FrameKind::Bound => Ok(ReplyValue::Encoded(frame.body)),
            FrameKind::Failure => {
                let error = WireError::decode(&frame.body, self.peer);
                if let Some(open) = self.streams.remove(&frame.request_id) {
                    open.sink.end(Err(error));
                    return Ok(Received::Nothing);
                }
                if let (RpcError::EndpointStopped { .. }, Some((_, slot))) =
                    (&error, self.pending.get(&frame.request_id))
                {
                    let slot = *slot;
                    self.retire(slot);
                }
                Err(error)
            }
            FrameKind::StreamItem => return self.item(frame),
            FrameKind::StreamEnd => {
                match self.streams.remove(&frame.request_id) {
                    Some(open) => open.sink.end(Ok(())),
                    None => self.unopened(frame.request_id, "StreamEnd")?,
                }
                return Ok(Received::Nothing);
            }
            FrameKind::Ping => {
                return Ok(Received::Answer(Frame::new(
                    FrameKind::Pong,
                    frame.request_id,
                    Vec::new(),
                )));
            }
            FrameKind::Pong => return Ok(Received::Nothing),
            other => return Err(format!("a server may not send {other:?} frames")),
        };
        Ok(
            match self
                .pending
                .remove(&frame.request_id)
                .map(|(reply, _)| reply)
            {
                // A streaming call's `Response` opens its stream: the items follow.
                Some(ReplyTo::Stream(stream)) if frame.kind == FrameKind::Response => {
                    self.streams.insert(
                        frame.request_id,
                        OpenStream {
                            sink: stream.sink,
                            credit: i64::from(STREAM_WINDOW),
                        },
                    );
                    Received::Reply(ReplyTo::Caller(stream.open), result)
                }
                Some(reply) => Received::Reply(reply, result),
                None => Received::Late(frame.request_id),
            },
        )
    }

    /// One item of an open stream, within the credit its consumer granted.
    fn item(&mut self, frame: Frame) -> Result<Received, String> {
        let Some(open) = self.streams.get_mut(&frame.request_id) else {
            self.unopened(frame.request_id, "StreamItem")?;
            return Ok(Received::Nothing);
        };
        if open.credit <= 0 {
            return Err(format!(
                "the server sent an item of stream {} beyond the credit its consumer granted",
                frame.request_id
            ));
        }
        open.credit -= i64::try_from(frame.body.len()).unwrap_or(i64::MAX);
        // A consumer that has gone cancels the stream itself.
        let _ = open.sink.item(frame.body);
        Ok(Received::Nothing)
    }

    /// A stream frame for `request_id`, which has no open stream: late if its caller gave up
    /// (or it ended), a violation if it is a call still awaiting its opening.
    fn unopened(&self, request_id: u64, kind: &str) -> Result<(), String> {
        if self.pending.contains_key(&request_id) {
            return Err(format!(
                "the server sent {kind} for request {request_id} before opening its stream"
            ));
        }
        Ok(())
    }

    /// The connection has ended with `error`: new calls fail with it; the calls and streams
    /// still waiting are returned, for the driver to fail outside the lock.
    pub fn fail(&mut self, error: &RpcError) -> Orphans {
        self.dead.get_or_insert_with(|| error.clone());
        Orphans {
            replies: std::mem::take(&mut self.pending)
                .into_values()
                .map(|(reply, _)| reply)
                .collect(),
            streams: std::mem::take(&mut self.streams)
                .into_values()
                .map(|open| open.sink)
                .collect(),
        }
    }
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Received::Reply(reply, result) => f
                .debug_tuple("Reply")
                .field(reply)
                .field(&result.as_ref().map(|_| ..))
                .finish(),
            Received::Late(request_id) => f.debug_tuple("Late").field(request_id).finish(),
            Received::Answer(frame) => f.debug_tuple("Answer").field(frame).finish(),
            Received::Nothing => f.write_str("Nothing"),
        }
    }
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("peer", &self.peer)
            .field("awaiting_replies", &self.pending.len())
            .field("open_streams", &self.streams.len())
            .field("bindings", &self.slots.len())
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(max_in_flight: usize) -> ClientSession {
        ClientSession::new(([127, 0, 0, 1], 7000).into(), max_in_flight)
    }

    fn binding(endpoint: &str) -> Binding {
        Binding {
            endpoint: endpoint.to_owned(),
            gateway: "G".to_owned(),
            fingerprint: 1,
            incarnation: None,
            session: None,
        }
    }

    fn ask(session: &mut ClientSession) -> (u64, tokio::sync::oneshot::Receiver<ReplyResult>) {
        let (reply, receiver) = ReplyTo::channel();
        let id = session.request_id(true).expect("admitted");
        session.sent(id, Some(reply));
        (id, receiver)
    }

    #[test]
    fn a_response_reaches_the_call_with_its_request_id_once() {
        let mut session = session(8);
        let (first, _) = ask(&mut session);
        let (second, mut receiver) = ask(&mut session);
        assert_ne!(first, second);
        let frame = Frame::new(FrameKind::Response, second, vec![7]);
        let Ok(Received::Reply(reply, result)) = session.receive(frame.clone()) else {
            panic!("a reply for the second call");
        };
        reply.send(result);
        let Ok(Ok(ReplyValue::Encoded(body))) = receiver.try_recv() else {
            panic!("the encoded reply");
        };
        assert_eq!(&body[..], [7]);
        // The same answer again is late: nobody awaits it.
        assert!(matches!(session.receive(frame), Ok(Received::Late(id)) if id == second));
    }

    #[test]
    fn a_failure_becomes_the_callers_error() {
        let mut session = session(8);
        let (id, _) = ask(&mut session);
        let frame = crate::protocol::failure(id, &WireError::UnknownSlot { slot: 9 });
        let Ok(Received::Reply(_, Err(error))) = session.receive(frame) else {
            panic!("an error reply");
        };
        assert!(error.to_string().contains('9'), "{error}");
    }

    #[test]
    fn asks_beyond_max_in_flight_are_refused_and_tells_are_not() {
        let mut session = session(2);
        let (first, _) = ask(&mut session);
        ask(&mut session);
        let refused = session.request_id(true);
        assert!(
            matches!(&refused, Err(RpcError::Overloaded { reason, .. }) if reason.contains("max_in_flight")),
            "{refused:?}"
        );
        assert_eq!(session.request_id(false).ok(), Some(0));
        // A cancelled call frees its place.
        assert!(session.cancel(first).is_some());
        assert!(session.cancel(first).is_none(), "cancelled once");
        assert!(session.request_id(true).is_ok());
    }

    #[test]
    fn a_dead_connection_fails_waiting_calls_and_refuses_new_ones() {
        let mut session = session(8);
        ask(&mut session);
        ask(&mut session);
        let error = RpcError::Disconnected {
            address: session.peer,
            reason: "gone".to_owned(),
        };
        assert_eq!(session.fail(&error).len(), 2);
        assert!(session.is_dead());
        assert!(matches!(
            session.request_id(false),
            Err(RpcError::Disconnected { .. })
        ));
        assert!(!session.usable(1));
        assert!(session.fail(&error).is_empty(), "failed once");
    }

    #[test]
    fn a_refused_bind_retires_its_slot_and_the_binding_binds_again() {
        let mut session = session(8);
        let binding = binding("e");
        let slot = session.new_slot();
        session.bound(binding.clone(), slot);
        assert_eq!(session.slot(&binding), Some(slot));
        session.refused(&binding, slot);
        assert_eq!(session.slot(&binding), None);
        assert!(!session.usable(slot));
        let again = session.new_slot();
        assert_ne!(again, slot);
        // A late refusal of the old slot does not unbind the new one.
        session.bound(binding.clone(), again);
        session.refused(&binding, slot);
        assert_eq!(session.slot(&binding), Some(again));
    }

    #[test]
    fn a_slot_whose_incarnation_stopped_is_retired_and_unbound_once() {
        let mut session = session(8);
        let binding = binding("e");
        let slot = session.new_slot();
        session.bound(binding.clone(), slot);
        let id = session.request_id(true).expect("admitted");
        let (reply, _receiver) = tokio::sync::oneshot::channel();
        session.sent_on(id, Some(ReplyTo::Caller(reply)), slot);
        let stopped = crate::protocol::failure(
            id,
            &WireError::EndpointStopped {
                endpoint: "e".to_owned(),
            },
        );
        assert!(matches!(
            session.receive(stopped),
            Ok(Received::Reply(_, Err(RpcError::EndpointStopped { .. })))
        ));
        assert!(!session.usable(slot));
        assert_eq!(session.slot(&binding), None, "the binding binds again");
        assert_eq!(session.take_unbinds(), [slot]);
        // A refusal of the same slot does not unbind it twice; other failures retire nothing.
        session.refused(&binding, slot);
        assert!(session.take_unbinds().is_empty());
        let other = session.new_slot();
        session.bound(binding.clone(), other);
        let id = session.request_id(true).expect("admitted");
        let (reply, _receiver) = tokio::sync::oneshot::channel();
        session.sent_on(id, Some(ReplyTo::Caller(reply)), other);
        let panicked = crate::protocol::failure(
            id,
            &WireError::Other {
                message: "no".to_owned(),
            },
        );
        let _ = session.receive(panicked);
        assert!(session.usable(other));
        assert!(session.take_unbinds().is_empty());
    }

    #[test]
    fn the_server_may_not_send_calls_and_pings_are_answered() {
        let mut session = session(8);
        for kind in [
            FrameKind::Request,
            FrameKind::Tell,
            FrameKind::Bind,
            FrameKind::Cancel,
            FrameKind::Unbind,
        ] {
            assert!(
                session.receive(Frame::new(kind, 1, Vec::new())).is_err(),
                "{kind:?}"
            );
        }
        let ping = Frame::new(FrameKind::Ping, 5, Vec::new());
        let Ok(Received::Answer(pong)) = session.receive(ping) else {
            panic!("a ping is answered");
        };
        assert_eq!((pong.kind, pong.request_id), (FrameKind::Pong, 5));
    }

    #[test]
    fn a_connection_is_active_while_a_call_waits() {
        let mut session = session(8);
        assert!(!session.take_active());
        let (id, _) = ask(&mut session);
        assert!(session.take_active(), "a frame was queued");
        assert!(session.take_active(), "a reply is awaited");
        session.cancel(id);
        assert!(!session.take_active());
    }

    #[test]
    fn a_stream_opens_with_its_response_and_items_stay_within_credit() {
        let mut session = session(8);
        let (open, mut opened) = tokio::sync::oneshot::channel();
        let (sink, mut items) = stream_channel();
        let id = session.request_id(true).expect("admitted");
        session.sent(
            id,
            Some(ReplyTo::Stream(rpc_core::transport::StreamReply {
                open,
                sink,
            })),
        );
        // An item before the opening is a violation.
        let early = Frame::new(FrameKind::StreamItem, id, vec![1]);
        assert!(session.receive(early).is_err());

        let mut session = self::session(8);
        let (open, _opened) = tokio::sync::oneshot::channel();
        let (sink, _items) = stream_channel();
        let id = session.request_id(true).expect("admitted");
        session.sent(
            id,
            Some(ReplyTo::Stream(rpc_core::transport::StreamReply {
                open,
                sink,
            })),
        );
        let _ = (&mut opened, &mut items);
        let Ok(Received::Reply(reply, result)) =
            session.receive(Frame::new(FrameKind::Response, id, Vec::new()))
        else {
            panic!("the opening is a reply");
        };
        reply.send(result);
        // The whole window in 64 KiB items, then one more byte is one too many.
        let item = vec![0; 64 * 1024];
        for _ in 0..(STREAM_WINDOW as usize / item.len()) {
            assert!(matches!(
                session.receive(Frame::new(FrameKind::StreamItem, id, item.clone())),
                Ok(Received::Nothing)
            ));
        }
        assert!(
            session
                .receive(Frame::new(FrameKind::StreamItem, id, vec![0]))
                .is_err(),
            "beyond the credit"
        );

        // Credit given back lets more through; the end closes the stream.
        let mut session = self::session(8);
        let (open, _opened) = tokio::sync::oneshot::channel();
        let (sink, mut items) = stream_channel();
        let id = session.request_id(true).expect("admitted");
        session.sent(
            id,
            Some(ReplyTo::Stream(rpc_core::transport::StreamReply {
                open,
                sink,
            })),
        );
        session
            .receive(Frame::new(FrameKind::Response, id, Vec::new()))
            .expect("opened");
        let big = vec![0; STREAM_WINDOW as usize];
        session
            .receive(Frame::new(FrameKind::StreamItem, id, big.clone()))
            .expect("within credit");
        assert!(session.grant(id, STREAM_WINDOW));
        session
            .receive(Frame::new(FrameKind::StreamItem, id, big))
            .expect("within the credit given back");
        session
            .receive(Frame::new(FrameKind::StreamEnd, id, Vec::new()))
            .expect("the end");
        assert!(!session.grant(id, 1), "an ended stream takes no credit");
        let mut delivered = 0;
        while let Ok(event) = items.try_recv() {
            delivered += 1;
            if delivered == 3 {
                assert!(matches!(
                    event,
                    rpc_core::transport::StreamEvent::End(Ok(()))
                ));
            }
        }
        assert_eq!(delivered, 3);
        // A late item for it is dropped, not a violation.
        assert!(
            session
                .receive(Frame::new(FrameKind::StreamItem, id, vec![1]))
                .is_ok()
        );
    }

    fn stream_channel() -> (
        rpc_core::transport::StreamSink,
        tokio::sync::mpsc::UnboundedReceiver<rpc_core::transport::StreamEvent>,
    ) {
        rpc_core::transport::stream_channel()
    }
}
