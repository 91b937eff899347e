//! Transport settings.

use std::time::Duration;

use crate::frame::DEFAULT_MAX_FRAME;

/// Settings of one service's transport.
#[derive(Debug, Clone)]
pub(crate) struct NettyConfig {
    /// The largest frame length accepted or sent (the length field's value).
    pub(crate) max_frame_size: usize,
    /// How long opening a TCP connection may take.
    pub(crate) connect_timeout: Duration,
    /// How long a peer may take to complete the handshake.
    pub(crate) handshake_timeout: Duration,
}

impl Default for NettyConfig {
    fn default() -> Self {
        NettyConfig {
            max_frame_size: DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}
