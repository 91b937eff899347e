//! Who may hold a server's connections: separate budgets for connections still in their
//! handshake and for established ones, so that peers who never authenticate cannot lock out
//! those who do.
//!
//! - **In the handshake**: at most `max_handshakes` at once, and at most
//!   `max_handshakes_per_address` from one IP address. When either is full, the *oldest*
//!   handshake in it is cancelled to make room for the new one: an attacker cannot keep slots,
//!   and a legitimate peer, which completes its handshake in a round trip or two, always gets
//!   one. Each handshake also has a deadline (`handshake_timeout`).
//! - **Established**: at most `max_connections`; a connection beyond it is refused when it is
//!   accepted (or, if the count filled up meanwhile, when its handshake completes).
//!
//! No I/O: the accept loop asks [`Admission::admit`] and holds the [`Ticket`] it gets.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

/// The limits, from the transport settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_handshakes: usize,
    pub(crate) max_handshakes_per_address: usize,
}

#[derive(Default)]
struct State {
    /// Connections in their handshake, oldest first (by admission number).
    handshaking: BTreeMap<u64, (IpAddr, CancellationToken)>,
    /// How many of them come from each address.
    per_address: HashMap<IpAddr, usize>,
    established: usize,
    next: u64,
}

/// The admission state of one listener.
pub(crate) struct Admission {
    limits: Limits,
    state: Mutex<State>,
}

/// Why a new connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_connections` connections are established.
    Full(usize),
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `address` to its handshake, cancelling the oldest handshake
    /// (from that address, or overall) if a budget is full.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Ticket, Refused> {
        let mut state = self.state();
        if state.established >= self.limits.max_connections {
            return Err(Refused::Full(self.limits.max_connections));
        }
        let from_address = state.per_address.get(&address).copied().unwrap_or(0);
        if from_address >= self.limits.max_handshakes_per_address.max(1) {
            let oldest = state
                .handshaking
                .iter()
                .find(|(_, (ip, _))| *ip == address)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                state.evict(id);
            }
        }
        if state.handshaking.len() >= self.limits.max_handshakes.max(1) {
            if let Some(id) = state.handshaking.keys().next().copied() {
                state.evict(id);
            }
        }
        let id = state.next;
        state.next += 1;
        let evicted = CancellationToken::new();
        state.handshaking.insert(id, (address, evicted.clone()));
        *state.per_address.entry(address).or_default() += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            id,
            evicted,
            established: false,
        })
    }

    /// Connections in their handshake and established ones.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let state = self.state();
        (state.handshaking.len(), state.established)
    }
}

impl State {
    /// Removes handshake `id` from the books and cancels it.
    fn evict(&mut self, id: u64) {
        if let Some((_, token)) = self.forget(id) {
            token.cancel();
        }
    }

    fn forget(&mut self, id: u64) -> Option<(IpAddr, CancellationToken)> {
        let (address, token) = self.handshaking.remove(&id)?;
        if let Some(count) = self.per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
        Some((address, token))
    }
}

/// One admitted connection's place; gives it back when dropped.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    evicted: CancellationToken,
    established: bool,
}

impl Ticket {
    /// Cancelled when the handshake is evicted to make room for a newer one.
    pub(crate) fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }

    /// The handshake completed: moves the connection to the established budget. Fails if
    /// that is full, or if the handshake was evicted meanwhile.
    pub(crate) fn establish(&mut self) -> Result<(), Refused> {
        let max = self.admission.limits.max_connections;
        let mut state = self.admission.state();
        if state.forget(self.id).is_none() || state.established >= max {
            return Err(Refused::Full(max));
        }
        state.established += 1;
        self.established = true;
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.admission.state();
        if self.established {
            state.established -= 1;
        } else {
            state.forget(self.id);
        }
    }
}

/// The process's limit on open files, if it can be read.
pub(crate) fn open_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack frame.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (read == 0).then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

/// File descriptors kept for everything but inbound connections: the listener, outbound
/// connections, logs, the runtime's own.
const RESERVED_FILES: usize = 64;

/// Clamps `limits` so that a full server stays within the open-file limit `files`: a
/// connection beyond it is then refused at once rather than left waiting in the accept queue
/// (where `accept` would fail with "too many open files"). Returns the clamped limits and
/// whether anything changed.
pub(crate) fn clamp(limits: Limits, files: Option<usize>) -> (Limits, bool) {
    let Some(files) = files else {
        return (limits, false);
    };
    let room = files.saturating_sub(RESERVED_FILES).max(2);
    if limits.max_connections + limits.max_handshakes <= room {
        return (limits, false);
    }
    let max_handshakes = limits.max_handshakes.min(room / 4).max(1);
    let clamped = Limits {
        max_connections: limits.max_connections.min(room - max_handshakes).max(1),
        max_handshakes,
        max_handshakes_per_address: limits.max_handshakes_per_address.min(max_handshakes),
    };
    (clamped, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_handshakes: usize, per_address: usize) -> Limits {
        Limits {
            max_connections,
            max_handshakes,
            max_handshakes_per_address: per_address,
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_full_handshake_budget_evicts_the_oldest() {
        let admission = Admission::new(limits(10, 2, 10));
        let first = admission.admit(A).unwrap();
        let second = admission.admit(B).unwrap();
        let third = admission.admit(B).unwrap();
        assert!(first.evicted().is_cancelled(), "the oldest made room");
        assert!(!second.evicted().is_cancelled() && !third.evicted().is_cancelled());
        assert_eq!(admission.counts(), (2, 0));
        drop(first);
        assert_eq!(
            admission.counts(),
            (2, 0),
            "an evicted ticket is already gone"
        );
    }

    #[test]
    fn one_address_evicts_only_its_own() {
        let admission = Admission::new(limits(10, 10, 2));
        let other = admission.admit(B).unwrap();
        let a1 = admission.admit(A).unwrap();
        let a2 = admission.admit(A).unwrap();
        let a3 = admission.admit(A).unwrap();
        assert!(a1.evicted().is_cancelled());
        assert!(!a2.evicted().is_cancelled() && !a3.evicted().is_cancelled());
        assert!(
            !other.evicted().is_cancelled(),
            "another address keeps its slot"
        );
    }

    #[test]
    fn established_connections_have_their_own_budget() {
        let admission = Admission::new(limits(1, 4, 4));
        let mut one = admission.admit(A).unwrap();
        let mut two = admission.admit(A).unwrap();
        one.establish().unwrap();
        assert_eq!(two.establish(), Err(Refused::Full(1)));
        assert_eq!(admission.admit(B).err(), Some(Refused::Full(1)));
        drop(one);
        assert_eq!(admission.counts(), (0, 0));
        assert!(admission.admit(B).is_ok(), "room again");
    }

    #[test]
    fn an_evicted_handshake_cannot_establish() {
        let admission = Admission::new(limits(10, 1, 1));
        let mut old = admission.admit(A).unwrap();
        let _new = admission.admit(A).unwrap();
        assert!(old.establish().is_err());
    }

    #[test]
    fn limits_are_clamped_to_the_open_file_limit() {
        let (clamped, changed) = clamp(limits(10_000, 1024, 64), Some(1024));
        assert!(changed);
        assert!(clamped.max_connections + clamped.max_handshakes <= 1024 - RESERVED_FILES);
        assert_eq!(
            clamp(limits(100, 100, 10), Some(1024)),
            (limits(100, 100, 10), false)
        );
        assert!(!clamp(limits(100, 100, 10), None).1);
    }
}
