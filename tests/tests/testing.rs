//! `rpc_core::testing`: fakes at any address for the code under test, and the calls they
//! received, recorded and decoded.

mod common;

use rpc_core::testing::TestNetwork;
use rpc_core::{
    BoxError, FencedEndpoint, FencingId, RpcContext, RpcEndpoint, RpcError, RpcService, rpc_gateway,
};

/// What the code under test calls.
#[rpc_gateway]
pub trait ResourceManager {
    async fn register(&mut self, executor: String, slots: u32, me: TaskExecutorClient) -> bool;
    fn heartbeat(&mut self, executor: String);
}

/// What the resource manager calls back.
#[rpc_gateway]
pub trait TaskExecutor {
    async fn offer(&mut self, job: u64) -> bool;
}

/// The code under test: a task executor that registers with the resource manager at the
/// address it was configured with, then heartbeats.
struct Executor {
    jobs: Vec<u64>,
}

impl RpcEndpoint for Executor {
    rpc_core::serves!(TaskExecutor);
}

impl TaskExecutor for Executor {
    async fn offer(&mut self, job: u64) -> bool {
        self.jobs.push(job);
        true
    }
}

async fn start_executor(
    service: &RpcService,
    rm_address: &str,
    beats: usize,
) -> Result<bool, RpcError> {
    service
        .start_endpoint("te", Executor { jobs: Vec::new() })
        .await?;
    let me: TaskExecutorClient = service.gateway("te")?;
    let rm: ResourceManagerClient = service.connect(rm_address, "rm").await?;
    let accepted = rm.register("te-1".into(), 4, me).await?;
    for _ in 0..beats {
        rm.heartbeat("te-1".into())?;
    }
    Ok(accepted)
}

/// The fake: accepts every executor and offers it job 7.
#[derive(Default)]
struct FakeRm;

impl RpcEndpoint for FakeRm {
    rpc_core::serves!(ResourceManager);
}

impl ResourceManager for FakeRm {
    async fn register(&mut self, _executor: String, _slots: u32, me: TaskExecutorClient) -> bool {
        me.offer(7).await.unwrap_or(false)
    }
    fn heartbeat(&mut self, _executor: String) {}
}

#[tokio::test]
async fn a_fake_at_an_address_answers_connect_and_records_what_it_was_sent() {
    common::bounded(async {
        let network = TestNetwork::new();
        let rm = network.fake("10.0.0.5:6123", "rm", FakeRm).await.unwrap();
        assert_eq!(rm.address().to_string(), "10.0.0.5:6123");
        // The code under test listens at an address of its own, so the fake can call it back
        // through the reference it sends.
        let executor = network.service_at("10.0.0.7:7000").unwrap();
        assert!(start_executor(&executor, "10.0.0.5:6123", 3).await.unwrap());

        // The tells are queued behind the ask; one more ask waits for them.
        let probe: ResourceManagerClient = network
            .client()
            .connect("10.0.0.5:6123", "rm")
            .await
            .unwrap();
        let me: TaskExecutorClient = executor.gateway("te").unwrap();
        assert!(probe.register("probe".into(), 0, me).await.unwrap());

        let calls = rm.calls::<ResourceManagerClient>();
        let methods: Vec<_> = calls.iter().map(|call| call.method).collect();
        assert_eq!(
            methods,
            [
                "register",
                "heartbeat",
                "heartbeat",
                "heartbeat",
                "register"
            ]
        );
        match &calls[0].invocation {
            ResourceManagerInvocation::register {
                executor,
                slots,
                me,
                ..
            } => {
                assert_eq!((executor.as_str(), *slots), ("te-1", 4));
                // A recorded reference is a working proxy of the fake's service.
                assert!(me.offer(8).await.unwrap());
            }
            ResourceManagerInvocation::heartbeat { .. } => panic!("the first call registers"),
        }
        assert!(matches!(
            &calls[1].invocation,
            ResourceManagerInvocation::heartbeat { executor } if executor == "te-1"
        ));
    })
    .await;
}

#[tokio::test]
async fn nothing_at_an_address_and_a_stopped_fake_fail_as_they_would_over_tcp() {
    common::bounded(async {
        let network = TestNetwork::new();
        let client = network.client();
        let missing = client
            .connect::<ResourceManagerClient>("10.0.0.9:6123", "rm")
            .await;
        match missing {
            Err(RpcError::ConnectFailed { address, reason }) => {
                assert_eq!(address, "10.0.0.9:6123");
                assert!(reason.contains("nothing is at this address"), "{reason}");
            }
            other => panic!("expected ConnectFailed, got {other:?}"),
        }
        let rm = network.fake("10.0.0.5:6123", "rm", FakeRm).await.unwrap();
        let wrong = client
            .connect::<TaskExecutorClient>("10.0.0.5:6123", "rm")
            .await;
        assert!(
            matches!(wrong, Err(RpcError::IncompatibleGateway { .. })),
            "{wrong:?}"
        );
        let proxy: ResourceManagerClient = client.connect("10.0.0.5:6123", "rm").await.unwrap();
        rm.context().stop();
        rm.context().terminated().await;
        assert!(matches!(
            proxy.heartbeat("late".into()),
            Err(RpcError::EndpointStopped { .. })
        ));
    })
    .await;
}

/// A fenced gateway's calls are recorded too (their token is not part of the record).
#[rpc_gateway(fenced)]
pub trait Leader {
    async fn submit(&mut self, job: u64) -> u64;
}

struct FakeLeader(FencingId);

impl FencedEndpoint for FakeLeader {
    type Token = FencingId;
}

impl RpcEndpoint for FakeLeader {
    rpc_core::serves!(Leader);

    async fn on_start(&mut self, context: RpcContext<Self>) -> Result<(), BoxError> {
        context.set_fencing_token(Some(self.0))?;
        Ok(())
    }
}

impl Leader for FakeLeader {
    async fn submit(&mut self, job: u64) -> u64 {
        job * 2
    }
}

#[tokio::test]
async fn a_fenced_fake_checks_tokens_and_records_the_calls() {
    common::bounded(async {
        let network = TestNetwork::new();
        let token = FencingId::random();
        let leader = network
            .fake("10.0.0.5:6123", "leader", FakeLeader(token))
            .await
            .unwrap();
        let client = network.client();
        let current: LeaderClient = client
            .connect_fenced("10.0.0.5:6123", "leader", token)
            .await
            .unwrap();
        assert_eq!(current.submit(21).await.unwrap(), 42);
        let stale = current.with_fencing_token(FencingId::random());
        assert!(matches!(
            stale.submit(1).await,
            Err(RpcError::FencingTokenMismatch { .. })
        ));
        let calls = leader.calls::<LeaderClient>();
        assert_eq!(
            calls.len(),
            2,
            "both arrived; the stale one was refused there"
        );
        assert!(matches!(
            calls[0].invocation,
            LeaderInvocation::submit { job: 21 }
        ));
        assert!(matches!(
            calls[1].invocation,
            LeaderInvocation::submit { job: 1 }
        ));
    })
    .await;
}
