//! The writing half every connection shares.

use std::net::SocketAddr;

use futures::SinkExt;
use futures::stream::SplitSink;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::frame::{Frame, FrameCodec, FrameError};

/// A connection's frames, both ways.
pub(crate) type FramedStream = Framed<TcpStream, FrameCodec>;

/// Writes the frames queued in `outbox` until `closing` fires or every sender is gone, then
/// writes what is still queued and closes the socket's write side.
///
/// Every frame already queued when the writer wakes goes out in one flush: under load, many
/// replies share one system call.
async fn write_frames(
    mut sink: SplitSink<FramedStream, Frame>,
    mut outbox: mpsc::UnboundedReceiver<Frame>,
    closing: CancellationToken,
    linger: impl Fn() -> bool + Send + 'static,
) -> Result<(), FrameError> {
    loop {
        let frame = tokio::select! {
            biased;
            frame = outbox.recv() => frame,
            () = closing.cancelled() => None,
        };
        let Some(frame) = frame else { break };
        sink.feed(frame).await?;
        while let Ok(frame) = outbox.try_recv() {
            sink.feed(frame).await?;
        }
        if linger() {
            tokio::task::yield_now().await;
            while let Ok(frame) = outbox.try_recv() {
                sink.feed(frame).await?;
            }
        }
        sink.flush().await?;
    }
    outbox.close();
    while let Ok(frame) = outbox.try_recv() {
        sink.feed(frame).await?;
    }
    sink.close().await
}

/// Runs [`write_frames`] as its own task; a write failure cancels `closing`, which ends the
/// connection's reading side too.
pub(crate) fn spawn_writer(
    sink: SplitSink<FramedStream, Frame>,
    outbox: mpsc::UnboundedReceiver<Frame>,
    closing: CancellationToken,
    peer: SocketAddr,
    linger: impl Fn() -> bool + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(error) = write_frames(sink, outbox, closing.clone(), linger).await {
            tracing::debug!(%peer, "writing to the connection failed: {error}");
            closing.cancel();
        }
    })
}
