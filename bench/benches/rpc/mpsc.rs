//! The in-process floor: a tokio mpsc + oneshot round trip to a task.

use tokio::sync::{mpsc, oneshot};

use crate::stats::{Sample, sequential};

pub async fn seq(warmup: usize, n: usize) -> Sample {
    let (requests, mut incoming) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(1024);
    tokio::spawn(async move {
        while let Some((value, reply)) = incoming.recv().await {
            let _ = reply.send(value);
        }
    });
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
