//! An endpoint's mailbox queue: many senders, the main thread the one receiver.
//!
//! A `VecDeque` behind a lock, and the receiver's waker. It takes no memory until something is
//! queued (tokio's unbounded channel allocates a block of 32 slots up front, most of what an
//! idle endpoint held), and a send is one uncontended lock and a push. The mailbox bounds
//! itself (`EndpointCell::reserve`), so the queue need not.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// A queue that has held this many and is empty again gives the memory back.
const KEEP_CAPACITY: usize = 64;

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
    waker: Option<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves the queue whole (pushes and pops only).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Makes a queue: the sending half and the receiving half.
pub(crate) fn inbox<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            closed: false,
            waker: None,
        }),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

/// Queues values for the receiver.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `value`, or gives it back once the receiver has closed the queue (or is gone).
    pub(crate) fn send(&self, value: T) -> Result<(), T> {
        let mut state = self.shared.state();
        if state.closed {
            return Err(value);
        }
        state.queue.push_back(value);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

/// The one receiver. Dropping it closes the queue and drops what is left in it.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next value, in the order sent; `None` once the queue is closed and empty. Takes
    /// part in tokio's cooperative budget, as tokio's own channels do, so that a main thread
    /// with a full mailbox still lets the other tasks of its worker run.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut state = self.shared.state();
        if let Some(value) = state.queue.pop_front() {
            if state.queue.is_empty() && state.queue.capacity() > KEEP_CAPACITY {
                state.queue = VecDeque::new();
            }
            coop.made_progress();
            return Poll::Ready(Some(value));
        }
        if state.closed {
            coop.made_progress();
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// A value if one is queued now.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        self.shared.state().queue.pop_front()
    }

    /// Refuses further sends; what is queued can still be received.
    pub(crate) fn close(&mut self) {
        self.shared.state().closed = true;
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let left = {
            let mut state = self.shared.state();
            state.closed = true;
            state.waker = None;
            std::mem::take(&mut state.queue)
        };
        // Dropped outside the lock: a value's drop may send to this queue.
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_arrive_in_order_and_wake_the_receiver() {
        let (sender, mut receiver) = inbox();
        let waiting = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(value) = receiver.recv().await {
                got.push(value);
                if got.len() == 3 {
                    break;
                }
            }
            got
        });
        for value in 1..=3 {
            sender.send(value).expect("open");
            tokio::task::yield_now().await;
        }
        assert_eq!(waiting.await.expect("receiver"), vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn a_closed_queue_refuses_sends_and_still_gives_what_it_holds() {
        let (sender, mut receiver) = inbox();
        sender.send(1).expect("open");
        receiver.close();
        assert_eq!(sender.send(2), Err(2));
        assert_eq!(receiver.recv().await, Some(1));
        assert_eq!(receiver.recv().await, None);
    }

    #[test]
    fn dropping_the_receiver_drops_what_is_queued_and_refuses_more() {
        let (sender, receiver) = inbox();
        let value = Arc::new(());
        sender.send(Arc::clone(&value)).expect("open");
        drop(receiver);
        assert_eq!(Arc::strong_count(&value), 1, "the queued value was dropped");
        assert!(sender.send(Arc::clone(&value)).is_err());
    }

    #[test]
    fn an_empty_queue_gives_back_what_a_burst_grew() {
        let (sender, mut receiver) = inbox();
        for value in 0..1_000 {
            sender.send(value).expect("open");
        }
        while receiver.try_recv().is_some() {}
        sender.send(0).expect("open");
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(receiver.poll_recv(&mut cx), Poll::Ready(Some(0)));
        assert!(receiver.shared.state().queue.capacity() <= KEEP_CAPACITY);
    }
}
