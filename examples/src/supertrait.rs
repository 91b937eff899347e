//! Supertrait gateways: a gateway trait may extend another (`trait StoreGateway:
//! StatusGateway`), and an endpoint serving the extended gateway serves the base one too.
//!
//! Here every endpoint reports its status through one common `StatusGateway`, which a
//! dashboard uses without knowing what else each endpoint does: the store adds reads and
//! writes on top of it, the journal appends. Proxies of the base and of the extended gateway
//! reach the same endpoint, its same main thread and state. A proxy has only its own trait's
//! methods, so status goes through a `StatusGatewayClient` even for the store; a gateway an
//! endpoint does not serve is refused at `connect`.

use std::collections::BTreeMap;

use rpc_core::{RpcEndpoint, RpcError, RpcService, ToAddress, rpc_gateway};
use serde::{Deserialize, Serialize};

/// What an endpoint says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// What kind of endpoint it is.
    pub kind: String,
    /// How many items it holds.
    pub items: usize,
    /// How many calls it has handled, this one included, through any of its gateways.
    pub calls: u64,
}

/// The base gateway every endpoint here serves.
#[rpc_gateway]
pub trait StatusGateway {
    /// The endpoint's status.
    async fn status(&mut self) -> Status;
}

/// A key-value store, which is also a `StatusGateway`.
#[rpc_gateway]
pub trait StoreGateway: StatusGateway {
    /// Stores `value` under `key`; returns the value it replaces.
    async fn put(&mut self, key: String, value: String) -> Option<String>;
    /// The value stored under `key`.
    async fn get(&mut self, key: String) -> Option<String>;
}

/// An append-only journal, which is also a `StatusGateway`.
#[rpc_gateway]
pub trait JournalGateway: StatusGateway {
    /// Appends `line`; returns how many lines there are.
    async fn append(&mut self, line: String) -> usize;
}

/// The store endpoint.
#[derive(Debug, Default)]
pub struct Store {
    entries: BTreeMap<String, String>,
    calls: u64,
}

impl RpcEndpoint for Store {
    // Serving `StoreGateway` brings its supertrait `StatusGateway`.
    rpc_core::serves!(StoreGateway);
}

impl StatusGateway for Store {
    async fn status(&mut self) -> Status {
        self.calls += 1;
        Status {
            kind: "store".into(),
            items: self.entries.len(),
            calls: self.calls,
        }
    }
}

impl StoreGateway for Store {
    async fn put(&mut self, key: String, value: String) -> Option<String> {
        self.calls += 1;
        self.entries.insert(key, value)
    }

    async fn get(&mut self, key: String) -> Option<String> {
        self.calls += 1;
        self.entries.get(&key).cloned()
    }
}

/// The journal endpoint.
#[derive(Debug, Default)]
pub struct Journal {
    lines: Vec<String>,
    calls: u64,
}

impl RpcEndpoint for Journal {
    rpc_core::serves!(JournalGateway);
}

impl StatusGateway for Journal {
    async fn status(&mut self) -> Status {
        self.calls += 1;
        Status {
            kind: "journal".into(),
            items: self.lines.len(),
            calls: self.calls,
        }
    }
}

impl JournalGateway for Journal {
    async fn append(&mut self, line: String) -> usize {
        self.calls += 1;
        self.lines.push(line);
        self.lines.len()
    }
}

/// A dashboard's round: the status of each endpoint in `names` at `address`, through the
/// base gateway alone.
pub async fn dashboard(
    client: &RpcService,
    address: impl ToAddress,
    names: &[&str],
) -> Result<Vec<(String, Status)>, RpcError> {
    let mut statuses = Vec::new();
    for name in names {
        let status: StatusGatewayClient = client.connect(&address, name).await?;
        statuses.push(((*name).to_owned(), status.status().await?));
    }
    Ok(statuses)
}
