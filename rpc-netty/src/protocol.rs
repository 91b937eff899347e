//! The bodies of each frame kind, and the wire form of errors. `PROTOCOL.md` is the prose
//! version of this module; the golden-bytes tests below pin both.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rpc_core::RpcError;
use rpc_core::transport::Binding;
use serde::{Deserialize, Serialize};

use crate::auth::{NONCE_LEN, PROOF_LEN};
use crate::frame::{Frame, FrameKind};

/// The first bytes of every connection's first frame body: not a peer of this protocol
/// otherwise.
pub const MAGIC: [u8; 4] = *b"RPCN";

/// The protocol version this build speaks. Peers must speak the same one.
pub const PROTOCOL_VERSION: u16 = 2;

/// Bytes of the slot number that starts a request or tell body.
pub const SLOT_LEN: usize = 4;

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

/// `Handshake`: magic, version, and the client's nonce.
pub fn handshake(version: u16, nonce: &[u8; NONCE_LEN]) -> Frame {
    let mut body = BytesMut::with_capacity(6 + NONCE_LEN);
    body.put_slice(&MAGIC);
    body.put_u16(version);
    body.put_slice(nonce);
    Frame::new(FrameKind::Handshake, 0, body.freeze())
}

/// What a `Handshake` body says: the version, and the client's nonce when the body has one
/// (a peer of another version may send none; it is refused by version first).
pub fn parse_handshake(mut body: Bytes) -> Result<(u16, Option<[u8; NONCE_LEN]>), String> {
    if body.len() < 6 || body[..4] != MAGIC {
        return Err("the first frame is not a handshake of this protocol".to_owned());
    }
    body.advance(4);
    let version = body.get_u16();
    let nonce = body.as_ref().try_into().ok();
    Ok((version, nonce))
}

/// The server's side of the challenge: its nonce, and its proof of the secret.
pub type Challenge = ([u8; NONCE_LEN], [u8; PROOF_LEN]);

/// `HandshakeOk`: the server's version, then 0 (no authentication) or 1 followed by the
/// server's nonce and proof.
pub fn handshake_ok(challenge: Option<&Challenge>) -> Frame {
    let mut body = BytesMut::with_capacity(3 + NONCE_LEN + PROOF_LEN);
    body.put_u16(PROTOCOL_VERSION);
    match challenge {
        None => body.put_u8(0),
        Some((nonce, proof)) => {
            body.put_u8(1);
            body.put_slice(nonce);
            body.put_slice(proof);
        }
    }
    Frame::new(FrameKind::HandshakeOk, 0, body.freeze())
}

/// What a `HandshakeOk` body says: the server's version and its challenge, if it has one.
pub fn parse_handshake_ok(body: &Bytes) -> Result<(u16, Option<Challenge>), String> {
    let malformed = || "a malformed handshake answer".to_owned();
    let version = parse_version(body).ok_or_else(malformed)?;
    match body.get(2) {
        Some(0) if body.len() == 3 => Ok((version, None)),
        Some(1) if body.len() == 3 + NONCE_LEN + PROOF_LEN => {
            let nonce = body[3..3 + NONCE_LEN].try_into().map_err(|_| malformed())?;
            let proof = body[3 + NONCE_LEN..].try_into().map_err(|_| malformed())?;
            Ok((version, Some((nonce, proof))))
        }
        _ => Err(malformed()),
    }
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
    (parse_version(body), code, reason)
}

/// The version at the start of a `HandshakeOk` or `HandshakeReject` body.
pub fn parse_version(body: &Bytes) -> Option<u16> {
    body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// `Auth`: the client's proof.
pub fn auth(proof: &[u8; PROOF_LEN]) -> Frame {
    Frame::new(FrameKind::Auth, 0, proof.to_vec())
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
}

impl BindBody {
    /// The binding this body asks for.
    pub fn binding(&self) -> Binding {
        Binding {
            endpoint: self.endpoint.clone(),
            gateway: self.gateway.clone(),
            fingerprint: self.fingerprint,
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
    };
    // A struct of strings and integers always encodes.
    let body = postcard::to_allocvec(&body).unwrap_or_default();
    Frame::new(FrameKind::Bind, request_id, body)
}

/// `Request` or `Tell`: the slot, then the encoded invocation (not copied: the encoder writes
/// the slot in front of it).
pub fn call(kind: FrameKind, request_id: u64, slot: u32, payload: Bytes) -> Frame {
    Frame {
        kind,
        request_id,
        slot: Some(slot),
        body: payload,
    }
}

/// Splits a `Request` or `Tell` body into slot and encoded invocation.
pub fn split_call(mut body: Bytes) -> Result<(u32, Bytes), String> {
    if body.len() < SLOT_LEN {
        return Err(format!("a call body of {} bytes has no slot", body.len()));
    }
    let slot = body.get_u32();
    Ok((slot, body))
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
        let mut expected = vec![
            0, 0, 0, 47, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, b'R', b'P', b'C', b'N', 0, 2,
        ];
        expected.extend_from_slice(&[0xab; NONCE_LEN]);
        assert_eq!(wire(handshake(2, &[0xab; NONCE_LEN])), expected);
        assert_eq!(
            wire(handshake_ok(None)),
            [0, 0, 0, 12, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0]
        );
        let mut expected = vec![0, 0, 0, 76, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1];
        expected.extend_from_slice(&[0x11; NONCE_LEN]);
        expected.extend_from_slice(&[0x22; PROOF_LEN]);
        assert_eq!(
            wire(handshake_ok(Some(&([0x11; NONCE_LEN], [0x22; PROOF_LEN])))),
            expected
        );
        assert_eq!(
            wire(handshake_reject(RejectCode::Unauthenticated, "no")),
            [
                0, 0, 0, 14, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, b'n', b'o'
            ]
        );
        let mut expected = vec![0, 0, 0, 41, 0x0e, 0, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&[0x33; PROOF_LEN]);
        assert_eq!(wire(auth(&[0x33; PROOF_LEN])), expected);
    }

    #[test]
    fn bind_golden() {
        let binding = Binding {
            endpoint: "ep".into(),
            gateway: "G".into(),
            fingerprint: 0x0102,
        };
        // postcard: slot varint 3, "ep" (len 2), "G" (len 1), fingerprint varint 0x0102.
        assert_eq!(
            wire(bind(5, 3, &binding)),
            [
                0, 0, 0, 17, 0x04, 0, 0, 0, 0, 0, 0, 0, 5, 3, 2, b'e', b'p', 1, b'G', 0x82, 0x02
            ]
        );
    }

    #[test]
    fn call_and_failure_golden() {
        assert_eq!(
            wire(call(
                FrameKind::Request,
                7,
                2,
                Bytes::from_static(&[0xaa, 0xbb])
            )),
            [
                0, 0, 0, 15, 0x06, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2, 0xaa, 0xbb
            ]
        );
        assert_eq!(
            wire(call(FrameKind::Tell, 0, 1, Bytes::new())),
            [0, 0, 0, 13, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
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
    fn handshake_parsing() {
        let nonce = [5; NONCE_LEN];
        assert_eq!(
            parse_handshake(handshake(7, &nonce).body),
            Ok((7, Some(nonce)))
        );
        // A version-1 handshake (no nonce) still yields its version, to be refused by it.
        assert_eq!(
            parse_handshake(Bytes::from_static(b"RPCN\x00\x01")),
            Ok((1, None))
        );
        let ok = handshake_ok(Some(&([1; NONCE_LEN], [2; PROOF_LEN]))).body;
        assert_eq!(
            parse_handshake_ok(&ok),
            Ok((2, Some(([1; NONCE_LEN], [2; PROOF_LEN]))))
        );
        assert!(parse_handshake_ok(&Bytes::from_static(&[0, 2, 1, 9])).is_err());
        let (version, code, reason) =
            parse_reject(&handshake_reject(RejectCode::Unauthenticated, "wrong").body);
        assert_eq!((version, code, reason.as_str()), (Some(2), 2, "wrong"));
        assert!(parse_handshake(Bytes::from_static(b"GET / HTTP/1.1")).is_err());
        let mut bytes =
            BytesMut::from(&wire(call(FrameKind::Request, 1, 9, Bytes::from_static(b"xy")))[..]);
        let decoded = FrameCodec::new(DEFAULT_MAX_FRAME)
            .decode(&mut bytes)
            .unwrap()
            .unwrap();
        let (slot, payload) = split_call(decoded.body).unwrap();
        assert_eq!((slot, &payload[..]), (9, &b"xy"[..]));
        assert!(split_call(Bytes::from_static(&[1, 2])).is_err());
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
