//! Forced serialization makes local calls fail the way remote calls would for a type that
//! cannot cross the wire.

use rpc_core::{RpcEndpoint, RpcError, RpcService, rpc_gateway};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serializing it always fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Unencodable(u32);

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this type refuses to be encoded"))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u32::deserialize(d).map(Unencodable)
    }
}

/// Encodes as a string but decodes as a number: the two sides disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Lopsided(String);

impl Serialize for Lopsided {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Lopsided {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = bool::deserialize(d)?;
        Ok(Lopsided(n.to_string()))
    }
}

#[rpc_gateway]
pub trait Strict {
    async fn take(&mut self, value: Unencodable) -> u32;
    async fn give(&mut self) -> Unencodable;
    async fn lopsided(&mut self, value: Lopsided) -> String;
}

struct Store;

impl RpcEndpoint for Store {
    rpc_core::serves!(Strict);
}

impl Strict for Store {
    async fn take(&mut self, value: Unencodable) -> u32 {
        value.0
    }
    async fn give(&mut self) -> Unencodable {
        Unencodable(7)
    }
    async fn lopsided(&mut self, value: Lopsided) -> String {
        value.0
    }
}

async fn strict(force: bool) -> (RpcService, StrictClient) {
    let service = RpcService::builder().force_serialization(force).build();
    service.start_endpoint("store", Store).await.unwrap();
    let client = service.gateway("store").unwrap();
    (service, client)
}

fn expect_serialization<T: std::fmt::Debug>(result: Result<T, RpcError>, context: &str) {
    match result {
        Err(RpcError::Serialization {
            context: got,
            reason,
        }) => {
            assert_eq!(got, context);
            assert!(!reason.is_empty());
        }
        other => panic!("expected a serialization error about {context}, got {other:?}"),
    }
}

#[tokio::test]
async fn by_default_local_calls_move_values() {
    let (service, store) = strict(false).await;
    assert_eq!(store.take(Unencodable(3)).await.unwrap(), 3);
    assert_eq!(store.give().await.unwrap(), Unencodable(7));
    assert_eq!(store.lopsided(Lopsided("x".into())).await.unwrap(), "x");
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn forced_serialization_rejects_what_the_wire_would() {
    let (service, store) = strict(true).await;
    expect_serialization(
        store.take(Unencodable(3)).await,
        "encoding the arguments of `Strict::take`",
    );
    expect_serialization(store.give().await, "encoding the reply of `Strict::give`");
    expect_serialization(
        store.lopsided(Lopsided("x".into())).await,
        "decoding the arguments of `Strict::lopsided`",
    );
    let error = store.take(Unencodable(1)).await.unwrap_err().to_string();
    assert!(
        error.contains("a `Serialize` implementation returned an error"),
        "{error}"
    );
    service.shutdown().await.unwrap();
}
