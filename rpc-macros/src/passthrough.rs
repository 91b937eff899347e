//! Where the attributes on a method or an argument go.
//!
//! - `#[cfg(..)]`, and `#[cfg_attr(p, cfg(..))]`, decide whether the method or argument exists at
//!   all: every generated item that mentions it carries them (invocation variant or field, client
//!   method or parameter, dispatcher arm, method table, method indices, fingerprint), so it
//!   vanishes everywhere at once.
//! - Doc comments, lint levels (`allow`, `warn`, `deny`, `forbid`, `expect`) and `#[deprecated]`,
//!   plain or under `cfg_attr`, describe the method to its callers: they go to the client method
//!   (lint levels on an argument go to the client's parameter).
//! - Anything else stays on the trait method, where the user wrote it.
//!
//! A `cfg_attr` that mixes the two kinds is split, each half going where it means something.

use proc_macro2::TokenStream;
use quote::quote;
use syn::punctuated::Punctuated;
use syn::{Attribute, Meta, Token};

/// The attributes of one method or argument, sorted by destination.
#[derive(Default)]
pub struct Passed {
    /// Conditions on the item's existence, to repeat on everything generated for it.
    pub cfgs: Vec<TokenStream>,
    /// Docs, lint levels and deprecation, for the client method or parameter.
    pub client: Vec<TokenStream>,
    /// Whether a doc comment (possibly conditional) is among them.
    pub has_doc: bool,
}

impl Passed {
    pub fn new(attrs: &[Attribute]) -> Passed {
        let mut passed = Passed::default();
        for attr in attrs {
            passed.sort(&[], &attr.meta);
        }
        passed
    }

    /// Whether the item is conditional at all.
    pub fn is_conditional(&self) -> bool {
        !self.cfgs.is_empty()
    }

    /// Files `meta`, which holds when every predicate in `conditions` does.
    fn sort(&mut self, conditions: &[TokenStream], meta: &Meta) {
        let path = meta.path();
        if path.is_ident("cfg") {
            self.cfgs.push(under(conditions, meta));
        } else if path.is_ident("cfg_attr") {
            // `cfg_attr(p, a, b)`: each of `a`, `b` under `p` as well. One rustc cannot parse
            // is left on the trait method, where rustc reports it.
            let Meta::List(list) = meta else { return };
            let Ok(parts) = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            else {
                return;
            };
            let mut parts = parts.into_iter();
            let Some(predicate) = parts.next() else {
                return;
            };
            let mut inner = conditions.to_vec();
            inner.push(quote!(#predicate));
            for part in parts {
                self.sort(&inner, &part);
            }
        } else if is_lint(path) || path.is_ident("deprecated") {
            self.client.push(under(conditions, meta));
        } else if path.is_ident("doc") {
            self.has_doc = true;
            self.client.push(under(conditions, meta));
        }
    }
}

/// `#[meta]`, or `#[cfg_attr(all(conditions..), meta)]`.
fn under(conditions: &[TokenStream], meta: &Meta) -> TokenStream {
    match conditions {
        [] => quote!(#[#meta]),
        [one] => quote!(#[cfg_attr(#one, #meta)]),
        many => quote!(#[cfg_attr(all(#(#many),*), #meta)]),
    }
}

/// Whether `path` names a lint level.
pub fn is_lint(path: &syn::Path) -> bool {
    ["allow", "warn", "deny", "forbid", "expect"]
        .iter()
        .any(|level| path.is_ident(level))
}
