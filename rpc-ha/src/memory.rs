//! [`MemoryCoordinator`]: elections inside one process, for unit tests of code that uses a
//! [`Coordinator`]. Contenders win in the order they campaigned; a test ends a leadership as
//! a lost session would with [`MemoryCoordinator::expire`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::{Coordinator, HaError, LeaderInfo, Leadership};

/// Elections in process memory.
///
/// Clones share the elections, so one coordinator serves every contender and follower of a
/// test. A test of failover ends the leader's session with [`MemoryCoordinator::expire`]:
///
/// ```
/// use std::sync::Arc;
/// use rpc_ha::{LeaderElection, LeadershipEvent, memory::MemoryCoordinator};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let coordinator = Arc::new(MemoryCoordinator::default());
/// let mut first = LeaderElection::start(coordinator.clone(), "rm", "10.0.0.5:6123", "rm");
/// let Some(LeadershipEvent::Granted(one)) = first.next().await else { unreachable!() };
/// let mut second = LeaderElection::start(coordinator.clone(), "rm", "10.0.0.6:6123", "rm");
///
/// coordinator.expire("rm");
/// assert!(matches!(first.next().await, Some(LeadershipEvent::Revoked(_))));
/// let Some(LeadershipEvent::Granted(two)) = second.next().await else { unreachable!() };
/// assert_eq!(two.address, "10.0.0.6:6123");
/// assert_ne!(two.token, one.token); // a new leadership, a new token
/// # second.stop().await;
/// # first.stop().await;
/// # }
/// ```
#[derive(Default, Clone)]
pub struct MemoryCoordinator {
    inner: Arc<Mutex<HashMap<String, Election>>>,
}

/// One election: the contenders in campaign order (the first leads), and who leads.
struct Election {
    queue: VecDeque<Contender>,
    leader: watch::Sender<Option<LeaderInfo>>,
    /// Signalled whenever the queue's head changes.
    moved: Arc<Notify>,
    next_id: u64,
}

impl Default for Election {
    fn default() -> Self {
        Election {
            queue: VecDeque::new(),
            leader: watch::channel(None).0,
            moved: Arc::default(),
            next_id: 1,
        }
    }
}

struct Contender {
    id: u64,
    info: LeaderInfo,
    lost: CancellationToken,
}

impl MemoryCoordinator {
    fn elections(&self) -> MutexGuard<'_, HashMap<String, Election>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the current leadership of `election` as an expired session would: its holder
    /// learns it lost, and the next contender leads.
    pub fn expire(&self, election: &str) {
        let mut elections = self.elections();
        if let Some(state) = elections.get_mut(election) {
            if let Some(leader) = state.queue.pop_front() {
                leader.lost.cancel();
                promote(state);
            }
        }
    }

    /// Removes contender `id` (resigned or gave up campaigning).
    fn leave(&self, election: &str, id: u64) {
        let mut elections = self.elections();
        if let Some(state) = elections.get_mut(election) {
            let was_leader = state.queue.front().is_some_and(|c| c.id == id);
            state.queue.retain(|c| c.id != id);
            if was_leader {
                promote(state);
            }
        }
    }
}

/// The queue's head changed: publish the new leader.
fn promote(state: &mut Election) {
    if let Some(next) = state.queue.front() {
        state.leader.send_replace(Some(next.info.clone()));
    }
    state.moved.notify_waiters();
}

/// A place in an election's queue, left when dropped: a campaign given up, or a leadership
/// resigned or dropped. (Leaving is idempotent: an expired leader has left already.)
struct Ticket {
    coordinator: MemoryCoordinator,
    election: String,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.coordinator.leave(&self.election, self.id);
    }
}

struct MemoryLeadership {
    _ticket: Ticket,
    lost: CancellationToken,
}

impl Leadership for MemoryLeadership {
    fn lost(&self) -> BoxFuture<'_, String> {
        async move {
            self.lost.cancelled().await;
            "the session expired".to_owned()
        }
        .boxed()
    }

    fn resign(self: Box<Self>) -> BoxFuture<'static, ()> {
        drop(self);
        async {}.boxed()
    }
}

impl Coordinator for MemoryCoordinator {
    fn campaign<'a>(
        &'a self,
        election: &'a str,
        info: &'a LeaderInfo,
    ) -> BoxFuture<'a, Result<Box<dyn Leadership>, HaError>> {
        async move {
            let lost = CancellationToken::new();
            let (id, moved) = {
                let mut elections = self.elections();
                let state = elections.entry(election.to_owned()).or_default();
                let id = state.next_id;
                state.next_id += 1;
                state.queue.push_back(Contender {
                    id,
                    info: info.clone(),
                    lost: lost.clone(),
                });
                if state.queue.len() == 1 {
                    promote(state);
                }
                (id, Arc::clone(&state.moved))
            };
            let ticket = Ticket {
                coordinator: self.clone(),
                election: election.to_owned(),
                id,
            };
            loop {
                let notified = moved.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let leads = self
                    .elections()
                    .get(election)
                    .and_then(|state| state.queue.front().map(|c| c.id == id))
                    .unwrap_or(false);
                if leads {
                    return Ok(Box::new(MemoryLeadership {
                        _ticket: ticket,
                        lost,
                    }) as Box<dyn Leadership>);
                }
                notified.await;
            }
        }
        .boxed()
    }

    fn observe<'a>(
        &'a self,
        election: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<LeaderInfo, HaError>>, HaError>> {
        async move {
            let receiver = self
                .elections()
                .entry(election.to_owned())
                .or_default()
                .leader
                .subscribe();
            let leaders = every_value(receiver)
                .filter_map(|leader| async move { leader.map(Ok) })
                .boxed();
            Ok(leaders)
        }
        .boxed()
    }
}

/// Every value of a watch channel, the current one first.
fn every_value<T: Clone + Send + Sync + 'static>(
    receiver: watch::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold((receiver, true), |(mut receiver, first)| async move {
        if !first && receiver.changed().await.is_err() {
            return None;
        }
        let value = receiver.borrow_and_update().clone();
        Some((value, (receiver, false)))
    })
}

impl std::fmt::Debug for MemoryCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCoordinator").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LeaderElection, LeaderRetrieval, LeadershipEvent};
    use rpc_core::FencingId;
    use std::time::Duration;

    async fn next(election: &mut LeaderElection) -> LeadershipEvent {
        tokio::time::timeout(Duration::from_secs(10), election.next())
            .await
            .expect("a leadership event")
            .expect("still campaigning")
    }

    #[tokio::test]
    async fn one_leads_the_next_takes_over_when_its_session_expires() {
        let coordinator = Arc::new(MemoryCoordinator::default());
        let mut first = LeaderElection::start(coordinator.clone(), "rm", "a:1", "rm");
        let LeadershipEvent::Granted(one) = next(&mut first).await else {
            panic!("the first contender leads");
        };
        let mut second = LeaderElection::start(coordinator.clone(), "rm", "b:1", "rm");
        let mut leaders = LeaderRetrieval::start(coordinator.clone(), "rm");
        assert_eq!(leaders.changed().await, Some(one.clone()));

        coordinator.expire("rm");
        assert!(matches!(
            next(&mut first).await,
            LeadershipEvent::Revoked(_)
        ));
        let LeadershipEvent::Granted(two) = next(&mut second).await else {
            panic!("the second contender leads");
        };
        assert_eq!(two.address, "b:1");
        assert_ne!(two.token, one.token, "a new leadership, a new token");
        assert_eq!(leaders.changed().await, Some(two.clone()));

        // The first campaigns again and leads once the second resigns.
        second.stop().await;
        let LeadershipEvent::Granted(three) = next(&mut first).await else {
            panic!("the first contender leads again");
        };
        assert_eq!(three.address, "a:1");
        assert!(![one.token, two.token].contains(&three.token));
        assert_eq!(leaders.changed().await, Some(three));
        first.stop().await;
    }

    #[test]
    fn a_leader_record_survives_the_round_trip() {
        let info = LeaderInfo {
            address: "10.0.0.5:6123".to_owned(),
            endpoint: "rm".to_owned(),
            token: FencingId::random(),
        };
        assert_eq!(LeaderInfo::from_bytes(&info.to_bytes()).unwrap(), info);
        assert!(LeaderInfo::from_bytes(&[0xff]).is_err());
    }
}
