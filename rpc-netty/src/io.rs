//! The writing side both ends of a connection share: an [`Outbox`] that senders encode their
//! frames into, the writer task that drains it, and carrying out a keep-alive deadline.
//!
//! Senders (callers on the client, endpoints' replies on the server) encode each frame
//! straight into the connection's shared buffer, under a short lock. The writer takes the
//! whole buffer at once and writes it with one system call: under load, many frames share a
//! write, and no frame is copied twice or queued as an object of its own.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rpc_core::RpcError;
use rpc_core::transport::EncodeInvocation;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::channel::{Sealer, WireCodec};
use crate::frame::{
    Frame, FrameError, FrameKind, HEADER_LEN, LENGTH_LEN, encode_frame, encode_header,
};
use crate::session::Tick;

/// The reading half of a connection, plain TCP or TLS.
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection, plain TCP or TLS.
pub(crate) type Writer = Box<dyn SocketWrite>;

/// A connection's writing half. Plain TCP also lends its socket to the outbox for writes a
/// frame's producer makes itself ([`Outbox`], "direct writes").
pub(crate) trait SocketWrite: AsyncWrite + Send + Unpin {
    /// The socket, for a producer's own non-blocking write: `None` for TLS and simulated
    /// streams.
    fn direct(&self) -> Option<Direct> {
        None
    }
}

/// The socket of a plain TCP connection, shared by its writer task and its outbox.
pub(crate) type Direct = std::sync::Arc<tokio::net::tcp::OwnedWriteHalf>;

/// Any writing half, without direct writes (TLS, simulated TCP).
#[cfg(any(feature = "tls", feature = "sim"))]
pub(crate) struct Wrapped<W>(pub(crate) W);

#[cfg(any(feature = "tls", feature = "sim"))]
impl<W: AsyncWrite + Unpin> AsyncWrite for Wrapped<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(any(feature = "tls", feature = "sim"))]
impl<W: AsyncWrite + Send + Unpin> SocketWrite for Wrapped<W> {}

/// Plain TCP's writing half, shared with the outbox. Its writing side is shut when the last
/// handle goes (tokio's `OwnedWriteHalf` does it on drop): the writer task's, once the outbox
/// has given its own up on closing.
pub(crate) struct TcpWrite(pub(crate) Direct);

impl AsyncWrite for TcpWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let stream: &tokio::net::TcpStream = (*self.0).as_ref();
        loop {
            std::task::ready!(stream.poll_write_ready(cx))?;
            match stream.try_write(buf) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl SocketWrite for TcpWrite {
    fn direct(&self) -> Option<Direct> {
        Some(std::sync::Arc::clone(&self.0))
    }
}

/// A frame written by its producer goes out whole only up to this size; larger ones wait for
/// the writer task.
const DIRECT_MAX: usize = 32 * 1024;

/// The halves of a plain TCP connection (split without a lock).
pub(crate) fn plain(stream: crate::net::Stream) -> (Reader, Writer) {
    stream.split()
}

/// A connection's read buffer starts this small (tokio-util's default is 8 KiB): most of
/// an idle connection's memory would otherwise be its two read buffers. A read that fills it
/// grows it by [`READ_BURST`] bytes, and a keep-alive interval without a call gives the
/// larger buffer back ([`shrink_read_buffer`]).
pub(crate) const READ_START: usize = 1024;

/// How much room a read buffer gains when a read filled it: more was waiting.
pub(crate) const READ_BURST: usize = 8 * 1024;

/// Gives back a read buffer grown by a burst, when it holds nothing: the connection has
/// had no call for a keep-alive interval.
pub(crate) fn shrink_read_buffer<R>(frames: &mut tokio_util::codec::FramedRead<R, WireCodec>) {
    let buffer = frames.read_buffer_mut();
    if buffer.is_empty() && buffer.capacity() > READ_START {
        *buffer = BytesMut::with_capacity(READ_START);
    }
    frames.decoder_mut().shrink();
}

/// A writer keeps at most this much buffer capacity between batches; a larger one (after a
/// large frame) is given back.
const KEEP_CAPACITY: usize = 64 * 1024;

/// The frames waiting to be written on one connection.
pub(crate) struct Outbox {
    state: Mutex<Pending>,
    /// Wakes the writer when the buffer goes from empty to not empty, or on close.
    wake: Notify,
    /// Signalled whenever the writer has taken a batch: room for more.
    pub(crate) room: Notify,
    /// Signalled to every waiter whenever the writer has written a batch, and on close: for
    /// stream producers waiting for room, of which there may be many.
    pub(crate) drained: Notify,
    /// Bytes waiting, mirrored from `state` (written under its lock) so that checking for
    /// room takes no lock.
    queued: AtomicUsize,
    /// Bytes the writer has taken and not finished writing: they count against the limit
    /// until the socket has accepted them, so a peer that stops reading cannot make the
    /// outbox forget them.
    writing: AtomicUsize,
    max_frame: usize,
    /// Calls are refused while this many bytes wait.
    max_bytes: usize,
    /// Cancelled by [`Outbox::abort`]: the writer gives up what it is writing.
    aborted: CancellationToken,
}

struct Pending {
    /// Large frame bodies, written from where they are, with the frames queued before and
    /// between them; all of it goes out before `buffer`.
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    chunked: usize,
    /// Encoded frames queued after the last chunk, in order.
    buffer: BytesMut,
    /// No frame is accepted any more; the writer writes what is left and stops.
    closed: bool,
    /// The socket, for direct writes (plain TCP without a secret); given up on closing.
    direct: Option<Direct>,
    /// The socket is being written: by the writer task, or by a producer writing its frame
    /// itself. Whoever holds it writes alone (and holds the sealer); a producer that
    /// finishes wakes the writer if more was queued meanwhile.
    busy: bool,
    /// With a shared secret, the sealer, here while nobody writes.
    sealer: Option<Sealer>,
    /// The channel is sealed: nothing may go out without the sealer.
    sealed: bool,
    /// A producer's buffer for its sealed record, kept between direct writes.
    seal_buffer: BytesMut,
    /// What a direct write on a sealed channel could not write: sealed already, it goes
    /// out first and as it is.
    presealed: Option<Bytes>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.buffer.is_empty() && self.chunks.is_empty() && self.presealed.is_none()
    }
}

/// A frame body at least this large is queued by reference instead of copied.
const LARGE_BODY: usize = 32 * 1024;

/// The outbox no longer accepts frames: its connection is closing or closed.
#[derive(Debug)]
pub(crate) struct Closed;

/// A reply would take the outbox past its limit; this many bytes wait already.
#[derive(Debug)]
pub(crate) struct Overflow(pub(crate) usize);

/// Why a call frame was not queued.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The connection is closing or closed.
    Closed,
    /// Too many bytes already wait to be sent.
    Full(usize),
    /// The invocation could not be encoded, or its frame would be too large; nothing was
    /// queued.
    Call(RpcError),
}

impl Outbox {
    pub(crate) fn new(max_frame: usize, max_bytes: usize) -> Outbox {
        Outbox {
            state: Mutex::new(Pending {
                chunks: VecDeque::new(),
                chunked: 0,
                buffer: BytesMut::new(),
                closed: false,
                direct: None,
                busy: false,
                sealer: None,
                sealed: false,
                seal_buffer: BytesMut::new(),
                presealed: None,
            }),
            wake: Notify::new(),
            room: Notify::new(),
            drained: Notify::new(),
            queued: AtomicUsize::new(0),
            writing: AtomicUsize::new(0),
            max_frame,
            max_bytes,
            aborted: CancellationToken::new(),
        }
    }

    /// Whether the outbox is under its byte limit.
    pub(crate) fn has_room(&self) -> bool {
        self.held() < self.max_bytes
    }

    /// Bytes queued or being written.
    pub(crate) fn held(&self) -> usize {
        self.queued.load(Ordering::Acquire) + self.writing.load(Ordering::Acquire)
    }

    /// Records how many bytes `pending` holds; called under its lock after each change.
    fn count(&self, pending: &Pending) {
        let presealed = pending.presealed.as_ref().map_or(0, Bytes::len);
        self.queued.store(
            pending.chunked + pending.buffer.len() + presealed,
            Ordering::Release,
        );
    }

    fn state(&self) -> MutexGuard<'_, Pending> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection is established: frames go out sealed by `sealer` (a shared secret),
    /// and producers may write their frames to `socket` themselves when it is idle and their
    /// frame is alone (see `push_call` and `push_reply`): no hop through the writer task.
    /// Both are set under one lock, so no direct write can go out unsealed.
    pub(crate) fn establish(&self, socket: Option<Direct>, sealer: Option<Sealer>) {
        let mut pending = self.state();
        pending.sealed = sealer.is_some();
        pending.sealer = sealer;
        if !pending.closed {
            pending.direct = socket;
        }
    }

    /// Queues `frame`. Fails if the outbox is closed; a frame over the maximum size (which
    /// callers check first) is dropped with a log.
    pub(crate) fn push(&self, frame: Frame) -> Result<(), Closed> {
        let pending = self.state();
        if pending.closed {
            return Err(Closed);
        }
        self.queue(pending, frame, false);
        Ok(())
    }

    /// Queues a reply frame unless it would take the bytes waiting past the limit (a frame
    /// alone is let in when nothing waits): then nothing is queued, and the caller closes the
    /// connection. A closed outbox drops the frame silently: its connection is ending.
    /// `alone`: no other request awaits a reply on the connection, so the reply may be
    /// written at once by the caller (see [`Outbox::write_now`]).
    pub(crate) fn push_reply(&self, frame: Frame, alone: bool) -> Result<(), Overflow> {
        let pending = self.state();
        if pending.closed {
            return Ok(());
        }
        // `queued` is kept under the lock held here, so this is exact.
        let held = self.held();
        if held > 0 && held + LENGTH_LEN + HEADER_LEN + frame.body.len() > self.max_bytes {
            return Err(Overflow(held));
        }
        self.queue(pending, frame, alone);
        Ok(())
    }

    fn queue(&self, mut pending: MutexGuard<'_, Pending>, frame: Frame, alone: bool) {
        let was_empty = pending.is_empty();
        let queued = if frame.body.len() >= LARGE_BODY {
            encode_header(&frame, &mut pending.buffer, self.max_frame).map(|()| {
                let head = pending.buffer.split().freeze();
                pending.chunked += head.len() + frame.body.len();
                pending.chunks.push_back(head);
                pending.chunks.push_back(frame.body);
            })
        } else {
            encode_frame(&frame, &mut pending.buffer, self.max_frame)
        };
        if let Err(error) = queued {
            tracing::error!("dropped an outgoing frame: {error}");
            return;
        }
        self.count(&pending);
        self.wake_or_write(pending, was_empty && alone, was_empty);
    }

    /// After a frame was queued: writes it now if `direct` is allowed and the socket is free
    /// with nothing else waiting, or else wakes the writer if the outbox was empty.
    fn wake_or_write(&self, pending: MutexGuard<'_, Pending>, direct: bool, was_empty: bool) {
        if direct
            && !pending.busy
            && pending.sealed == pending.sealer.is_some()
            && pending.chunks.is_empty()
            && pending.buffer.len() <= DIRECT_MAX
        {
            if let Some(socket) = pending.direct.clone() {
                self.write_now(pending, socket);
                return;
            }
        }
        drop(pending);
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Writes what is queued (one frame, just queued in an idle outbox) on the caller's
    /// thread, without blocking: a call alone on its connection skips the hop to the writer
    /// task and back. What the socket does not take at once is put back first in line, and
    /// the writer takes it from there; so is anything queued meanwhile.
    fn write_now(&self, mut pending: MutexGuard<'_, Pending>, socket: Direct) {
        let mut bytes = std::mem::take(&mut pending.buffer);
        let mut sealer = pending.sealer.take();
        let mut sealed = std::mem::take(&mut pending.seal_buffer);
        pending.busy = true;
        self.writing.store(bytes.len(), Ordering::Release);
        self.count(&pending);
        drop(pending);
        // On a sealed channel the frame goes out as one record; if it cannot be sealed, it is
        // left to the writer, which meets the same error and closes the connection.
        let sealing = match &mut sealer {
            None => Some(false),
            Some(sealer) => {
                sealed.clear();
                sealer.seal(&bytes, &mut sealed).ok().map(|()| true)
            }
        };
        // An error other than a full socket is left to the writer, which meets it too.
        let written = match sealing {
            Some(false) => socket.try_write(&bytes).unwrap_or(0),
            Some(true) => socket.try_write(&sealed).unwrap_or(0),
            None => 0,
        };
        drop(socket);
        let mut pending = self.state();
        pending.busy = false;
        pending.sealer = sealer;
        self.writing.store(0, Ordering::Release);
        if self.aborted.is_cancelled() {
            // Aborted meanwhile: what is left is dropped with the rest.
        } else {
            let out = if sealing == Some(true) {
                &sealed
            } else {
                &bytes
            };
            if written < out.len() {
                if sealing == Some(true) {
                    pending.presealed = Some(sealed.split().freeze().slice(written..));
                } else {
                    let rest = bytes.split_off(written).freeze();
                    pending.chunked += rest.len();
                    pending.chunks.push_front(rest);
                }
            } else if pending.buffer.capacity() == 0 {
                // Nothing was queued meanwhile: the buffer serves the next frame.
                bytes.clear();
                pending.buffer = bytes;
            }
        }
        if sealed.capacity() <= KEEP_CAPACITY {
            pending.seal_buffer = sealed;
        }
        self.count(&pending);
        let wake = !pending.is_empty() || pending.closed;
        drop(pending);
        if wake {
            self.wake.notify_one();
        }
        if written > 0 {
            self.wrote();
        }
    }

    /// Bytes left for the socket: room for more, for whoever waits for it.
    fn wrote(&self) {
        self.room.notify_one();
        self.drained.notify_waiters();
    }

    /// Queues a `Request` (with its time budget) or a `Tell` (`budget` `None`) whose
    /// invocation `encode` writes in place, after the header, slot and budget. On failure, or
    /// if the frame would exceed the maximum, the buffer is left as it was: nothing of the
    /// call is sent.
    ///
    /// `alone`: the call is an ask and no other awaits a reply on the connection, so it may
    /// be written at once by the caller (see [`Outbox::write_now`]).
    pub(crate) fn push_call(
        &self,
        request_id: u64,
        slot: u32,
        budget: Option<u32>,
        encode: EncodeInvocation<'_>,
        reverse: bool,
        alone: bool,
    ) -> Result<(), Refused> {
        let mut pending = self.state();
        if pending.closed {
            return Err(Refused::Closed);
        }
        if !self.has_room() {
            return Err(Refused::Full(self.max_bytes));
        }
        let was_empty = pending.is_empty();
        let buffer = &mut pending.buffer;
        let start = buffer.len();
        buffer.put_u32(0); // the length, known once the invocation is written
        let kind = match budget {
            Some(_) => FrameKind::Request,
            None => FrameKind::Tell,
        };
        buffer.put_u8(kind as u8 | if reverse { crate::frame::REVERSE } else { 0 });
        buffer.put_u64(request_id);
        buffer.put_u32(slot);
        if let Some(budget) = budget {
            buffer.put_u32(budget);
        }
        if let Err(error) = encode(buffer) {
            buffer.truncate(start);
            return Err(Refused::Call(error));
        }
        let length = buffer.len() - start - LENGTH_LEN;
        if length > self.max_frame.min(u32::MAX as usize) {
            buffer.truncate(start);
            return Err(Refused::Call(RpcError::FrameTooLarge {
                size: length,
                max: self.max_frame,
            }));
        }
        // Fits: checked against u32::MAX above.
        buffer[start..start + LENGTH_LEN].copy_from_slice(&(length as u32).to_be_bytes());
        self.count(&pending);
        self.wake_or_write(pending, was_empty && alone, was_empty);
        Ok(())
    }

    /// Accepts no more frames; the writer writes what is queued, then stops.
    pub(crate) fn close(&self) {
        let socket = {
            let mut pending = self.state();
            pending.closed = true;
            pending.direct.take()
        };
        // Only the writer task's handle is left, so the socket's writing side is shut
        // once the writer has written what remains and ends.
        drop(socket);
        self.wake.notify_one();
        self.drained.notify_waiters();
    }

    /// Whether the outbox accepts no more frames.
    pub(crate) fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Waits until fewer than `limit` bytes are queued or being written (or the outbox is
    /// closed).
    pub(crate) async fn wait_below(&self, limit: usize) {
        loop {
            let drained = self.drained.notified();
            let mut drained = std::pin::pin!(drained);
            drained.as_mut().enable();
            if self.held() < limit.min(self.max_bytes) || self.is_closed() {
                return;
            }
            drained.await;
        }
    }

    /// Accepts no more frames and drops what is queued; the writer stops at once, even in
    /// the middle of a write the peer does not read.
    pub(crate) fn abort(&self) {
        let mut pending = self.state();
        pending.closed = true;
        pending.chunks = VecDeque::new();
        pending.chunked = 0;
        pending.buffer = BytesMut::new();
        let socket = pending.direct.take();
        self.count(&pending);
        drop(pending);
        drop(socket);
        self.aborted.cancel();
        self.wake.notify_one();
        self.drained.notify_waiters();
    }
}

/// One direction of calls' frames on a connection's [`Outbox`]: the calls the connecting
/// side makes (and their answers), or with `reverse` the calls the accepting side makes to
/// the connecting side's endpoints (client mode). Every frame pushed through it is marked so.
/// Everything else is the outbox's.
#[derive(Clone)]
pub(crate) struct Lane {
    outbox: std::sync::Arc<Outbox>,
    reverse: bool,
}

impl Lane {
    pub(crate) fn new(outbox: std::sync::Arc<Outbox>, reverse: bool) -> Lane {
        Lane { outbox, reverse }
    }

    /// The outbox itself.
    pub(crate) fn outbox(&self) -> &std::sync::Arc<Outbox> {
        &self.outbox
    }

    /// [`Outbox::push`], marked.
    pub(crate) fn push(&self, frame: Frame) -> Result<(), Closed> {
        self.outbox.push(frame.reversed(self.reverse))
    }

    /// [`Outbox::push_reply`], marked.
    pub(crate) fn push_reply(&self, frame: Frame, alone: bool) -> Result<(), Overflow> {
        self.outbox.push_reply(frame.reversed(self.reverse), alone)
    }

    /// [`Outbox::push_call`], marked.
    pub(crate) fn push_call(
        &self,
        request_id: u64,
        slot: u32,
        budget: Option<u32>,
        encode: EncodeInvocation<'_>,
        alone: bool,
    ) -> Result<(), Refused> {
        self.outbox
            .push_call(request_id, slot, budget, encode, self.reverse, alone)
    }
}

impl std::ops::Deref for Lane {
    type Target = Outbox;

    fn deref(&self) -> &Outbox {
        &self.outbox
    }
}

/// Writes one frame straight to the socket: the handshake's frames, before the writer task
/// exists.
pub(crate) async fn write_frame(socket: &mut Writer, frame: &Frame) -> std::io::Result<()> {
    let mut bytes = BytesMut::new();
    encode_frame(frame, &mut bytes, usize::MAX).map_err(std::io::Error::other)?;
    socket.write_all(&bytes).await?;
    socket.flush().await
}

/// What the writer task does next.
enum Batch {
    /// Write these: sealed bytes left by a direct write, large bodies, then the rest.
    Write(Option<Bytes>, VecDeque<Bytes>, BytesMut),
    /// Wait for frames, or for a producer writing directly to finish; `closed`: the outbox
    /// accepts no more frames already.
    Wait { closed: bool },
}

/// Writes what `outbox` receives until it is closed (or `closing` fires, which closes it),
/// then writes what is left and shuts the socket's writing side. With a sealer (a shared
/// secret, given by [`Outbox::establish`]), every batch goes out as encrypted records.
pub(crate) async fn write_loop(
    outbox: &Outbox,
    mut socket: Writer,
    closing: &CancellationToken,
    linger: Duration,
) -> Result<(), FrameError> {
    // Once the connection is closing, writes may take `linger` more, no longer.
    let given_up = async {
        closing.cancelled().await;
        tokio::time::sleep(linger).await;
    };
    tokio::pin!(given_up);
    let mut spare = BytesMut::new();
    let mut sealed = BytesMut::new();
    // The sealer (`Outbox::establish`) stays with the outbox while this task is not writing,
    // so that a producer writing its own frame can seal it (see `Outbox::write_now`).
    let mut sealer: Option<Sealer> = None;
    loop {
        let batch = {
            let mut pending = outbox.state();
            if pending.busy {
                // A producer is writing its frame itself; it wakes this task when done (and
                // always once the outbox is closed).
                Batch::Wait {
                    closed: pending.closed,
                }
            } else if pending.is_empty() {
                if pending.closed {
                    break;
                }
                Batch::Wait { closed: false }
            } else {
                pending.busy = true;
                pending.chunked = 0;
                sealer = pending.sealer.take();
                let presealed = pending.presealed.take();
                let chunks = std::mem::take(&mut pending.chunks);
                let tail = std::mem::replace(&mut pending.buffer, std::mem::take(&mut spare));
                let taken = chunks.iter().map(Bytes::len).sum::<usize>()
                    + tail.len()
                    + presealed.as_ref().map_or(0, Bytes::len);
                outbox.writing.store(taken, Ordering::Release);
                outbox.count(&pending);
                Batch::Write(presealed, chunks, tail)
            }
        };
        match batch {
            Batch::Write(presealed, chunks, tail) => {
                if let Some(sealer) = &mut sealer {
                    sealed.clear();
                    for chunk in &chunks {
                        sealer.seal(chunk, &mut sealed)?;
                    }
                    sealer.seal(&tail, &mut sealed)?;
                }
                let write = async {
                    if let Some(presealed) = &presealed {
                        socket.write_all(presealed).await?;
                    }
                    if sealer.is_some() {
                        return socket.write_all(&sealed).await;
                    }
                    for chunk in &chunks {
                        socket.write_all(chunk).await?;
                    }
                    socket.write_all(&tail).await
                };
                tokio::select! {
                    written = write => written?,
                    () = outbox.aborted.cancelled() => {
                        return Err(FrameError::Io(std::io::Error::other(
                            "the connection was aborted with frames unwritten",
                        )));
                    }
                    () = &mut given_up => {
                        let unwritten: usize = chunks.iter().map(Bytes::len).sum::<usize>() + tail.len();
                        return Err(FrameError::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("{unwritten} bytes still unwritten {linger:?} after closing"),
                        )));
                    }
                }
                // Written: room for more.
                {
                    let mut pending = outbox.state();
                    pending.busy = false;
                    pending.sealer = sealer.take();
                }
                outbox.writing.store(0, Ordering::Release);
                outbox.wrote();
                spare = tail;
                spare.clear();
                if spare.capacity() > KEEP_CAPACITY {
                    spare = BytesMut::new();
                }
                if sealed.capacity() > KEEP_CAPACITY {
                    sealed = BytesMut::new();
                }
            }
            // Closing is watched while a producer writes too: an outbox left busy when the
            // connection closes must still end this task.
            Batch::Wait { closed } => {
                tokio::select! {
                    () = outbox.wake.notified() => {}
                    () = closing.cancelled(), if !closed => outbox.close(),
                }
            }
        }
    }
    socket.shutdown().await?;
    Ok(())
}

/// Carries out what a keep-alive deadline found on the connection to `peer`: a `Ping` into
/// `outbox`, or the reason to close the connection (logged).
pub(crate) fn keepalive_tick(tick: Tick, outbox: &Outbox, peer: SocketAddr) -> Option<String> {
    match tick {
        Tick::Quiet => None,
        Tick::Ping => {
            let _ = outbox.push(Frame::new(FrameKind::Ping, 0, Vec::new()));
            None
        }
        Tick::Dead(reason) => {
            tracing::warn!(%peer, "closing the connection: {reason}");
            Some(reason)
        }
        Tick::Idle(reason) => {
            tracing::info!(%peer, "closing the connection: {reason}");
            Some(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::FramedRead;

    use super::*;
    use crate::frame::{DEFAULT_MAX_FRAME, FrameKind};

    fn frames(count: u64) -> BytesMut {
        let mut wire = BytesMut::new();
        for id in 0..count {
            let frame = Frame::new(FrameKind::Ping, id, Bytes::from(vec![7u8; 40]));
            encode_frame(&frame, &mut wire, DEFAULT_MAX_FRAME).expect("encode");
        }
        wire
    }

    #[tokio::test]
    async fn a_read_buffer_starts_small_grows_for_a_burst_and_is_given_back_when_quiet() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut read =
            FramedRead::with_capacity(client, WireCodec::new(DEFAULT_MAX_FRAME), READ_START);
        // One small frame: the buffer stays as it started.
        server.write_all(&frames(1)).await.expect("write");
        read.next().await.expect("a frame").expect("decoded");
        assert!(read.read_buffer().capacity() <= READ_START);

        // A burst of 100 frames (about 5 KiB) waiting at once fills the small buffer.
        server.write_all(&frames(100)).await.expect("write");
        for _ in 0..100 {
            read.next().await.expect("a frame").expect("decoded");
        }
        assert!(read.read_buffer().is_empty());
        assert!(
            read.read_buffer().capacity() > READ_START,
            "a read that filled the buffer grew it"
        );

        shrink_read_buffer(&mut read);
        assert_eq!(
            read.read_buffer().capacity(),
            READ_START,
            "given back when quiet"
        );
        server.write_all(&frames(3)).await.expect("write");
        for _ in 0..3 {
            read.next().await.expect("a frame").expect("decoded");
        }
    }

    /// A connected pair over loopback: the outbox's side, split, and the peer's.
    async fn tcp_pair() -> (Writer, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (ours, theirs) = tokio::join!(tokio::net::TcpStream::connect(address), async {
            listener.accept().await.expect("accept").0
        });
        let (_read, write) = crate::net::Stream::Tcp(ours.expect("connect")).split();
        (write, theirs)
    }

    /// The outbox's writer task on `write`.
    fn spawn_writer(
        outbox: &std::sync::Arc<Outbox>,
        write: Writer,
    ) -> tokio::task::JoinHandle<Result<(), FrameError>> {
        let outbox = std::sync::Arc::clone(outbox);
        tokio::spawn(async move {
            write_loop(
                &outbox,
                write,
                &CancellationToken::new(),
                Duration::from_secs(5),
            )
            .await
        })
    }

    fn call(outbox: &Outbox, id: u64, size: usize, alone: bool) {
        let mut encode = |buffer: &mut BytesMut| {
            buffer.extend_from_slice(&id.to_be_bytes());
            buffer.resize(buffer.len() + size, 7);
            Ok(())
        };
        outbox
            .push_call(id, 0, Some(1_000), &mut encode, false, alone)
            .expect("queued");
    }

    async fn read_ids(peer: tokio::net::TcpStream, count: usize) -> Vec<u64> {
        let mut frames = FramedRead::new(peer, WireCodec::new(DEFAULT_MAX_FRAME));
        let mut ids = Vec::new();
        while ids.len() < count {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), frames.next());
            let frame = next
                .await
                .expect("in time")
                .expect("a frame")
                .expect("decoded");
            assert_eq!(frame.kind, FrameKind::Request);
            ids.push(frame.request_id);
        }
        ids
    }

    #[tokio::test]
    async fn an_ask_alone_on_an_idle_connection_is_written_by_its_caller() {
        let (write, peer) = tcp_pair().await;
        let outbox = Outbox::new(DEFAULT_MAX_FRAME, 1 << 20);
        outbox.establish(write.direct(), None);
        // No writer task runs: only the caller's own write can deliver it.
        call(&outbox, 1, 32, true);
        assert_eq!(read_ids(peer, 1).await, vec![1]);
        assert_eq!(outbox.held(), 0);
    }

    #[tokio::test]
    async fn what_the_socket_cannot_take_at_once_the_writer_sends_after_it_in_order() {
        let (write, peer) = tcp_pair().await;
        let outbox = std::sync::Arc::new(Outbox::new(DEFAULT_MAX_FRAME, 64 << 20));
        outbox.establish(write.direct(), None);
        // The peer reads nothing yet: 400 frames of 16 KiB fill the socket's buffers, so a
        // direct write is cut short and everything after it queues.
        let count = 400;
        for id in 1..=count {
            call(&outbox, id, 16 * 1024, true);
        }
        assert!(outbox.held() > 0, "the socket could not take it all");
        let writer = spawn_writer(&outbox, write);
        let ids = read_ids(peer, count as usize).await;
        assert_eq!(ids, (1..=count).collect::<Vec<_>>());
        outbox.close();
        writer.await.expect("writer").expect("wrote all");
    }

    #[tokio::test]
    async fn frames_written_by_callers_and_by_the_writer_keep_their_order() {
        let (write, peer) = tcp_pair().await;
        let outbox = std::sync::Arc::new(Outbox::new(DEFAULT_MAX_FRAME, 64 << 20));
        outbox.establish(write.direct(), None);
        let writer = spawn_writer(&outbox, write);
        let count = 2_000;
        let reading = tokio::spawn(read_ids(peer, count as usize));
        for id in 1..=count {
            // Alone or not, small or large: some go out directly, some through the writer.
            call(
                &outbox,
                id,
                if id % 7 == 0 { 40_000 } else { 64 },
                id % 3 != 0,
            );
            if id % 5 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let ids = reading.await.expect("reader");
        assert_eq!(ids, (1..=count).collect::<Vec<_>>());
        outbox.close();
        writer.await.expect("writer").expect("wrote all");
    }

    #[tokio::test]
    async fn closing_gives_the_socket_up_so_the_peer_sees_the_end() {
        let (write, mut peer) = tcp_pair().await;
        let outbox = std::sync::Arc::new(Outbox::new(DEFAULT_MAX_FRAME, 1 << 20));
        outbox.establish(write.direct(), None);
        let writer = spawn_writer(&outbox, write);
        call(&outbox, 1, 32, true);
        outbox.close();
        writer.await.expect("writer").expect("wrote all");
        let mut all = Vec::new();
        let read = tokio::io::AsyncReadExt::read_to_end(&mut peer, &mut all);
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("the end of the stream, in time")
            .expect("read");
        assert!(!all.is_empty());
    }

    /// The writer found a producer writing directly and waited for it; that producer left
    /// nothing queued (so it woke nobody), and then the connection closed: the writer still
    /// ends.
    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_closing_while_a_direct_write_held_the_socket_ends_its_writer() {
        let (write, mut peer) = tcp_pair().await;
        let outbox = std::sync::Arc::new(Outbox::new(DEFAULT_MAX_FRAME, 1 << 20));
        outbox.establish(write.direct(), None);
        outbox.state().busy = true;
        let closing = CancellationToken::new();
        let writer = tokio::spawn({
            let (outbox, closing) = (std::sync::Arc::clone(&outbox), closing.clone());
            async move { write_loop(&outbox, write, &closing, Duration::from_secs(5)).await }
        });
        // On this one thread, the writer runs until it waits, finding the socket busy.
        tokio::task::yield_now().await;
        assert!(!writer.is_finished());
        // The direct write is done, with nothing left behind it.
        outbox.state().busy = false;
        closing.cancel();
        tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .expect("the writer ended, in time")
            .expect("writer")
            .expect("closed cleanly");
        let mut all = Vec::new();
        let read = tokio::io::AsyncReadExt::read_to_end(&mut peer, &mut all);
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the end of the stream, in time")
            .expect("read");
    }

    #[test]
    fn a_buffer_holding_part_of_a_frame_is_not_shrunk() {
        let (client, _server) = tokio::io::duplex(64);
        let mut read = FramedRead::with_capacity(client, WireCodec::new(DEFAULT_MAX_FRAME), 64);
        read.read_buffer_mut().reserve(READ_BURST);
        read.read_buffer_mut().extend_from_slice(&[0, 0]);
        let capacity = read.read_buffer().capacity();
        shrink_read_buffer(&mut read);
        assert_eq!(read.read_buffer().capacity(), capacity);
        assert_eq!(&read.read_buffer()[..], &[0, 0]);
    }
}
