//! The writing half every connection shares.

use futures::SinkExt;
use futures::stream::SplitSink;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
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
pub(crate) async fn write_frames(
    mut sink: SplitSink<FramedStream, Frame>,
    mut outbox: mpsc::UnboundedReceiver<Frame>,
    closing: CancellationToken,
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
        sink.flush().await?;
    }
    outbox.close();
    while let Ok(frame) = outbox.try_recv() {
        sink.feed(frame).await?;
    }
    sink.close().await
}
