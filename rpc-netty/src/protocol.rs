//! The bodies of each frame kind, and the wire form of errors. `PROTOCOL.md` is the prose
//! version of this module; the golden-bytes tests below pin both.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rpc_core::transport::Binding;
use rpc_core::{Incarnation, RpcError};
use serde::{Deserialize, Serialize};

use crate::frame::{Frame, FrameKind};

/// The first bytes of every `Hello` body: not a peer of this protocol otherwise.
pub const MAGIC: [u8; 4] = *b"RPCN";

/// The protocol version this build speaks. Peers must speak the same one.
pub const PROTOCOL_VERSION: u16 = 8;

/// Bytes of the slot number that starts a request or tell body.
pub const SLOT_LEN: usize = 4;

/// Bytes of the time budget that follows the slot in a request body.
pub const BUDGET_LEN: usize = 4;

/// The budget of a request whose caller waits without a deadline.
pub const NO_BUDGET: u32 = u32::MAX;

/// The largest frame either side accepts before the handshake has completed: the handshake's
/// frames are a few dozen bytes, so a peer that has not proven anything cannot make the
/// other side buffer more than this per connection.
pub const HANDSHAKE_MAX_FRAME: usize = 1024;

/// The longest endpoint or gateway name a `Bind` may carry; a longer one is a protocol
/// violation (it could only be an attempt to make the server hold memory).
pub const MAX_NAME_LEN: usize = 1024;

/// The most slots one connection may bind (a client binds one per gateway it calls on that
/// connection); binding more is a protocol violation.
pub const MAX_SLOTS: usize = 4096;

/// Why a server refused a handshake (the byte after the version in `HandshakeReject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectCode {
    /// The peers speak different protocol versions.
    Version = 1,
    /// Authentication failed or was missing.
    Unauthenticated = 2,
    /// The handshake was malformed.
    Malformed = 3,
}

/// How a side of a connection authenticates, as its `Hello` announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AuthMode {
    /// No shared secret: the channel is plain (or TLS, below the protocol).
    None = 0,
    /// A shared secret: a Noise `NNpsk0` key exchange follows, then every frame is encrypted.
    SharedSecret = 1,
}

/// What a `Hello` body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's protocol version.
    pub version: u16,
    /// How the sender authenticates (absent from versions before 3: `None`).
    pub auth: Option<AuthMode>,
}

/// `Hello`, the first frame each side sends: magic, version, and how it authenticates.
pub fn hello(auth: AuthMode) -> Frame {
    let mut body = BytesMut::with_capacity(7);
    body.put_slice(&MAGIC);
    body.put_u16(PROTOCOL_VERSION);
    body.put_u8(auth as u8);
    Frame::new(FrameKind::Hello, 0, body.freeze())
}

/// Parses a `Hello` body. A peer of another version is still recognised by its magic and
/// version, so that it can be told which version this side speaks.
pub fn parse_hello(body: &[u8]) -> Result<Hello, String> {
    if body.len() < 6 || body[..4] != MAGIC {
        return Err("the first frame is not a hello of this protocol".to_owned());
    }
    let version = u16::from_be_bytes([body[4], body[5]]);
    let auth = match body.get(6..) {
        Some([0]) => Some(AuthMode::None),
        Some([1]) => Some(AuthMode::SharedSecret),
        _ => None,
    };
    if version == PROTOCOL_VERSION && auth.is_none() {
        return Err("a malformed hello".to_owned());
    }
    Ok(Hello { version, auth })
}

/// `KeyExchange`: one message of the Noise handshake (the client's first, the server's answer).
pub fn key_exchange(message: &[u8]) -> Frame {
    Frame::new(FrameKind::KeyExchange, 0, Bytes::copy_from_slice(message))
}

/// `HandshakeReject`: the server's version, the reason code, then why, in UTF-8.
pub fn handshake_reject(code: RejectCode, reason: &str) -> Frame {
    let mut body = BytesMut::with_capacity(3 + reason.len());
    body.put_u16(PROTOCOL_VERSION);
    body.put_u8(code as u8);
    body.put_slice(reason.as_bytes());
    Frame::new(FrameKind::HandshakeReject, 0, body.freeze())
}

/// What a `HandshakeReject` body says: the server's version, the reason code (a version
/// mismatch when absent), and the reason.
pub fn parse_reject(body: &Bytes) -> (Option<u16>, u8, String) {
    let code = body.get(2).copied().unwrap_or(RejectCode::Version as u8);
    let reason = String::from_utf8_lossy(body.get(3..).unwrap_or_default()).into_owned();
    let version = body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    (version, code, reason)
}

/// The body of a `Bind` frame (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindBody {
    /// The client-chosen slot later requests name.
    pub slot: u32,
    /// The endpoint's name.
    pub endpoint: String,
    /// The gateway's name.
    pub gateway: String,
    /// The client's fingerprint of the gateway.
    pub fingerprint: u64,
    /// The endpoint incarnation the proxy is bound to, once it has reached one.
    pub incarnation: Option<[u8; 16]>,
    /// The player session a reverse bind is for (a server reaching a player's endpoint
    /// through the Gate that relayed the player's call): see [`Binding::session`].
    pub session: Option<u64>,
}

impl BindBody {
    /// The binding this body asks for.
    pub fn binding(&self) -> Binding {
        Binding {
            endpoint: self.endpoint.clone(),
            gateway: self.gateway.clone(),
            fingerprint: self.fingerprint,
            incarnation: self.incarnation.map(Incarnation::from_bytes),
            session: self.session,
        }
    }
}

/// `Bind`: request id pairs it with `Bound` or `Failure`.
pub fn bind(request_id: u64, slot: u32, binding: &Binding) -> Frame {
    let body = BindBody {
        slot,
        endpoint: binding.endpoint.clone(),
        gateway: binding.gateway.clone(),
        fingerprint: binding.fingerprint,
        incarnation: binding.incarnation.map(Incarnation::to_bytes),
        session: binding.session,
    };
    // A struct of strings, integers and bytes always encodes.
    let body = postcard::to_allocvec(&body).unwrap_or_default();
    Frame::new(FrameKind::Bind, request_id, body)
}

/// `Bound`: the bind with this request id succeeded; the body is the incarnation reached.
pub fn bound(request_id: u64, incarnation: Incarnation) -> Frame {
    Frame::new(
        FrameKind::Bound,
        request_id,
        incarnation.to_bytes().to_vec(),
    )
}

/// The incarnation in a `Bound` body.
pub fn parse_bound(body: &[u8]) -> Result<Incarnation, String> {
    let bytes: [u8; 16] = body
        .try_into()
        .map_err(|_| format!("a bound body of {} bytes, not 16", body.len()))?;
    Ok(Incarnation::from_bytes(bytes))
}

/// The wire form of the time a caller still waits: whole milliseconds, rounded up (so the
/// server never gives up before its caller), or [`NO_BUDGET`]. Relative, so the two clocks
/// need not agree.
pub fn budget(remaining: Option<Duration>) -> u32 {
    match remaining {
        Some(remaining) => {
            let millis = remaining.as_nanos().div_ceil(1_000_000);
            u32::try_from(millis)
                .unwrap_or(NO_BUDGET)
                .min(NO_BUDGET - 1)
        }
        None => NO_BUDGET,
    }
}

/// The time a budget gives, `None` for [`NO_BUDGET`].
pub fn parse_budget(budget: u32) -> Option<Duration> {
    (budget != NO_BUDGET).then(|| Duration::from_millis(u64::from(budget)))
}

/// `Tell`: the slot, then the encoded invocation (not copied: the encoder writes the slot in
/// front of it).
pub fn tell(slot: u32, payload: Bytes) -> Frame {
    Frame {
        kind: FrameKind::Tell,
        request_id: 0,
        slot: Some(slot),
        body: payload,
        reverse: false,
    }
}

/// `Request`: the slot, the caller's time budget (u32, see [`budget`]), then the encoded
/// invocation. (The client writes all three straight into its outbox; this builds one.)
pub fn request(request_id: u64, slot: u32, budget: u32, payload: &[u8]) -> Frame {
    let mut body = BytesMut::with_capacity(BUDGET_LEN + payload.len());
    body.put_u32(budget);
    body.put_slice(payload);
    Frame {
        kind: FrameKind::Request,
        request_id,
        slot: Some(slot),
        body: body.freeze(),
        reverse: false,
    }
}

/// Splits a `Tell` body into slot and encoded invocation.
pub fn split_tell(mut body: Bytes) -> Result<(u32, Bytes), String> {
    if body.len() < SLOT_LEN {
        return Err(format!("a tell body of {} bytes has no slot", body.len()));
    }
    let slot = body.get_u32();
    Ok((slot, body))
}

/// Splits a `Request` body into slot, time budget and encoded invocation.
pub fn split_request(mut body: Bytes) -> Result<(u32, Option<Duration>, Bytes), String> {
    if body.len() < SLOT_LEN + BUDGET_LEN {
        return Err(format!(
            "a request body of {} bytes has no slot and budget",
            body.len()
        ));
    }
    let slot = body.get_u32();
    let budget = parse_budget(body.get_u32());
    Ok((slot, budget, body))
}

/// `Cancel`: the caller no longer waits for request `request_id`.
pub fn cancel(request_id: u64) -> Frame {
    Frame::new(FrameKind::Cancel, request_id, Bytes::new())
}

/// `Deadline`: the caller of request `request_id` now waits `budget` from now (u32).
pub fn deadline(request_id: u64, budget: u32) -> Frame {
    Frame::new(
        FrameKind::Deadline,
        request_id,
        Bytes::copy_from_slice(&budget.to_be_bytes()),
    )
}

/// Parses a `Deadline` body.
pub fn parse_deadline(body: &[u8]) -> Result<Option<Duration>, String> {
    let budget: [u8; BUDGET_LEN] = body
        .try_into()
        .map_err(|_| format!("a deadline body of {} bytes, not {BUDGET_LEN}", body.len()))?;
    Ok(parse_budget(u32::from_be_bytes(budget)))
}

/// `StreamItem`: one encoded item of stream `request_id`.
pub fn stream_item(request_id: u64, item: Bytes) -> Frame {
    Frame::new(FrameKind::StreamItem, request_id, item)
}

/// `StreamEnd`: stream `request_id` has ended.
pub fn stream_end(request_id: u64) -> Frame {
    Frame::new(FrameKind::StreamEnd, request_id, Bytes::new())
}

/// `Unbind`: the client will not use `slot` again; the server forgets it.
pub fn unbind(slot: u32) -> Frame {
    Frame::new(FrameKind::Unbind, 0, slot.to_be_bytes().to_vec())
}

/// Parses an `Unbind` body.
pub fn parse_unbind(body: &[u8]) -> Result<u32, String> {
    <[u8; 4]>::try_from(body)
        .map(u32::from_be_bytes)
        .map_err(|_| format!("an unbind of {} bytes (not 4)", body.len()))
}

/// `StreamCredit`: the consumer of stream `request_id` grants `bytes` more (u32).
pub fn stream_credit(request_id: u64, bytes: u32) -> Frame {
    Frame::new(
        FrameKind::StreamCredit,
        request_id,
        Bytes::copy_from_slice(&bytes.to_be_bytes()),
    )
}

/// Parses a `StreamCredit` body.
pub fn parse_credit(body: &[u8]) -> Result<u32, String> {
    let bytes: [u8; 4] = body
        .try_into()
        .map_err(|_| format!("a stream credit body of {} bytes, not 4", body.len()))?;
    Ok(u32::from_be_bytes(bytes))
}

/// `Failure`: the postcard [`WireError`].
pub fn failure(request_id: u64, error: &WireError) -> Frame {
    // An enum of strings and integers always encodes.
    let body = postcard::to_allocvec(error).unwrap_or_default();
    Frame::new(FrameKind::Failure, request_id, body)
}

/// An error as it crosses the wire. New variants go at the end: an older peer decodes what
/// it knows and reports the rest as [`RpcError::Remote`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireError {
    /// No such endpoint.
    EndpointNotFound {
        /// The endpoint asked for.
        endpoint: String,
    },
    /// The endpoint does not serve the gateway.
    IncompatibleGateway {
        /// The endpoint.
        endpoint: String,
        /// The gateway asked for.
        gateway: String,
        /// What it serves.
        served: Vec<String>,
    },
    /// The gateway's signatures differ.
    FingerprintMismatch {
        /// The endpoint.
        endpoint: String,
        /// The gateway.
        gateway: String,
        /// The client's fingerprint.
        client: u64,
        /// The server's fingerprint.
        server: u64,
    },
    /// The endpoint has stopped.
    EndpointStopped {
        /// The endpoint.
        endpoint: String,
    },
    /// The handler panicked.
    HandlerPanicked {
        /// The endpoint.
        endpoint: String,
        /// The gateway.
        gateway: String,
        /// The method.
        method: String,
        /// The panic message.
        message: String,
    },
    /// An invocation or reply could not be encoded or decoded.
    Serialization {
        /// What was being encoded or decoded.
        context: String,
        /// Why it failed.
        reason: String,
    },
    /// The reply would exceed the maximum frame size.
    FrameTooLarge {
        /// Its size.
        size: u64,
        /// The maximum.
        max: u64,
    },
    /// A call named a slot that was never bound on this connection.
    UnknownSlot {
        /// The slot.
        slot: u32,
    },
    /// The service is shutting down.
    ServiceShutDown,
    /// Anything else.
    Other {
        /// What happened.
        message: String,
    },
    /// The endpoint's mailbox is full.
    MailboxFull {
        /// The endpoint.
        endpoint: String,
        /// Its mailbox capacity.
        capacity: u64,
    },
    /// The call's fencing token is not the endpoint's current one.
    FencingTokenMismatch {
        /// The endpoint.
        endpoint: String,
        /// The gateway.
        gateway: String,
        /// The method.
        method: String,
        /// The endpoint's current token (`Debug`), if any.
        expected: Option<String>,
        /// The call's token (`Debug`), if known.
        received: Option<String>,
    },
    /// A call to a fenced gateway carried no fencing token.
    FencingTokenMissing {
        /// The endpoint.
        endpoint: String,
        /// The gateway.
        gateway: String,
        /// The method.
        method: String,
    },
    /// A stream's producer ended it with an error.
    StreamFailed {
        /// The producer's error, as text.
        message: String,
    },
    /// The gateway is served on the inner network only; the bind came in on the outer one.
    InnerGateway {
        /// The endpoint.
        endpoint: String,
        /// The gateway.
        gateway: String,
    },
    /// A relay could not carry the call to or from the server hosting its target.
    Relay {
        /// The relay's endpoint name.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
}

impl WireError {
    /// The wire form of an error raised on the server.
    pub fn from_rpc(error: &RpcError) -> WireError {
        match error.clone() {
            RpcError::EndpointNotFound { endpoint, .. } => WireError::EndpointNotFound { endpoint },
            RpcError::IncompatibleGateway {
                endpoint,
                gateway,
                served,
            } => WireError::IncompatibleGateway {
                endpoint,
                gateway,
                served,
            },
            RpcError::FingerprintMismatch {
                gateway,
                endpoint,
                client,
                server,
            } => WireError::FingerprintMismatch {
                endpoint,
                gateway,
                client,
                server,
            },
            RpcError::EndpointStopped { endpoint } => WireError::EndpointStopped { endpoint },
            RpcError::HandlerPanicked {
                endpoint,
                gateway,
                method,
                message,
            } => WireError::HandlerPanicked {
                endpoint,
                gateway,
                method,
                message,
            },
            RpcError::Serialization { context, reason } => {
                WireError::Serialization { context, reason }
            }
            RpcError::FrameTooLarge { size, max } => WireError::FrameTooLarge {
                size: size as u64,
                max: max as u64,
            },
            RpcError::ServiceShutDown => WireError::ServiceShutDown,
            RpcError::MailboxFull { endpoint, capacity } => WireError::MailboxFull {
                endpoint,
                capacity: capacity as u64,
            },
            RpcError::FencingTokenMismatch {
                endpoint,
                gateway,
                method,
                expected,
                received,
            } => WireError::FencingTokenMismatch {
                endpoint,
                gateway,
                method,
                expected,
                received,
            },
            RpcError::FencingTokenMissing {
                endpoint,
                gateway,
                method,
            } => WireError::FencingTokenMissing {
                endpoint,
                gateway,
                method,
            },
            RpcError::StreamFailed { message } => WireError::StreamFailed { message },
            RpcError::InnerGateway { endpoint, gateway } => {
                WireError::InnerGateway { endpoint, gateway }
            }
            RpcError::Relay { endpoint, reason } => WireError::Relay { endpoint, reason },
            other => WireError::Other {
                message: other.to_string(),
            },
        }
    }

    /// The error a caller sees for this wire error from the service at `peer`.
    pub fn into_rpc(self, peer: SocketAddr) -> RpcError {
        match self {
            WireError::EndpointNotFound { endpoint } => RpcError::EndpointNotFound {
                endpoint,
                address: Some(peer),
            },
            WireError::IncompatibleGateway {
                endpoint,
                gateway,
                served,
            } => RpcError::IncompatibleGateway {
                endpoint,
                gateway,
                served,
            },
            WireError::FingerprintMismatch {
                endpoint,
                gateway,
                client,
                server,
            } => RpcError::FingerprintMismatch {
                gateway,
                endpoint,
                client,
                server,
            },
            WireError::EndpointStopped { endpoint } => RpcError::EndpointStopped { endpoint },
            WireError::HandlerPanicked {
                endpoint,
                gateway,
                method,
                message,
            } => RpcError::HandlerPanicked {
                endpoint,
                gateway,
                method,
                message,
            },
            WireError::Serialization { context, reason } => {
                RpcError::Serialization { context, reason }
            }
            WireError::FrameTooLarge { size, max } => RpcError::FrameTooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                max: usize::try_from(max).unwrap_or(usize::MAX),
            },
            WireError::UnknownSlot { slot } => RpcError::Remote {
                address: peer,
                message: format!("no gateway is bound to slot {slot} on this connection"),
            },
            WireError::ServiceShutDown => RpcError::Disconnected {
                address: peer,
                reason: "the remote service is shutting down".to_owned(),
            },
            WireError::Other { message } => RpcError::Remote {
                address: peer,
                message,
            },
            WireError::MailboxFull { endpoint, capacity } => RpcError::MailboxFull {
                endpoint,
                capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            },
            WireError::FencingTokenMismatch {
                endpoint,
                gateway,
                method,
                expected,
                received,
            } => RpcError::FencingTokenMismatch {
                endpoint,
                gateway,
                method,
                expected,
                received,
            },
            WireError::FencingTokenMissing {
                endpoint,
                gateway,
                method,
            } => RpcError::FencingTokenMissing {
                endpoint,
                gateway,
                method,
            },
            WireError::StreamFailed { message } => RpcError::StreamFailed { message },
            WireError::InnerGateway { endpoint, gateway } => {
                RpcError::InnerGateway { endpoint, gateway }
            }
            WireError::Relay { endpoint, reason } => RpcError::Relay { endpoint, reason },
        }
    }

    /// Decodes a `Failure` body; an undecodable one still becomes an error for the caller.
    pub fn decode(body: &[u8], peer: SocketAddr) -> RpcError {
        match postcard::from_bytes::<WireError>(body) {
            Ok(error) => error.into_rpc(peer),
            Err(error) => RpcError::Remote {
                address: peer,
                message: format!("undecodable failure ({error})"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{DEFAULT_MAX_FRAME, FrameCodec};
    use rpc_core::STREAM_WINDOW;
    use tokio_util::codec::{Decoder, Encoder};

    fn wire(frame: Frame) -> Vec<u8> {
        let mut out = BytesMut::new();
        FrameCodec::new(DEFAULT_MAX_FRAME)
            .encode(frame, &mut out)
            .unwrap();
        out.to_vec()
    }

    // These pin the wire format: a failing test here means the protocol changed, which must
    // come with a new PROTOCOL_VERSION and an updated PROTOCOL.md.

    #[test]
    fn handshake_golden() {
        assert_eq!(
            wire(hello(AuthMode::None)),
            [
                0, 0, 0, 16, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, b'R', b'P', b'C', b'N', 0, 8, 0
            ]
        );
        assert_eq!(wire(hello(AuthMode::SharedSecret))[19], 1);
        let mut expected = vec![0, 0, 0, 13, 0x02, 0, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&[0xee; 4]);
        assert_eq!(wire(key_exchange(&[0xee; 4])), expected);
        assert_eq!(
            wire(handshake_reject(RejectCode::Unauthenticated, "no")),
            [
                0, 0, 0, 14, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 2, b'n', b'o'
            ]
        );
    }

    #[test]
    fn bind_golden() {
        let mut binding = Binding {
            endpoint: "ep".into(),
            gateway: "G".into(),
            fingerprint: 0x0102,
            incarnation: None,
            session: None,
        };
        // postcard: slot varint 3, "ep" (len 2), "G" (len 1), fingerprint varint 0x0102,
        // no incarnation (0), no session (0).
        assert_eq!(
            wire(bind(5, 3, &binding)),
            [
                0, 0, 0, 19, 0x04, 0, 0, 0, 0, 0, 0, 0, 5, 3, 2, b'e', b'p', 1, b'G', 0x82, 0x02,
                0, 0
            ]
        );
        // Bound to an incarnation: 1, then its 16 bytes.
        binding.incarnation = Some(Incarnation::from_bytes([0x11; 16]));
        let mut expected = vec![
            0, 0, 0, 35, 0x04, 0, 0, 0, 0, 0, 0, 0, 5, 3, 2, b'e', b'p', 1, b'G', 0x82, 0x02, 1,
        ];
        expected.extend_from_slice(&[0x11; 16]);
        expected.push(0);
        assert_eq!(wire(bind(5, 3, &binding)), expected);
        // For a player's session through a Gate: 1, then the session id as a varint.
        binding.session = Some(0x0102);
        expected.pop();
        expected[3] = 37;
        expected.extend_from_slice(&[1, 0x82, 0x02]);
        assert_eq!(wire(bind(5, 3, &binding)), expected);
        // The answer: the incarnation reached.
        let mut expected = vec![0, 0, 0, 25, 0x05, 0, 0, 0, 0, 0, 0, 0, 5];
        expected.extend_from_slice(&[0x22; 16]);
        assert_eq!(
            wire(bound(5, Incarnation::from_bytes([0x22; 16]))),
            expected
        );
        assert_eq!(
            parse_bound(&expected[13..]),
            Ok(Incarnation::from_bytes([0x22; 16]))
        );
        assert!(parse_bound(&[1, 2]).is_err());
    }

    #[test]
    fn call_and_failure_golden() {
        // Slot 2, a budget of 1,500 ms (0x05dc), invocation `aa bb`.
        assert_eq!(
            wire(request(7, 2, 1500, &[0xaa, 0xbb])),
            [
                0, 0, 0, 19, 0x06, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0x05, 0xdc, 0xaa, 0xbb
            ]
        );
        assert_eq!(
            wire(tell(1, Bytes::new())),
            [0, 0, 0, 13, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(wire(cancel(7)), [0, 0, 0, 9, 0x0c, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(
            wire(unbind(3)),
            [0, 0, 0, 13, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]
        );
        assert_eq!(parse_unbind(&[0, 0, 0, 3]), Ok(3));
        assert_eq!(
            wire(deadline(7, 3000)),
            [0, 0, 0, 13, 0x0e, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0x0b, 0xb8]
        );
        let stopped = WireError::EndpointStopped {
            endpoint: "x".into(),
        };
        // postcard: variant 3, "x".
        assert_eq!(
            wire(failure(9, &stopped)),
            [0, 0, 0, 12, 0x09, 0, 0, 0, 0, 0, 0, 0, 9, 3, 1, b'x']
        );
    }

    #[test]
    fn reverse_golden() {
        let binding = Binding {
            endpoint: "e".into(),
            gateway: "G".into(),
            fingerprint: 0x0102,
            incarnation: Some(Incarnation::from_bytes([0x33; 16])),
            session: None,
        };
        let mut expected = vec![
            0, 0, 0, 0x22, 0x84, 0, 0, 0, 0, 0, 0, 0, 2, 1, 1, b'e', 1, b'G', 0x82, 0x02, 1,
        ];
        expected.extend_from_slice(&[0x33; 16]);
        expected.push(0);
        assert_eq!(wire(bind(2, 1, &binding).reversed(true)), expected);
        let mut answer = vec![0, 0, 0, 25, 0x85, 0, 0, 0, 0, 0, 0, 0, 2];
        answer.extend_from_slice(&[0x33; 16]);
        assert_eq!(
            wire(bound(2, Incarnation::from_bytes([0x33; 16])).reversed(true)),
            answer
        );
        // Decoded, the bit says which calls the frame belongs to.
        let mut bytes = BytesMut::from(&answer[..]);
        let frame = FrameCodec::new(DEFAULT_MAX_FRAME)
            .decode(&mut bytes)
            .unwrap()
            .unwrap();
        assert_eq!((frame.kind, frame.reverse), (FrameKind::Bound, true));
        // The connection's own kinds never carry it.
        for kind in [0x81u8, 0x82, 0x83, 0x8a, 0x8b] {
            let mut bytes = BytesMut::from(&[0, 0, 0, 9, kind, 0, 0, 0, 0, 0, 0, 0, 0][..]);
            assert!(
                FrameCodec::new(DEFAULT_MAX_FRAME)
                    .decode(&mut bytes)
                    .is_err(),
                "{kind:#x}"
            );
        }
    }

    #[test]
    fn stream_golden() {
        // Item `05` of stream 7 (a u64 5 in postcard), its end, and 65,536 bytes of credit.
        assert_eq!(
            wire(stream_item(7, Bytes::from_static(&[5]))),
            [0, 0, 0, 10, 0x0d, 0, 0, 0, 0, 0, 0, 0, 7, 5]
        );
        assert_eq!(
            wire(stream_end(7)),
            [0, 0, 0, 9, 0x0f, 0, 0, 0, 0, 0, 0, 0, 7]
        );
        assert_eq!(
            wire(stream_credit(7, 65_536)),
            [0, 0, 0, 13, 0x10, 0, 0, 0, 0, 0, 0, 0, 7, 0, 1, 0, 0]
        );
        assert_eq!(parse_credit(&[0, 1, 0, 0]), Ok(65_536));
        assert!(parse_credit(&[1]).is_err());
        let failed = WireError::StreamFailed {
            message: "x".into(),
        };
        // postcard: variant 13, "x".
        assert_eq!(
            wire(failure(7, &failed)),
            [0, 0, 0, 12, 0x09, 0, 0, 0, 0, 0, 0, 0, 7, 13, 1, b'x']
        );
        let relay = WireError::Relay {
            endpoint: "u".into(),
            reason: "r".into(),
        };
        // postcard: variant 15, "u", "r".
        assert_eq!(
            wire(failure(7, &relay)),
            [
                0, 0, 0, 14, 0x09, 0, 0, 0, 0, 0, 0, 0, 7, 15, 1, b'u', 1, b'r'
            ]
        );
        assert_eq!(
            STREAM_WINDOW, 262_144,
            "the initial credit is part of the protocol"
        );
    }

    #[test]
    fn handshake_parsing() {
        assert_eq!(
            parse_hello(&hello(AuthMode::SharedSecret).body),
            Ok(Hello {
                version: PROTOCOL_VERSION,
                auth: Some(AuthMode::SharedSecret)
            })
        );
        // A version-2 handshake (magic, version, 32-byte nonce) still yields its version, to
        // be refused by it.
        let mut v2 = b"RPCN\x00\x02".to_vec();
        v2.extend_from_slice(&[0x5a; 32]);
        assert_eq!(
            parse_hello(&v2),
            Ok(Hello {
                version: 2,
                auth: None
            })
        );
        assert!(parse_hello(b"RPCN\x00\x08\x07").is_err(), "an unknown mode");
        assert!(parse_hello(b"GET / HTTP/1.1").is_err());
        let (version, code, reason) =
            parse_reject(&handshake_reject(RejectCode::Unauthenticated, "wrong").body);
        assert_eq!(
            (version, code, reason.as_str()),
            (Some(PROTOCOL_VERSION), 2, "wrong")
        );
        let mut bytes = BytesMut::from(&wire(request(1, 9, NO_BUDGET, b"xy"))[..]);
        let decoded = FrameCodec::new(DEFAULT_MAX_FRAME)
            .decode(&mut bytes)
            .unwrap()
            .unwrap();
        let (slot, budget, payload) = split_request(decoded.body).unwrap();
        assert_eq!((slot, budget, &payload[..]), (9, None, &b"xy"[..]));
        assert!(split_request(Bytes::from_static(&[0, 0, 0, 1, 2])).is_err());
        assert!(split_tell(Bytes::from_static(&[1, 2])).is_err());
        assert_eq!(
            parse_deadline(&[0, 0, 0, 5]),
            Ok(Some(Duration::from_millis(5)))
        );
        assert!(parse_deadline(&[0, 5]).is_err());
    }

    #[test]
    fn budgets_round_up_and_saturate() {
        assert_eq!(budget(None), NO_BUDGET);
        assert_eq!(budget(Some(Duration::ZERO)), 0);
        assert_eq!(budget(Some(Duration::from_micros(1))), 1);
        assert_eq!(budget(Some(Duration::from_millis(1500))), 1500);
        assert_eq!(
            budget(Some(Duration::from_secs(100 * 86_400))),
            NO_BUDGET - 1
        );
        assert_eq!(parse_budget(1500), Some(Duration::from_millis(1500)));
        assert_eq!(parse_budget(NO_BUDGET), None);
    }

    #[test]
    fn wire_errors_round_trip_into_rpc_errors() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let original = RpcError::FingerprintMismatch {
            gateway: "G".into(),
            endpoint: "e".into(),
            client: 1,
            server: 2,
        };
        let body = failure(1, &WireError::from_rpc(&original)).body;
        match WireError::decode(&body, peer) {
            RpcError::FingerprintMismatch { client, server, .. } => {
                assert_eq!((client, server), (1, 2));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            WireError::decode(&[0xff, 0xff], peer),
            RpcError::Remote { .. }
        ));
    }
}
