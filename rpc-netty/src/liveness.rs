//! Keep-alive: noticing a peer that has vanished without closing its connection.
//!
//! Each side of a connection ticks once per keep-alive interval. A side that heard nothing
//! from its peer during a whole interval sends a `Ping` (answered with a `Pong`); a side that
//! has heard nothing for the keep-alive timeout considers the connection dead and closes it,
//! failing the calls waiting on it. Traffic of any kind counts as a sign of life, so a busy
//! connection sends no pings.

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

/// What a keep-alive tick found.
pub(crate) enum Verdict {
    /// The peer was heard from recently.
    Alive,
    /// The peer has been quiet for an interval: probe it.
    Ping,
    /// The peer has been quiet for the whole timeout: give up on the connection.
    Dead(Duration),
}

/// One connection's keep-alive state.
pub(crate) struct Liveness {
    ticks: Interval,
    interval: Duration,
    timeout: Duration,
    /// Set by every frame received; read and cleared by each tick.
    heard: bool,
    /// How long the peer has been quiet, in whole intervals.
    quiet: Duration,
}

impl Liveness {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Liveness {
        let interval = interval.max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Liveness {
            ticks,
            interval,
            timeout,
            heard: false,
            quiet: Duration::ZERO,
        }
    }

    /// A frame arrived from the peer.
    pub(crate) fn heard(&mut self) {
        self.heard = true;
    }

    /// Waits for the next tick and says what to do.
    pub(crate) async fn tick(&mut self) -> Verdict {
        self.ticks.tick().await;
        if std::mem::take(&mut self.heard) {
            self.quiet = Duration::ZERO;
            return Verdict::Alive;
        }
        self.quiet += self.interval;
        if self.quiet >= self.timeout {
            Verdict::Dead(self.quiet)
        } else {
            Verdict::Ping
        }
    }
}
