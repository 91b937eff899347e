//! Stopping, as a user relies on it: idempotent, nothing queued after a stop request is
//! silently dropped, and a failing `on_stop` reaches whoever waits for the stop.

mod common;

use std::sync::{Arc, Mutex};

use common::bounded;
use rpc_core::{BoxError, RpcContext, RpcEndpoint, RpcError, RpcService, rpc_gateway};

#[rpc_gateway]
pub trait Worker {
    fn work(&mut self, item: u32);
    async fn done(&mut self) -> Vec<u32>;
}

/// What `on_stop` does.
#[derive(Clone, Copy)]
enum Stop {
    Succeed,
    Fail,
    Panic,
}

struct Job {
    done: Vec<u32>,
    stop: Stop,
    /// What `run_async` returned when `on_stop` tried it.
    during_stop: Arc<Mutex<Option<Result<(), RpcError>>>>,
}

impl Job {
    fn new(stop: Stop) -> Job {
        Job {
            done: Vec::new(),
            stop,
            during_stop: Arc::default(),
        }
    }
}

impl RpcEndpoint for Job {
    rpc_core::serves!(Worker);

    async fn on_stop(&mut self) -> Result<(), BoxError> {
        let queued = RpcContext::<Self>::current().run_async(|_| {});
        *self.during_stop.lock().unwrap() = Some(queued);
        match self.stop {
            Stop::Succeed => Ok(()),
            Stop::Fail => Err("the journal could not be flushed".into()),
            Stop::Panic => panic!("on_stop blew up"),
        }
    }
}

impl Worker for Job {
    fn work(&mut self, item: u32) {
        self.done.push(item);
    }
    async fn done(&mut self) -> Vec<u32> {
        self.done.clone()
    }
}

#[tokio::test]
async fn stopping_is_idempotent() {
    bounded(async {
        let service = RpcService::new();
        service
            .start_endpoint("job", Job::new(Stop::Succeed))
            .await
            .unwrap();
        service.stop_endpoint("job").await.unwrap();
        // Already stopped, and never started: the same answer.
        service.stop_endpoint("job").await.unwrap();
        service.stop_endpoint("no-such-endpoint").await.unwrap();
        service.shutdown().await.unwrap();
        service.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn nothing_is_queued_once_a_stop_is_requested() {
    bounded(async {
        let service = RpcService::new();
        let ctx = service
            .start_endpoint("job", Job::new(Stop::Succeed))
            .await
            .unwrap();
        let worker: WorkerClient = service.gateway("job").unwrap();
        worker.work(1).unwrap();
        ctx.stop();
        // Queued before the stop: runs. After it: refused, tells included.
        assert!(matches!(
            worker.work(2),
            Err(RpcError::EndpointStopped { .. })
        ));
        assert!(matches!(
            worker.done().await,
            Err(RpcError::EndpointStopped { .. })
        ));
        assert!(matches!(
            ctx.run_async(|_| {}),
            Err(RpcError::EndpointStopped { .. })
        ));
        ctx.terminated().await;
        service.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_main_thread_accepts_nothing_during_on_stop() {
    bounded(async {
        let service = RpcService::new();
        let job = Job::new(Stop::Succeed);
        let during_stop = Arc::clone(&job.during_stop);
        service.start_endpoint("job", job).await.unwrap();
        service.stop_endpoint("job").await.unwrap();
        let queued = during_stop.lock().unwrap().take().expect("on_stop ran");
        assert!(
            matches!(queued, Err(RpcError::EndpointStopped { .. })),
            "{queued:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_failing_on_stop_reaches_stop_endpoint() {
    bounded(async {
        let service = RpcService::new();
        service
            .start_endpoint("job", Job::new(Stop::Fail))
            .await
            .unwrap();
        let error = service.stop_endpoint("job").await.unwrap_err();
        assert!(matches!(&error, RpcError::StopFailed { endpoint, .. } if endpoint == "job"));
        assert!(
            error
                .to_string()
                .contains("the journal could not be flushed"),
            "{error}"
        );
        // It has stopped all the same: its name is free again.
        assert!(service.endpoint_names().is_empty());
        service.stop_endpoint("job").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_panicking_on_stop_reaches_shutdown() {
    bounded(async {
        let service = RpcService::new();
        service
            .start_endpoint("calm", Job::new(Stop::Succeed))
            .await
            .unwrap();
        service
            .start_endpoint("job", Job::new(Stop::Panic))
            .await
            .unwrap();
        let error = service.shutdown().await.unwrap_err();
        assert!(matches!(&error, RpcError::StopFailed { endpoint, .. } if endpoint == "job"));
        assert!(error.to_string().contains("on_stop blew up"), "{error}");
        // Every endpoint stopped, the calm one too.
        assert!(service.endpoint_names().is_empty());
        service.shutdown().await.unwrap();
    })
    .await;
}
