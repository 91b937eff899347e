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
    /// `fenced` or `fenced = Token`: the gateway is fenced, with this token type
    /// (`rpc_core::FencingId` when none is given).
    pub fenced: Option<syn::Type>,
    /// `client = "Name"`: the generated client's name, instead of `{Trait}Client` (for when
    /// that name is taken).
    pub client: Option<syn::Ident>,
    /// `inner` or `outer`: the network the gateway is for. An inner gateway is served only on
    /// inner listeners (servers talking to servers); an outer one (and one marked neither)
    /// on every listener.
    pub network: Option<(Network, proc_macro2::Span)>,
}

/// The network a gateway is marked for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// `inner`: only other servers reach it.
    Inner,
    /// `outer`: players (any client) reach it.
    Outer,
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
                Meta::NameValue(nv) if nv.path.is_ident("client") => match &nv.value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) => match syn::parse_str::<syn::Ident>(&s.value()) {
                        Ok(ident) => {
                            if args.client.is_some() {
                                cx.error_spanned_by(&meta, "duplicate `client` argument: give it once");
                            }
                            args.client = Some(syn::Ident::new(&ident.to_string(), s.span()));
                        }
                        Err(_) => cx.error_spanned_by(
                            s,
                            "`client` takes the generated client's name, a Rust identifier, as in `#[rpc_gateway(client = \"StoreProxy\")]`",
                        ),
                    },
                    other => cx.error_spanned_by(
                        other,
                        "`client` takes a string literal naming the generated client, as in `#[rpc_gateway(client = \"StoreProxy\")]`",
                    ),
                },
                Meta::Path(path) if path.is_ident("fenced") => {
                    args.set_fenced(&meta, syn::parse_quote!(::rpc_core::FencingId), cx);
                }
                Meta::NameValue(nv) if nv.path.is_ident("fenced") => match &nv.value {
                    syn::Expr::Path(syn::ExprPath {
                        qself: None, path, ..
                    }) => {
                        let token = syn::Type::Path(syn::TypePath {
                            attrs: Vec::new(),
                            qself: None,
                            path: path.clone(),
                        });
                        args.set_fenced(&meta, token, cx);
                    }
                    other => cx.error_spanned_by(
                        other,
                        "`fenced` takes the fencing token's type, as in `#[rpc_gateway(fenced = JobMasterId)]`, or nothing: `#[rpc_gateway(fenced)]` uses `rpc_core::FencingId`",
                    ),
                },
                Meta::Path(path) if path.is_ident("inner") || path.is_ident("outer") => {
                    let network = if path.is_ident("inner") {
                        Network::Inner
                    } else {
                        Network::Outer
                    };
                    match args.network {
                        Some((before, _)) if before == network => cx.error_spanned_by(
                            &meta,
                            format!("duplicate `{}` argument: give it once", path.get_ident().map(ToString::to_string).unwrap_or_default()),
                        ),
                        Some(_) => cx.error_spanned_by(
                            &meta,
                            "a gateway is for the `inner` or the `outer` network, not both: keep one (a gateway marked neither is served on every listener)",
                        ),
                        None => args.network = Some((network, syn::spanned::Spanned::span(path))),
                    }
                }
                Meta::List(list) if list.path.is_ident("fenced") => cx.error_spanned_by(
                    &meta,
                    "write `fenced = TokenType` (or just `fenced`), not `fenced(..)`",
                ),
                _ => cx.error_spanned_by(
                    meta.path(),
                    format!(
                        "unknown #[rpc_gateway] argument `{}`; the arguments are `name = \"...\"` (the gateway's wire name), `client = \"...\"` (the generated client's name), `fenced` or `fenced = TokenType` (a fenced gateway), and `inner` or `outer` (the network it is served on)",
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

    fn set_fenced(&mut self, meta: &Meta, token: syn::Type, cx: &Ctxt) {
        if self.fenced.is_some() {
            cx.error_spanned_by(meta, "duplicate `fenced` argument: give it once");
        }
        self.fenced = Some(token);
    }
}
