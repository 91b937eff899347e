//! [`ConnectRetry`]: how `connect` tries again when a peer cannot be reached yet.

use std::time::Duration;

/// How `connect` tries again when the peer cannot be reached: [`RpcError::ConnectFailed`]
/// (the address did not resolve, the connection was refused or unreachable, or no handshake
/// completed within the transport's connect timeout). A peer that answered and refused (no
/// such endpoint, another gateway or fingerprint, failed authentication) is not tried again:
/// that would not change its answer.
///
/// The delays between attempts double from `first_delay` up to `max_delay`; there is no
/// jitter. The default, [`ConnectRetry::none`], tries once.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::ConnectRetry;
///
/// // Up to 10 attempts, 100 ms, 200 ms, 400 ms, 800 ms, then 1 s apart.
/// let retry = ConnectRetry::backoff(10, Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(retry.delay_before(1), Duration::from_millis(100));
/// assert_eq!(retry.delay_before(4), Duration::from_millis(800));
/// assert_eq!(retry.delay_before(9), Duration::from_secs(1));
/// ```
///
/// [`RpcError::ConnectFailed`]: crate::RpcError::ConnectFailed
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRetry {
    attempts: u32,
    first_delay: Duration,
    max_delay: Duration,
}

impl ConnectRetry {
    /// One attempt: a peer that cannot be reached fails the `connect` at once.
    pub fn none() -> ConnectRetry {
        ConnectRetry {
            attempts: 1,
            first_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }

    /// Up to `attempts` attempts in all (at least one), waiting `first_delay` before the
    /// second and twice as long before each next one, at most `max_delay`.
    pub fn backoff(attempts: u32, first_delay: Duration, max_delay: Duration) -> ConnectRetry {
        ConnectRetry {
            attempts: attempts.max(1),
            first_delay,
            max_delay: max_delay.max(first_delay),
        }
    }

    /// How many attempts in all.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait before retry number `retry` (1 for the second attempt).
    pub fn delay_before(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.first_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }
}

impl Default for ConnectRetry {
    fn default() -> Self {
        ConnectRetry::none()
    }
}
