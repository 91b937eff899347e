//! Frames: the unit the wire carries.
//!
//! ```text
//!  0               4       5                               13
//! +---------------+-------+-------------------------------+--------------------+
//! | length: u32   | kind  | request id: u64               | body               |
//! | big endian    | u8    | big endian                    | length - 9 bytes   |
//! +---------------+-------+-------------------------------+--------------------+
//!                 \_______________________ length bytes ________________________/
//! ```
//!
//! `length` counts everything after itself: kind, request id and body. A frame whose length is
//! below 9 or above the configured maximum is refused *before* any buffer is reserved for it,
//! so a peer cannot make the receiver allocate by announcing a huge frame. `PROTOCOL.md` in
//! this crate describes every kind's body.
//!
//! The codec plugs into `tokio_util::codec::Framed`, which does the reading and writing.
//!
//! # Cancellation safety
//!
//! Decoding keeps partial frames in the `Framed` read buffer, so dropping a `next()` future
//! loses nothing.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Bytes of the length prefix.
pub const LENGTH_LEN: usize = 4;
/// Bytes of kind and request id, counted in the length.
pub const HEADER_LEN: usize = 1 + 8;
/// The default maximum frame length (the value of the length field): 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// What a frame is. The numbers are the wire's kind byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Either way, each side's first frame: magic, protocol version, authentication mode.
    Hello = 0x01,
    /// Either way, with a shared secret: one message of the Noise key exchange.
    KeyExchange = 0x02,
    /// Server -> client: the handshake is refused; the server closes the connection.
    HandshakeReject = 0x03,
    /// Client -> server: bind a slot to an endpoint's gateway.
    Bind = 0x04,
    /// Server -> client: the bind succeeded.
    Bound = 0x05,
    /// Client -> server: an ask.
    Request = 0x06,
    /// Client -> server: a tell.
    Tell = 0x07,
    /// Server -> client: the reply to an ask.
    Response = 0x08,
    /// Server -> client: an ask or bind failed.
    Failure = 0x09,
    /// Either way: keep-alive probe.
    Ping = 0x0a,
    /// Either way: keep-alive answer.
    Pong = 0x0b,
    /// Client -> server: the caller no longer waits for an ask.
    Cancel = 0x0c,
    /// Server -> client: one item of a streamed reply.
    StreamItem = 0x0d,
    /// Client -> server: the caller of an ask now waits longer.
    Deadline = 0x0e,
    /// Server -> client: a streamed reply has ended.
    StreamEnd = 0x0f,
    /// Client -> server: the consumer of a stream grants its producer more bytes.
    StreamCredit = 0x10,
    /// Client -> server: forget a slot (its endpoint incarnation stopped, or its bind failed).
    Unbind = 0x11,
}

impl FrameKind {
    /// Whether a frame of this kind may belong to the reverse calls: the kinds of calls and
    /// their answers, not those of the connection itself (handshake, keep-alive).
    pub fn may_be_reverse(self) -> bool {
        !matches!(
            self,
            FrameKind::Hello
                | FrameKind::KeyExchange
                | FrameKind::HandshakeReject
                | FrameKind::Ping
                | FrameKind::Pong
        )
    }

    /// The kind for a kind byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<FrameKind> {
        use FrameKind::*;
        Some(match byte {
            0x01 => Hello,
            0x02 => KeyExchange,
            0x03 => HandshakeReject,
            0x04 => Bind,
            0x05 => Bound,
            0x06 => Request,
            0x07 => Tell,
            0x08 => Response,
            0x09 => Failure,
            0x0a => Ping,
            0x0b => Pong,
            0x0c => Cancel,
            0x0d => StreamItem,
            0x0e => Deadline,
            0x0f => StreamEnd,
            0x10 => StreamCredit,
            0x11 => Unbind,
            _ => return None,
        })
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the frame is.
    pub kind: FrameKind,
    /// Pairs a reply with its request; 0 where a kind has none.
    pub request_id: u64,
    /// For an outgoing call: the slot, written (big-endian) as the first 4 bytes of the body,
    /// so that the encoded invocation need not be copied to prepend it. Decoded frames leave
    /// it in the body.
    pub slot: Option<u32>,
    /// The kind-specific body (after the slot, if there is one).
    pub body: Bytes,
    /// Whether the frame belongs to the *reverse* calls: those the accepting side makes to
    /// endpoints of the connecting side (client mode), marked by the kind byte's high bit.
    pub reverse: bool,
}

/// The kind byte's high bit: the frame belongs to the reverse calls.
pub const REVERSE: u8 = 0x80;

impl Frame {
    /// A frame of `kind` with `body`.
    pub fn new(kind: FrameKind, request_id: u64, body: impl Into<Bytes>) -> Frame {
        Frame {
            kind,
            request_id,
            slot: None,
            body: body.into(),
            reverse: false,
        }
    }

    /// This frame, marked as one of the reverse calls' if `reverse`.
    pub fn reversed(mut self, reverse: bool) -> Frame {
        self.reverse = reverse;
        self
    }

    /// The kind byte it is sent with.
    pub fn kind_byte(&self) -> u8 {
        self.kind as u8 | if self.reverse { REVERSE } else { 0 }
    }

    /// The value of the length field this frame is sent with.
    pub fn wire_length(&self) -> usize {
        HEADER_LEN + self.slot.map_or(0, |_| 4) + self.body.len()
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length field exceeds the maximum; nothing was allocated for it.
    #[error("frame of {size} bytes exceeds the maximum frame size of {max} bytes")]
    TooLarge {
        /// The announced (or attempted) length.
        size: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The bytes are not a frame of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// An encrypted record failed authentication (or could not be sealed).
    #[error("{0}")]
    Unauthentic(String),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Encodes and decodes [`Frame`]s, refusing any longer than `max_frame`.
#[derive(Debug)]
pub struct FrameCodec {
    max_frame: usize,
    /// The length of the frame whose prefix has been consumed but whose rest has not all
    /// arrived yet.
    expected: Option<usize>,
}

impl FrameCodec {
    /// A codec refusing frames whose length field exceeds `max_frame`.
    pub fn new(max_frame: usize) -> FrameCodec {
        FrameCodec {
            max_frame: max_frame.clamp(HEADER_LEN, u32::MAX as usize),
            expected: None,
        }
    }

    /// The largest length field this codec accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Changes the largest length field accepted from now on (raised once a peer has
    /// completed the handshake).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame.clamp(HEADER_LEN, u32::MAX as usize);
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let length = match self.expected {
            Some(length) => length,
            None => {
                let Some(mut prefix) = src.get(..LENGTH_LEN) else {
                    return Ok(None);
                };
                let length = prefix.get_u32() as usize;
                // Both checks come before any buffer is reserved for the frame.
                if length > self.max_frame {
                    return Err(FrameError::TooLarge {
                        size: length as u64,
                        max: self.max_frame,
                    });
                }
                if length < HEADER_LEN {
                    return Err(FrameError::Malformed(format!(
                        "length {length} is shorter than the {HEADER_LEN}-byte header"
                    )));
                }
                src.advance(LENGTH_LEN);
                self.expected = Some(length);
                length
            }
        };
        if src.len() < length {
            src.reserve(length - src.len());
            return Ok(None);
        }
        self.expected = None;
        let mut frame = src.split_to(length);
        let byte = frame.get_u8();
        let reverse = byte & REVERSE != 0;
        let kind = FrameKind::from_byte(byte & !REVERSE)
            .filter(|kind| !reverse || kind.may_be_reverse())
            .ok_or_else(|| FrameError::Malformed(format!("unknown frame kind {byte:#04x}")))?;
        let request_id = frame.get_u64();
        Ok(Some(Frame {
            kind,
            request_id,
            slot: None,
            body: frame.freeze(),
            reverse,
        }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame(&frame, dst, self.max_frame)
    }
}

/// Appends `frame`'s wire form to `dst`, refusing a frame longer than `max_frame`.
pub fn encode_frame(frame: &Frame, dst: &mut BytesMut, max_frame: usize) -> Result<(), FrameError> {
    dst.reserve(LENGTH_LEN + frame.wire_length());
    encode_header(frame, dst, max_frame)?;
    dst.extend_from_slice(&frame.body);
    Ok(())
}

/// Appends everything of `frame`'s wire form but its body (length prefix, kind, request id
/// and slot), so that a large body can be written from where it is, uncopied.
pub fn encode_header(
    frame: &Frame,
    dst: &mut BytesMut,
    max_frame: usize,
) -> Result<(), FrameError> {
    let length = frame.wire_length();
    if length > max_frame.min(u32::MAX as usize) {
        return Err(FrameError::TooLarge {
            size: length as u64,
            max: max_frame,
        });
    }
    // Fits: checked against u32::MAX above.
    dst.put_u32(length as u32);
    dst.put_u8(frame.kind_byte());
    dst.put_u64(frame.request_id);
    if let Some(slot) = frame.slot {
        dst.put_u32(slot);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frame: Frame) -> BytesMut {
        let mut out = BytesMut::new();
        FrameCodec::new(DEFAULT_MAX_FRAME)
            .encode(frame, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn golden_bytes() {
        let bytes = encode(Frame::new(FrameKind::Request, 0x0102, &b"hi"[..]));
        assert_eq!(
            &bytes[..],
            &[0, 0, 0, 11, 0x06, 0, 0, 0, 0, 0, 0, 0x01, 0x02, b'h', b'i'][..]
        );
    }

    #[test]
    fn decodes_what_it_encodes() {
        let frame = Frame::new(FrameKind::Response, u64::MAX, vec![7; 1000]);
        let mut bytes = encode(frame.clone());
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME);
        assert_eq!(codec.decode(&mut bytes).unwrap(), Some(frame));
        assert!(bytes.is_empty());
    }

    #[test]
    fn partial_reads_yield_nothing_until_the_frame_is_whole() {
        let a = Frame::new(FrameKind::Tell, 0, &b"first"[..]);
        let b = Frame::new(FrameKind::Request, 9, &b"second"[..]);
        let mut wire = encode(a.clone());
        wire.extend_from_slice(&encode(b.clone()));
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME);
        let mut buffer = BytesMut::new();
        let mut decoded = Vec::new();
        // One byte at a time, as a slow peer would send them.
        for byte in wire {
            buffer.put_u8(byte);
            while let Some(frame) = codec.decode(&mut buffer).unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, vec![a, b]);
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut codec = FrameCodec::new(1024);
        let mut buffer = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0x06][..]);
        let capacity = buffer.capacity();
        match codec.decode(&mut buffer) {
            Err(FrameError::TooLarge { size, max }) => {
                assert_eq!((size, max), (u64::from(u32::MAX), 1024));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(buffer.capacity(), capacity, "nothing was reserved");
    }

    #[test]
    fn oversized_frame_is_not_encoded() {
        let mut codec = FrameCodec::new(64);
        let mut out = BytesMut::new();
        let result = codec.encode(Frame::new(FrameKind::Request, 1, vec![0; 100]), &mut out);
        assert!(matches!(
            result,
            Err(FrameError::TooLarge { size: 109, max: 64 })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn unknown_kind_and_short_length_are_malformed() {
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME);
        let mut unknown = BytesMut::from(&[0, 0, 0, 9, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0][..]);
        assert!(matches!(
            codec.decode(&mut unknown),
            Err(FrameError::Malformed(m)) if m.contains("0x7f")
        ));
        let mut short = BytesMut::from(&[0, 0, 0, 3, 1, 2, 3][..]);
        assert!(matches!(
            codec.decode(&mut short),
            Err(FrameError::Malformed(_))
        ));
    }
}
