//! The network transport of the rpc framework: frame codec, wire protocol, connections,
//! handshake and the TCP service.
//!
//! This crate is a placeholder until the transport lands; every endpoint and gateway written
//! against `rpc_core` will work across processes through it without changes.

#![warn(missing_docs)]

pub use rpc_core;
