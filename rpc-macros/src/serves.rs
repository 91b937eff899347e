//! `serves!(GatewayA, path::GatewayB)`: declares, inside `impl RpcEndpoint for X`, the gateways
//! an endpoint answers. Each gateway also brings its supertrait gateways.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Path, Token};

use crate::ast::suffixed;

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
    let adds = paths.iter().map(|path| {
        let mut client = path.clone();
        if let Some(last) = client.segments.last_mut() {
            last.ident = suffixed(&last.ident, "Client");
        }
        quote_spanned!(path.span()=> gateways.add::<#client>();)
    });
    quote! {
        fn gateways(gateways: &mut ::rpc_core::Gateways<Self>) {
            #(#adds)*
            let _ = gateways;
        }
    }
}
