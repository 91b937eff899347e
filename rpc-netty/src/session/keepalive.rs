//! Keep-alive and idle close: noticing a peer that has vanished without closing its
//! connection, and closing a connection nobody uses. The same rules on both sides.
//!
//! Each side looks once per keep-alive interval. A side that heard nothing from its peer
//! during a whole interval sends a `Ping` (answered with a `Pong`); a side that has heard
//! nothing for the keep-alive timeout considers the connection dead and closes it, failing the
//! calls waiting on it. Traffic of any kind counts as a sign of life, so a busy connection
//! sends no pings. Separately, a connection with no call made and none awaiting an answer for
//! the idle timeout is closed; pings do not count as use, so a peer cannot hold a connection
//! open by only answering them.
//!
//! No I/O and no timers: the driver asks [`Keepalive::deadline`] when to look next and
//! reports the time with [`Keepalive::on_deadline`].

use std::time::Duration;

use tokio::time::Instant;

/// What a keep-alive deadline found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// Nothing to do until the next deadline.
    Quiet,
    /// The peer has been quiet for an interval: send it a `Ping`.
    Ping,
    /// The peer has been quiet for the keep-alive timeout: close the connection, for this
    /// reason.
    Dead(String),
    /// No call for the idle timeout: close the connection, for this reason.
    Idle(String),
}

/// One connection's keep-alive and idle state.
#[derive(Debug)]
pub struct Keepalive {
    interval: Duration,
    timeout: Duration,
    idle_timeout: Option<Duration>,
    next: Instant,
    /// Set by every frame received; read and cleared at each deadline.
    heard: bool,
    /// How long the peer has been quiet, in whole intervals.
    quiet: Duration,
    /// How long the connection has had no call, in whole intervals.
    idle: Duration,
}

impl Keepalive {
    /// Keep-alive state for a connection established at `now`: probe a peer quiet for
    /// `interval`, give up on it after `timeout`, close after `idle_timeout` without calls.
    pub fn new(
        now: Instant,
        interval: Duration,
        timeout: Duration,
        idle_timeout: Option<Duration>,
    ) -> Keepalive {
        let interval = interval.max(Duration::from_millis(1));
        Keepalive {
            interval,
            timeout,
            idle_timeout,
            next: now + interval,
            heard: false,
            quiet: Duration::ZERO,
            idle: Duration::ZERO,
        }
    }

    /// A frame arrived from the peer.
    pub fn heard(&mut self) {
        self.heard = true;
    }

    /// When [`Keepalive::on_deadline`] is due.
    pub fn deadline(&self) -> Instant {
        self.next
    }

    /// The deadline has passed (it is `now`); `active` says whether a call was made or
    /// awaited an answer since the last deadline. Says what to do, and sets the next deadline
    /// one interval from `now`.
    pub fn on_deadline(&mut self, now: Instant, active: bool) -> Tick {
        self.next = now + self.interval;
        let ping = if std::mem::take(&mut self.heard) {
            self.quiet = Duration::ZERO;
            false
        } else {
            self.quiet += self.interval;
            if self.quiet >= self.timeout {
                return Tick::Dead(format!(
                    "nothing heard from the peer for {:?} (keep-alive)",
                    self.quiet
                ));
            }
            true
        };
        self.idle = if active {
            Duration::ZERO
        } else {
            self.idle + self.interval
        };
        match self.idle_timeout {
            Some(timeout) if self.idle >= timeout => {
                Tick::Idle(format!("no call for {:?} (idle_timeout)", self.idle))
            }
            _ if ping => Tick::Ping,
            _ => Tick::Quiet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Runs `n` deadlines, each at the time it was due; `heard` and `active` per step.
    fn steps(keepalive: &mut Keepalive, pattern: &[(bool, bool)]) -> Vec<Tick> {
        pattern
            .iter()
            .map(|&(heard, active)| {
                if heard {
                    keepalive.heard();
                }
                let now = keepalive.deadline();
                keepalive.on_deadline(now, active)
            })
            .collect()
    }

    #[test]
    fn a_quiet_peer_is_pinged_each_interval_then_given_up() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(start, 100 * MS, 300 * MS, None);
        assert_eq!(keepalive.deadline(), start + 100 * MS);
        let ticks = steps(&mut keepalive, &[(false, true); 3]);
        assert_eq!(ticks[..2], [Tick::Ping, Tick::Ping]);
        assert!(matches!(&ticks[2], Tick::Dead(reason) if reason.contains("keep-alive")));
    }

    #[test]
    fn traffic_resets_the_quiet_time_and_sends_no_ping() {
        let mut keepalive = Keepalive::new(Instant::now(), 100 * MS, 300 * MS, None);
        let ticks = steps(
            &mut keepalive,
            &[
                (false, true),
                (false, true),
                (true, true),
                (false, true),
                (false, true),
            ],
        );
        assert_eq!(
            ticks,
            [Tick::Ping, Tick::Ping, Tick::Quiet, Tick::Ping, Tick::Ping]
        );
    }

    #[test]
    fn an_unused_connection_closes_after_the_idle_timeout_even_if_the_peer_answers_pings() {
        let mut keepalive = Keepalive::new(Instant::now(), 100 * MS, 300 * MS, Some(300 * MS));
        let ticks = steps(&mut keepalive, &[(true, false); 3]);
        assert_eq!(ticks[..2], [Tick::Quiet, Tick::Quiet]);
        assert!(matches!(&ticks[2], Tick::Idle(reason) if reason.contains("idle_timeout")));
    }

    #[test]
    fn a_call_resets_the_idle_time() {
        let mut keepalive = Keepalive::new(Instant::now(), 100 * MS, 300 * MS, Some(200 * MS));
        let ticks = steps(
            &mut keepalive,
            &[(true, false), (true, true), (true, false)],
        );
        assert_eq!(ticks, [Tick::Quiet, Tick::Quiet, Tick::Quiet]);
    }

    #[test]
    fn the_next_deadline_counts_from_when_the_last_was_handled() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(start, 100 * MS, 300 * MS, None);
        // Handled late: the next look is an interval after that, not a burst to catch up.
        keepalive.heard();
        keepalive.on_deadline(start + 250 * MS, true);
        assert_eq!(keepalive.deadline(), start + 350 * MS);
    }
}
