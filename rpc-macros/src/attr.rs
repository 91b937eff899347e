//! The arguments of `#[rpc_gateway(...)]`.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{LitStr, Meta, Token};

use crate::ctxt::Ctxt;

/// What the attribute may say. Every argument is optional.
#[derive(Default)]
pub struct Args {
    /// `name = "..."`: the gateway's name on the wire and in the connect handshake. Defaults to
    /// the trait's identifier; set it when two gateways in one program share an identifier.
    pub name: Option<LitStr>,
}

struct RawArgs(Punctuated<Meta, Token![,]>);

impl Parse for RawArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        Punctuated::parse_terminated(input).map(RawArgs)
    }
}

impl Args {
    /// Parses the attribute's tokens, recording every unknown or malformed argument.
    pub fn parse(tokens: proc_macro2::TokenStream, cx: &Ctxt) -> Args {
        let mut args = Args::default();
        let raw = match syn::parse2::<RawArgs>(tokens) {
            Ok(raw) => raw,
            Err(error) => {
                cx.syn_error(error);
                return args;
            }
        };
        for meta in raw.0 {
            match &meta {
                Meta::NameValue(nv) if nv.path.is_ident("name") => {
                    match &nv.value {
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(s),
                            ..
                        }) if !s.value().is_empty() => {
                            if args.name.is_some() {
                                cx.error_spanned_by(&meta, "duplicate `name` argument: give it once");
                            }
                            args.name = Some(s.clone());
                        }
                        other => cx.error_spanned_by(
                            other,
                            "`name` takes a non-empty string literal, as in `#[rpc_gateway(name = \"cluster.TaskExecutorGateway\")]`",
                        ),
                    }
                }
                _ => cx.error_spanned_by(
                    meta.path(),
                    format!(
                        "unknown #[rpc_gateway] argument `{}`; the only argument is `name = \"...\"` (the gateway's wire name)",
                        meta.path()
                            .get_ident()
                            .map(ToString::to_string)
                            .unwrap_or_else(|| quote::quote!(#meta).to_string())
                    ),
                ),
            }
        }
        args
    }
}
