//! The encrypted channel a shared secret gives a connection once its key exchange is done.
//!
//! Sans I/O: [`Sealer`] turns plaintext bytes into records, [`Opener`] turns records back,
//! and [`WireCodec`] puts an opener in front of the frame decoder. The socket tasks only move
//! the bytes.
//!
//! ```text
//! record = length: u16 (big-endian, 16..=65535) | ciphertext (length bytes, 16-byte tag last)
//! ```
//!
//! Each record is one Noise transport message: ChaCha20-Poly1305 under the direction's
//! session key, with a nonce that counts the records sent in that direction (0, 1, 2, ...) and
//! is never sent. The plaintext inside the records is the ordinary stream of frames, cut at
//! any point: a frame may span records and a record may hold many frames. A record that was
//! injected, altered, replayed, reordered or dropped fails its tag (the receiver expects the
//! next nonce), and the connection is closed.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use tokio_util::codec::Decoder;

use crate::frame::{Frame, FrameCodec, FrameError};
use crate::handshake::Channel;

/// Bytes of a record's length prefix.
pub const RECORD_HEADER: usize = 2;
/// Bytes of the authentication tag that ends each record.
pub const TAG_LEN: usize = 16;
/// The largest record ciphertext (a Noise message), tag included.
pub const RECORD_MAX: usize = 65535;
/// The most plaintext one record carries.
pub const RECORD_PLAIN_MAX: usize = RECORD_MAX - TAG_LEN;

/// The session keys of one connection, both directions, from a completed key exchange.
#[derive(Clone)]
pub struct SessionKeys(pub(crate) Arc<snow::StatelessTransportState>);

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

impl SessionKeys {
    /// The sealer for what this side sends and the opener for what it receives.
    pub fn split(self) -> (Sealer, Opener) {
        (
            Sealer {
                keys: self.clone(),
                nonce: 0,
            },
            Opener {
                keys: self,
                nonce: 0,
            },
        )
    }
}

/// Encrypts what one side sends, record by record.
#[derive(Debug)]
pub struct Sealer {
    keys: SessionKeys,
    nonce: u64,
}

impl Sealer {
    /// Appends `plain`, as records, to `out`.
    pub fn seal(&mut self, mut plain: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
        out.reserve(
            plain.len() + plain.len().div_ceil(RECORD_PLAIN_MAX) * (RECORD_HEADER + TAG_LEN),
        );
        while !plain.is_empty() {
            let take = plain.len().min(RECORD_PLAIN_MAX);
            let sealed = take + TAG_LEN;
            // Fits: RECORD_MAX is u16::MAX.
            out.put_u16(sealed as u16);
            let start = out.len();
            out.resize(start + sealed, 0);
            self.keys
                .0
                .write_message(self.nonce, &plain[..take], &mut out[start..])
                .map_err(|e| FrameError::Unauthentic(format!("sealing a record failed: {e}")))?;
            self.nonce += 1;
            plain = &plain[take..];
        }
        Ok(())
    }
}

/// Decrypts what one side receives, record by record.
#[derive(Debug)]
pub struct Opener {
    keys: SessionKeys,
    nonce: u64,
}

impl Opener {
    /// Moves every complete record at the front of `src`, decrypted, to the end of `plain`.
    /// A record that fails its tag is an error: the connection must be closed.
    pub fn open(&mut self, src: &mut BytesMut, plain: &mut BytesMut) -> Result<(), FrameError> {
        while let Some(prefix) = src.get(..RECORD_HEADER) {
            let length = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
            if length < TAG_LEN {
                return Err(FrameError::Unauthentic(format!(
                    "a record of {length} bytes is shorter than its tag"
                )));
            }
            if src.len() < RECORD_HEADER + length {
                src.reserve(RECORD_HEADER + length - src.len());
                return Ok(());
            }
            let record = src.split_to(RECORD_HEADER + length);
            let start = plain.len();
            // Room for the whole ciphertext: the cipher opens it in place there.
            plain.resize(start + length, 0);
            let opened =
                self.keys
                    .0
                    .read_message(self.nonce, &record[RECORD_HEADER..], &mut plain[start..]);
            plain.truncate(start + length - TAG_LEN);
            if opened.is_err() {
                plain.truncate(start);
                return Err(FrameError::Unauthentic(format!(
                    "record {} failed authentication: it was altered, injected, replayed or \
                     reordered, or does not come from the peer that did the key exchange",
                    self.nonce
                )));
            }
            self.nonce += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
impl Opener {
    /// An opener with the same keys, expecting the first record again.
    pub(crate) fn clone_for_test(&self) -> Opener {
        Opener {
            keys: self.keys.clone(),
            nonce: 0,
        }
    }
}

/// The frame decoder of one connection: frames straight from the socket until a key exchange
/// has completed, frames from opened records afterwards. Starts with the small pre-handshake
/// frame limit; [`WireCodec::established`] raises it.
#[derive(Debug)]
pub struct WireCodec {
    frames: FrameCodec,
    opener: Option<Opener>,
    plain: BytesMut,
}

impl WireCodec {
    /// The connection has been quiet: the buffer of opened records is given back when it
    /// holds nothing (see `io::shrink_read_buffer`).
    pub(crate) fn shrink(&mut self) {
        if self.plain.is_empty() && self.plain.capacity() > crate::io::READ_START {
            self.plain = BytesMut::new();
        }
    }

    /// A decoder accepting frames of at most `max_frame` bytes, in the clear.
    pub fn new(max_frame: usize) -> WireCodec {
        WireCodec {
            frames: FrameCodec::new(max_frame),
            opener: None,
            plain: BytesMut::new(),
        }
    }

    /// The handshake is done: accept frames up to `max_frame`, and, with a shared secret,
    /// only inside records `opener` can open.
    pub fn established(&mut self, max_frame: usize, opener: Option<Opener>) {
        self.frames.set_max_frame(max_frame);
        self.opener = opener;
    }

    /// The handshake ended with `channel`: switches this decoder over (see
    /// [`WireCodec::established`]) and returns the sealer for what this side sends, if the
    /// channel is sealed.
    pub fn establish(&mut self, max_frame: usize, channel: Channel) -> Option<Sealer> {
        match channel {
            Channel::Plain => {
                self.established(max_frame, None);
                None
            }
            Channel::Sealed(keys) => {
                let (sealer, opener) = keys.split();
                self.established(max_frame, Some(opener));
                Some(sealer)
            }
        }
    }

    /// Whether frames arrive inside encrypted records.
    pub fn is_sealed(&self) -> bool {
        self.opener.is_some()
    }
}

impl Decoder for WireCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() == src.capacity() && src.capacity() < crate::io::READ_BURST && !src.is_empty()
        {
            // The read filled a small buffer: more was waiting. Room for a burst now, while
            // the buffer is still whole (no frame split off it), costs at most a small copy.
            src.reserve(crate::io::READ_BURST);
        }
        let frame = match &mut self.opener {
            None => self.frames.decode(src)?,
            Some(opener) => {
                opener.open(src, &mut self.plain)?;
                self.frames.decode(&mut self.plain)?
            }
        };
        Ok(frame)
    }
}
