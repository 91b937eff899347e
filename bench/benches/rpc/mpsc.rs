//! The in-process floor: a tokio mpsc + oneshot round trip to a task.

use tokio::sync::{mpsc, oneshot};

use crate::stats::{Sample, concurrent, sequential};

/// A task answering each request on its oneshot, as an endpoint's main thread would.
fn server<T: Send + 'static>() -> mpsc::Sender<(T, oneshot::Sender<T>)> {
    let (requests, mut incoming) = mpsc::channel::<(T, oneshot::Sender<T>)>(1024);
    tokio::spawn(async move {
        while let Some((value, reply)) = incoming.recv().await {
            let _ = reply.send(value);
        }
    });
    requests
}

pub async fn seq(warmup: usize, n: usize) -> Sample {
    let requests = server::<u64>();
    sequential("mpsc.seq", warmup, n, |i| {
        let requests = requests.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            requests.send((i, reply)).await.expect("send");
            assert_eq!(answer.await.expect("answer"), i);
        }
    })
    .await
}

/// The harness of `ours.pipe64` and `tarpc.pipe64` (64 callers, one ask after another, a
/// 32-byte `String` each way) over a channel to one task: no framework can beat it.
pub async fn pipe64(warmup: usize, n: usize) -> Sample {
    let requests = server::<String>();
    concurrent("mpsc.pipe64", 64, warmup / 64, n / 64, move |_| {
        let requests = requests.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            requests.send(("x".repeat(32), reply)).await.expect("send");
            assert_eq!(answer.await.expect("answer").len(), 32);
        }
    })
    .await
}
