//! Procedural macros of the rpc framework. Use them through `rpc_core`, which re-exports them
//! and provides every runtime item the generated code names.
//!
//! `#[rpc_gateway]` reads as a pipeline, in the manner of `serde_derive`:
//!
//! 1. `ast` turns the annotated trait into a typed form that keeps every original syn node, so
//!    each error can be spanned on the user's own tokens;
//! 2. `check` validates it and collects *every* mistake into one `ctxt::Ctxt`, so a user
//!    sees all of them in one compile;
//! 3. `expand` generates the rewritten trait, the invocation enum, the client proxy, the
//!    dispatcher and the compile-time assertions; on error it still emits the trait and a stub
//!    client beside the errors so one mistake does not cascade into dozens.
//!
//! # Layout
//!
//! - `ast`: the parsed gateway (trait, methods, arguments, receivers, return kinds).
//! - `attr`: the attribute's arguments (`name`, `client`, `fenced`).
//! - `check`: every rule a gateway trait must satisfy, each with the fix in its message.
//! - `ctxt`: the error collector.
//! - `expand`: code generation, one function per generated item.
//! - `fingerprint`: the stable hash of the method signatures.
//! - `passthrough`: where each attribute on a method or argument goes.
//! - `serves`: the `serves!` macro that declares which gateways an endpoint serves.

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod fingerprint;
mod passthrough;
mod serves;

use proc_macro::TokenStream;

/// Turns a trait into an RPC gateway. See `rpc_core::rpc_gateway` for the user documentation.
#[proc_macro_attribute]
pub fn rpc_gateway(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::rpc_gateway(args.into(), input.into()).into()
}

/// Declares the gateways an endpoint serves. See `rpc_core::serves` for the user documentation.
#[proc_macro]
pub fn serves(input: TokenStream) -> TokenStream {
    serves::expand(input.into()).into()
}
