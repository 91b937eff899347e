//! End-to-end and compile-fail tests of the rpc framework: see `tests/` and `ui/`.
//!
//! This library holds no code; it compiles the README's examples as doc tests, so the quick
//! start a new user copies is known to build and run.

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub mod lint_clean;

pub mod target {
    //! The service the attack tests (`tests/tests/hostile.rs`) run in a separate process,
    //! `attack-target`, so that a crash or a memory blow-up is seen by the test.

    use rpc_core::{RpcEndpoint, RpcStream, rpc_gateway};
    use serde::{Deserialize, Serialize};
    use serde_bytes::ByteBuf;
    use tokio::sync::Semaphore;

    /// Opened by [`Gate::open`]; [`Target::hold`] waits for it, keeping the target's main
    /// thread busy so that what arrives meanwhile queues.
    static GATE: Semaphore = Semaphore::const_new(0);

    /// A recursive type: a peer decides how deeply it nests.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Tree {
        /// The end.
        Leaf,
        /// One more level.
        Node(Box<Tree>),
    }

    impl Tree {
        /// A tree `depth` nodes deep.
        pub fn deep(depth: u32) -> Tree {
            (0..depth).fold(Tree::Leaf, |tree, _| Tree::Node(Box::new(tree)))
        }

        /// How many nodes deep this tree is (counted without recursion).
        pub fn depth(&self) -> u32 {
            let (mut depth, mut tree) = (0, self);
            while let Tree::Node(inner) = tree {
                depth += 1;
                tree = inner;
            }
            depth
        }
    }

    /// What the attack target serves.
    #[rpc_gateway]
    pub trait Target {
        /// How deep `tree` is.
        async fn depth(&mut self, tree: Tree) -> u32;
        /// A tree `depth` deep.
        async fn tree(&mut self, depth: u32) -> Tree;
        /// `text`, back.
        async fn echo(&mut self, text: String) -> String;
        /// How many calls reached this endpoint.
        async fn calls(&mut self) -> u64;
        /// One-way: a payload to hold on to until the next call.
        fn store(&mut self, data: Vec<String>);
        /// `size` bytes.
        async fn blob(&mut self, size: u32) -> ByteBuf;
        /// Keeps the main thread busy until the gate opens; how many calls came before.
        async fn hold(&mut self) -> u64;
        /// How many connections to this service have closed.
        async fn disconnects(&mut self) -> u64;
        /// `count` items of `size` bytes (at least 8), each starting with its index
        /// (big-endian u64).
        fn feed(&mut self, count: u64, size: u32) -> RpcStream<bytes::Bytes>;
    }

    /// Opens the gate [`Target::hold`] waits for; served by a second endpoint, `gate`.
    #[rpc_gateway]
    pub trait Gate {
        /// Lets one `hold` finish.
        async fn open(&mut self);
    }

    /// The endpoint that opens the gate.
    pub struct GateEndpoint;

    impl RpcEndpoint for GateEndpoint {
        rpc_core::serves!(Gate);
    }

    impl Gate for GateEndpoint {
        async fn open(&mut self) {
            GATE.add_permits(1);
        }
    }

    /// The endpoint of the attack target.
    #[derive(Default)]
    pub struct TargetEndpoint {
        calls: u64,
        disconnects: u64,
    }

    impl RpcEndpoint for TargetEndpoint {
        rpc_core::serves!(Target);

        fn on_disconnected(&mut self, _connection: &rpc_core::Connection) {
            self.disconnects += 1;
        }
    }

    impl Target for TargetEndpoint {
        async fn depth(&mut self, tree: Tree) -> u32 {
            self.calls += 1;
            tree.depth()
        }
        async fn tree(&mut self, depth: u32) -> Tree {
            self.calls += 1;
            Tree::deep(depth)
        }
        async fn echo(&mut self, text: String) -> String {
            self.calls += 1;
            text
        }
        async fn calls(&mut self) -> u64 {
            self.calls
        }
        fn store(&mut self, data: Vec<String>) {
            self.calls += 1;
            drop(data);
        }
        async fn blob(&mut self, size: u32) -> ByteBuf {
            self.calls += 1;
            ByteBuf::from(vec![0x5a; size as usize])
        }
        async fn hold(&mut self) -> u64 {
            if let Ok(permit) = GATE.acquire().await {
                permit.forget();
            }
            self.calls
        }
        async fn disconnects(&mut self) -> u64 {
            self.disconnects
        }
        fn feed(&mut self, count: u64, size: u32) -> RpcStream<bytes::Bytes> {
            self.calls += 1;
            let size = (size as usize).max(8);
            RpcStream::iter((0..count).map(move |index| {
                let mut item = vec![0x5a; size];
                item[..8].copy_from_slice(&index.to_be_bytes());
                bytes::Bytes::from(item)
            }))
        }
    }
}

pub mod relay_gate {
    //! The Gate the relay tests (`tests/tests/relay.rs`) run as a separate process,
    //! `relay-gate`. It knows its own login gateway and nothing of the servers behind it: the
    //! gateways it relays are not in its binary at all.

    use rpc_core::{CallContext, RpcEndpoint, rpc_gateway};

    /// What a player calls first, on the Gate's outer listener.
    #[rpc_gateway(outer)]
    pub trait Login {
        /// Opens the player's session on this connection; its id, or why not.
        async fn login(&mut self, player: String) -> Result<u64, String>;
    }

    /// The Gate's login endpoint: believes any name (a real one would check a token the
    /// Realm issued).
    pub struct Logins;

    impl RpcEndpoint for Logins {
        rpc_core::serves!(Login);
    }

    impl Login for Logins {
        async fn login(&mut self, player: String) -> Result<u64, String> {
            let context = CallContext::current();
            let peer = context.caller().peer().ok_or("log in over the network")?;
            peer.open_session(player)
                .map(|session| session.id())
                .map_err(|open| format!("this connection is already {open}"))
        }
    }
}
