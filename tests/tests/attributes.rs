//! Attributes on gateway methods and arguments: `#[cfg]` and `#[cfg_attr]` make a method or an
//! argument vanish from everything the macro generates (trait, invocation, client, dispatcher,
//! method table and indices, fingerprint) at once; docs, lint levels and `#[deprecated]` reach
//! the client.
//!
//! Run once more with `--features cfg-probe` (CI does) to see the feature-gated method present.

// `cfg(all())` and `cfg(any())` are the conditions that always and never hold.
#![allow(clippy::non_minimal_cfg)]

mod common;

use common::{Harness, Mode, bounded};
use rpc_core::{Gateway, RpcEndpoint, rpc_gateway};

/// Not serializable: a method or argument of this type compiles only while it is cfg'd out.
pub struct NotOnTheWire;

#[rpc_gateway]
pub trait Store {
    async fn put(&mut self, key: String, value: String);
    /// Exists only with the `cfg-probe` feature.
    #[cfg(feature = "cfg-probe")]
    async fn dump(&mut self) -> Vec<(String, String)>;
    #[cfg(any())]
    async fn never(&mut self, value: NotOnTheWire) -> u32;
    #[cfg_attr(any(), cfg(any()))]
    async fn kept(&mut self) -> u32;
    #[cfg_attr(all(), cfg(any()))]
    fn gone(&mut self, value: NotOnTheWire);
    async fn get(
        &mut self,
        #[cfg(any())] namespace: NotOnTheWire,
        key: String,
        #[cfg(feature = "cfg-probe")] fallback: String,
    ) -> Option<String>;
    #[cfg_attr(all(), deprecated(note = "use `get`"))]
    async fn count(&mut self) -> usize;
}

/// What `Store` is in this build, written out without attributes.
#[cfg(not(feature = "cfg-probe"))]
mod plain {
    #[rpc_core::rpc_gateway(name = "Store")]
    pub trait Plain {
        async fn put(&mut self, key: String, value: String);
        async fn kept(&mut self) -> u32;
        async fn get(&mut self, key: String) -> Option<String>;
        async fn count(&mut self) -> usize;
    }
}

#[cfg(feature = "cfg-probe")]
mod plain {
    #[rpc_core::rpc_gateway(name = "Store")]
    pub trait Plain {
        async fn put(&mut self, key: String, value: String);
        async fn dump(&mut self) -> Vec<(String, String)>;
        async fn kept(&mut self) -> u32;
        async fn get(&mut self, key: String, fallback: String) -> Option<String>;
        async fn count(&mut self) -> usize;
    }
}

#[derive(Default)]
struct Map(std::collections::BTreeMap<String, String>);

impl RpcEndpoint for Map {
    rpc_core::serves!(Store);
}

impl Store for Map {
    async fn put(&mut self, key: String, value: String) {
        self.0.insert(key, value);
    }
    #[cfg(feature = "cfg-probe")]
    async fn dump(&mut self) -> Vec<(String, String)> {
        self.0.clone().into_iter().collect()
    }
    async fn kept(&mut self) -> u32 {
        7
    }
    async fn get(
        &mut self,
        key: String,
        #[cfg(feature = "cfg-probe")] fallback: String,
    ) -> Option<String> {
        let found = self.0.get(&key).cloned();
        #[cfg(feature = "cfg-probe")]
        let found = found.or(Some(fallback));
        found
    }
    async fn count(&mut self) -> usize {
        self.0.len()
    }
}

fn names<G: Gateway>() -> Vec<&'static str> {
    G::METHODS.iter().map(|m| m.name).collect()
}

#[test]
fn cfg_removes_a_method_from_the_method_table_and_the_fingerprint() {
    let expected = if cfg!(feature = "cfg-probe") {
        vec!["put", "dump", "kept", "get", "count"]
    } else {
        vec!["put", "kept", "get", "count"]
    };
    assert_eq!(names::<StoreClient>(), expected);
    assert_eq!(names::<plain::PlainClient>(), expected);
    // The same methods with the same types: the same contract, as the handshake sees it.
    assert_eq!(
        <StoreClient as Gateway>::FINGERPRINT,
        <plain::PlainClient as Gateway>::FINGERPRINT
    );
}

/// A gateway whose conditions all hold is the gateway without them.
#[test]
fn a_cfg_that_holds_changes_nothing() {
    mod with {
        #[rpc_core::rpc_gateway(name = "Same")]
        pub trait Same {
            #[cfg(all())]
            async fn a(&mut self, #[cfg(all())] x: u32, y: String) -> u32;
            #[cfg_attr(all(), cfg(all()))]
            fn b(&mut self, #[cfg_attr(all(), cfg(all()))] z: Vec<u8>);
        }
    }
    mod without {
        #[rpc_core::rpc_gateway(name = "Same")]
        pub trait Same {
            async fn a(&mut self, x: u32, y: String) -> u32;
            fn b(&mut self, z: Vec<u8>);
        }
    }
    assert_eq!(
        <with::SameClient as Gateway>::FINGERPRINT,
        <without::SameClient as Gateway>::FINGERPRINT
    );
    assert_eq!(names::<with::SameClient>(), names::<without::SameClient>());
}

/// Calls to the methods after a removed one reach the right handler, in process and over TCP.
async fn calls_reach_the_right_handler(mode: Mode) {
    let harness = Harness::new(mode).await;
    harness
        .server
        .start_endpoint("store", Map::default())
        .await
        .expect("start");
    let store: StoreClient = harness.gateway("store").await.expect("connect");
    store.put("a".into(), "1".into()).await.expect("put");
    assert_eq!(store.kept().await.expect("kept"), 7);
    #[cfg(not(feature = "cfg-probe"))]
    {
        assert_eq!(store.get("a".into()).await.expect("get"), Some("1".into()));
        assert_eq!(store.get("b".into()).await.expect("get"), None);
    }
    #[cfg(feature = "cfg-probe")]
    {
        assert_eq!(
            store.get("b".into(), "none".into()).await.expect("get"),
            Some("none".into())
        );
        assert_eq!(
            store.dump().await.expect("dump"),
            vec![("a".to_owned(), "1".to_owned())]
        );
    }
    #[allow(deprecated)]
    let len = store.count().await.expect("count");
    assert_eq!(len, 1);
    // Over the wire, a client written against the attribute-free trait is the same contract.
    // (In process a proxy is typed by its gateway, so only `StoreClient` reaches the endpoint.)
    if mode == Mode::Tcp {
        let plain: plain::PlainClient = harness.gateway("store").await.expect("connect plain");
        assert_eq!(plain.kept().await.expect("kept"), 7);
        assert_eq!(plain.count().await.expect("count"), 1);
    }
    harness.shutdown().await.unwrap();
}

#[tokio::test]
async fn in_process() {
    bounded(calls_reach_the_right_handler(Mode::InProcess)).await;
}

#[tokio::test]
async fn serialized() {
    bounded(calls_reach_the_right_handler(Mode::Serialized)).await;
}

#[tokio::test]
async fn over_tcp() {
    bounded(calls_reach_the_right_handler(Mode::Tcp)).await;
}
