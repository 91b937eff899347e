//! `serves!(GatewayA, path::GatewayB)`: declares, inside `impl RpcEndpoint for X`, the gateways
//! an endpoint answers. Each gateway also brings its supertrait gateways. It reaches each
//! gateway through the trait's own path (a hidden provided function `#[rpc_gateway]` adds), so
//! any path that names the trait where `serves!` is written works.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Path, Token};

pub fn expand(input: TokenStream) -> TokenStream {
    let paths = match Punctuated::<Path, Token![,]>::parse_terminated.parse2(input) {
        Ok(paths) => paths,
        Err(error) => {
            let mut error = error;
            error.combine(syn::Error::new(
                error.span(),
                "serves! takes the gateway traits this endpoint implements, separated by commas, \
                 as in `rpc_core::serves!(HelloGateway, admin::AdminGateway);`",
            ));
            return error.to_compile_error();
        }
    };
    // `<_ as Trait>::register_rpc_gateway(gateways)` finds the endpoint type from `gateways`, so the
    // only `Self` is in the signature: written outside `impl RpcEndpoint`, that is one error.
    let adds = paths
        .iter()
        .map(|path| quote_spanned!(path.span()=> <_ as #path>::register_rpc_gateway(gateways);));
    quote! {
        fn gateways(gateways: &mut ::rpc_core::Gateways<Self>) {
            #(#adds)*
            let _ = gateways;
        }
    }
}
