//! The compile-time fingerprint of a gateway's method signatures.
//!
//! The connect handshake compares the client's and the server's fingerprint, so that a client
//! built against another version of a gateway is refused at connect time instead of
//! misdecoding invocations later.
//!
//! What it covers: whether the gateway is fenced and its token type, and each method's
//! position, name, kind (ask or tell), argument types and reply type, written as tokens with
//! whitespace removed. What it does not cover: argument names
//! (they never reach the wire), and the *definitions* of the named types: changing the fields
//! of a struct used as an argument keeps the fingerprint; renaming the type, or writing the same
//! type under another path (`String` versus `std::string::String`), changes it.
//!
//! A method or argument behind `#[cfg]` counts only in builds where it exists: the hash of such
//! a gateway is computed by a `const` expression, text piece by text piece under the same
//! `#[cfg]`s, and equals the hash of the text the build's methods would give.
//!
//! The hash is 64-bit FNV-1a, which is stable across compilers and platforms. It covers the
//! gateway's own methods: a proxy of a gateway calls only those, and each supertrait gateway
//! is bound, and checked, with its own fingerprint.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

use crate::ast::{Gateway, Kind, Method};

/// The fingerprint as an expression: a literal, or a `const` computation when methods or
/// arguments are conditional.
pub fn expr(gateway: &Gateway) -> TokenStream {
    let conditional = gateway
        .methods
        .iter()
        .any(|m| m.passed.is_conditional() || m.args.iter().any(|a| a.passed.is_conditional()));
    if !conditional {
        let hash = fnv1a(&canonical(gateway));
        return quote!(#hash);
    }
    let extend = |text: String| quote!(hash = ::rpc_core::__private::fnv1a_extend(hash, #text););
    let mut statements = Vec::new();
    if let Some(token) = &gateway.fenced {
        statements.push(extend(format!("fenced({});", tokens(token))));
    }
    for method in &gateway.methods {
        let head = extend(format!("{} {}(", kind(method), method.ident));
        let args = method.args.iter().map(|a| {
            let (cfgs, ty) = (&a.passed.cfgs, extend(tokens(a.ty)));
            quote!(#(#cfgs)* {
                if !first {
                    hash = ::rpc_core::__private::fnv1a_extend(hash, ",");
                }
                first = false;
                #ty
            })
        });
        let tail = extend(format!(")->{};", reply(method)));
        let cfgs = &method.passed.cfgs;
        statements.push(quote!(#(#cfgs)* {
            #head
            let mut first = true;
            #(#args)*
            let _ = first;
            #tail
        }));
    }
    quote!({
        let mut hash = ::rpc_core::__private::FNV1A_OFFSET;
        #(#statements)*
        hash
    })
}

/// The canonical text the fingerprint hashes, one line per method.
pub fn canonical(gateway: &Gateway) -> String {
    let mut text = String::new();
    // The token type is part of a fenced gateway's contract.
    if let Some(token) = &gateway.fenced {
        text.push_str(&format!("fenced({});", tokens(token)));
    }
    for method in &gateway.methods {
        let args: Vec<String> = method.args.iter().map(|a| tokens(a.ty)).collect();
        text.push_str(&format!(
            "{} {}({})->{};",
            kind(method),
            method.ident,
            args.join(","),
            reply(method)
        ));
    }
    text
}

fn kind(method: &Method) -> &'static str {
    match method.kind() {
        // A deferred reply is an ask on the wire.
        Kind::Ask | Kind::Deferred => "ask",
        Kind::Tell => "tell",
        Kind::Stream => "stream",
    }
}

fn reply(method: &Method) -> String {
    method
        .output
        .reply_type()
        .map(tokens)
        .unwrap_or_else(|| "()".to_owned())
}

/// 64-bit FNV-1a.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn tokens(ty: &syn::Type) -> String {
    ty.to_token_stream()
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}
