//! Code generation for `#[rpc_gateway]`, one function per generated item.
//!
//! Every runtime item is named by an absolute path through `::rpc_core::__private`, never by
//! what happens to be in scope where the attribute is used. Local bindings in generated
//! bodies carry a `__rpc_` prefix so they cannot collide with argument names.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Item, ItemTrait, TraitItem};

use crate::ast::{Gateway, Kind, Method, Output, Receiver, wire_format};
use crate::attr::Args;
use crate::check;
use crate::ctxt::Ctxt;
use crate::fingerprint;

pub fn rpc_gateway(args: TokenStream, input: TokenStream) -> TokenStream {
    let cx = Ctxt::default();
    let args = Args::parse(args, &cx);
    let item = match syn::parse2::<Item>(input.clone()) {
        Ok(Item::Trait(item)) => item,
        Ok(other) => {
            cx.error_spanned_by(
                item_head(&other),
                "#[rpc_gateway] applies to a trait: write `#[rpc_gateway] pub trait MyGateway { .. }` \
                 and implement the trait on your endpoint",
            );
            let errors = cx.finish().err().unwrap_or_default();
            return quote!(#errors #input);
        }
        Err(error) => return error.to_compile_error(),
    };
    let gateway = Gateway::from_syn(&item, args);
    check::check(&gateway, &cx);
    match cx.finish() {
        Ok(()) => expand(&gateway),
        Err(errors) => {
            let fallback = fallback(&gateway);
            quote!(#errors #fallback)
        }
    }
}

/// The tokens to blame when the attribute is on something that is not a trait: the item's
/// keyword and name, not its whole body.
fn item_head(item: &Item) -> TokenStream {
    match item {
        Item::Struct(s) => {
            let (token, ident) = (&s.struct_token, &s.ident);
            quote!(#token #ident)
        }
        Item::Enum(e) => {
            let (token, ident) = (&e.enum_token, &e.ident);
            quote!(#token #ident)
        }
        Item::Fn(f) => {
            let (token, ident) = (&f.sig.fn_token, &f.sig.ident);
            quote!(#token #ident)
        }
        Item::Impl(i) => {
            let (token, ty) = (&i.impl_token, &i.self_ty);
            quote!(#token #ty)
        }
        other => quote!(#other),
    }
}

/// What is emitted beside the errors: the user's trait unchanged and a stub client, so that
/// code using them does not fail a second time for the same mistake.
fn fallback(gateway: &Gateway) -> TokenStream {
    let mut item = gateway.item.clone();
    // Pattern arguments are already reported; `_` keeps rustc from reporting them again.
    for trait_item in &mut item.items {
        if let TraitItem::Fn(f) = trait_item {
            for input in &mut f.sig.inputs {
                if let syn::FnArg::Typed(arg) = input {
                    if !matches!(*arg.pat, syn::Pat::Ident(_)) && f.default.is_none() {
                        *arg.pat = syn::parse_quote!(_);
                    }
                }
            }
        }
    }
    let vis = &item.vis;
    let client = gateway.client_ident();
    quote! {
        #[allow(async_fn_in_trait)]
        #item
        #[derive(Clone, Debug)]
        #vis struct #client;
    }
}

fn expand(gateway: &Gateway) -> TokenStream {
    let items = [
        gen_assertions(gateway),
        gen_trait(gateway),
        gen_invocation(gateway),
        gen_client(gateway),
        gen_gateway_impl(gateway),
        gen_dispatch_impl(gateway),
    ];
    quote!(#(#items)*)
}

/// The extra bound on an endpoint serving a fenced gateway: `+ FencedEndpoint<Token = T>`.
fn fenced_bound(gateway: &Gateway) -> TokenStream {
    match &gateway.fenced {
        Some(token) => quote!(+ ::rpc_core::__private::FencedEndpoint<Token = #token>),
        None => TokenStream::new(),
    }
}

/// The trait, with each `async fn` rewritten to return `impl Future + Send`, so that the
/// endpoint's main loop may run on any worker thread. Implementors still write `async fn`.
fn gen_trait(gateway: &Gateway) -> TokenStream {
    let item: &ItemTrait = gateway.item;
    let mut item = item.clone();
    let client = gateway.client_ident();
    let fenced = fenced_bound(gateway);
    let bounds = wire_bounds(gateway);
    // Reached through the trait's own path, so that `serves!(Trait)` and supertraits work
    // with whatever path names the trait where they are written.
    item.items.push(syn::parse_quote! {
        #[doc(hidden)]
        fn register_rpc_gateway(gateways: &mut ::rpc_core::Gateways<Self>)
        where
            Self: ::core::marker::Sized + ::rpc_core::RpcEndpoint #fenced,
            #(#bounds,)*
        {
            gateways.add::<#client>();
        }
    });
    for trait_item in &mut item.items {
        let TraitItem::Fn(f) = trait_item else {
            continue;
        };
        if f.sig.asyncness.take().is_none() {
            continue;
        }
        let output = match &f.sig.output {
            syn::ReturnType::Default => quote!(()),
            syn::ReturnType::Type(_, ty) => quote!(#ty),
        };
        let span = f.sig.output.span();
        f.sig.output = syn::parse_quote_spanned! {span=>
            -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
        };
        if let Some(block) = &f.default {
            f.default = Some(syn::parse_quote!({ async move #block }));
        }
    }
    quote!(#item)
}

/// The names of the functions that write and read argument `arg` of method `method`
/// (positions, so that no two names collide whatever the methods and arguments are called).
fn field_codecs(method: usize, arg: usize) -> (syn::Ident, syn::Ident) {
    (
        format_ident!("__rpc_encode_{}_{}", method, arg),
        format_ident!("__rpc_decode_{}_{}", method, arg),
    )
}

fn gen_invocation(gateway: &Gateway) -> TokenStream {
    let vis = &gateway.item.vis;
    let ident = gateway.invocation_ident();
    let invocation = &ident;
    let doc = format!(
        "The invocation message of [`{}`]: one variant per method, carrying its arguments.\n\n\
         Generated by `#[rpc_gateway]`; this is what crosses the mailbox or the wire.",
        gateway.ident()
    );
    let variants = gateway.methods.iter().enumerate().map(|(position, m)| {
        let name = m.ident;
        let cfgs = &m.passed.cfgs;
        let fields = m.args.iter().enumerate().map(|(arg, a)| {
            let (ident, ty, cfgs) = (a.ident, a.ty, &a.passed.cfgs);
            let doc = ident
                .map(|i| format!("The `{i}` argument."))
                .unwrap_or_default();
            let (encode, decode) = field_codecs(position, arg);
            let serialize = quote!(#invocation::#encode).to_string();
            let deserialize = quote!(#invocation::#decode).to_string();
            quote! {
                #(#cfgs)*
                #[doc = #doc]
                #[serde(serialize_with = #serialize, deserialize_with = #deserialize)]
                #ident: #ty
            }
        });
        let doc = format!("Invokes [`{}::{}`].", gateway.ident(), m.ident);
        quote!(#(#cfgs)* #[doc = #doc] #name { #(#fields),* })
    });
    let codecs = gateway.methods.iter().enumerate().flat_map(|(position, m)| {
        m.args.iter().enumerate().map(move |(arg, a)| {
            let (encode, decode) = field_codecs(position, arg);
            let ty = a.ty;
            let cfgs = m.passed.cfgs.iter().chain(&a.passed.cfgs);
            let cfgs = quote!(#(#cfgs)*);
            let encode_call = probe(ty, "Encode", quote!(encode(value, serializer)));
            let decode_call = probe(ty, "Decode", quote!(decode(deserializer)));
            quote! {
                #cfgs
                fn #encode<__RpcS: ::rpc_core::__private::serde::Serializer>(
                    value: &#ty,
                    serializer: __RpcS,
                ) -> ::core::result::Result<__RpcS::Ok, __RpcS::Error> {
                    #encode_call
                }
                #cfgs
                fn #decode<'__rpc_de, __RpcD: ::rpc_core::__private::serde::Deserializer<'__rpc_de>>(
                    deserializer: __RpcD,
                ) -> ::core::result::Result<#ty, __RpcD::Error> {
                    #decode_call
                }
            }
        })
    });
    quote! {
        #[doc = #doc]
        #[derive(::rpc_core::__private::serde::Serialize, ::rpc_core::__private::serde::Deserialize)]
        #[serde(crate = "::rpc_core::__private::serde")]
        #[allow(non_camel_case_types, non_snake_case, deprecated)]
        #vis enum #ident {
            #(#variants),*
        }

        // How each argument is written: see `probe`.
        #[allow(non_snake_case, deprecated)]
        impl #ident {
            #(#codecs)*
        }
    }
}

fn gen_client(gateway: &Gateway) -> TokenStream {
    let vis = &gateway.item.vis;
    let client = gateway.client_ident();
    let doc = format!(
        "The typed proxy of [`{trait_}`], generated by `#[rpc_gateway]`.\n\n\
         Cheap to clone, `Send + Sync`; the same type calls an endpoint in this process or on \
         another machine. Asks return an [`RpcCall`](::rpc_core::RpcCall) to await; tells \
         return as soon as the invocation is queued.",
        trait_ = gateway.ident()
    );
    let methods = gateway
        .methods
        .iter()
        .enumerate()
        .map(|(position, m)| gen_client_method(gateway, position, m));
    let fencing = gateway.fenced.as_ref().map(|token| {
        quote! {
            /// Returns a copy of this proxy whose calls carry fencing token `token` (for
            /// example the new leader's, after a leadership change).
            #vis fn with_fencing_token(&self, token: #token) -> Self {
                Self { handle: self.handle.with_fencing_token(token) }
            }

            /// The fencing token this proxy's calls carry.
            #vis fn fencing_token(&self) -> ::core::option::Option<&#token> {
                self.handle.fencing_token()
            }
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(Clone)]
        #vis struct #client {
            handle: ::rpc_core::__private::GatewayHandle<#client>,
        }

        /// Sent inside a message, a proxy travels as a reference to its endpoint
        /// incarnation, and arrives as a working proxy (see `rpc_core`'s gateway references).
        impl ::rpc_core::__private::serde::Serialize for #client {
            fn serialize<__RpcS>(&self, serializer: __RpcS)
                -> ::core::result::Result<__RpcS::Ok, __RpcS::Error>
            where
                __RpcS: ::rpc_core::__private::serde::Serializer,
            {
                ::rpc_core::__private::serde::Serialize::serialize(&self.handle, serializer)
            }
        }

        impl<'de> ::rpc_core::__private::serde::Deserialize<'de> for #client {
            fn deserialize<__RpcD>(deserializer: __RpcD)
                -> ::core::result::Result<Self, __RpcD::Error>
            where
                __RpcD: ::rpc_core::__private::serde::Deserializer<'de>,
            {
                <::rpc_core::__private::GatewayHandle<#client>
                    as ::rpc_core::__private::serde::Deserialize<'de>>::deserialize(deserializer)
                    .map(|handle| Self { handle })
            }
        }

        impl ::core::fmt::Debug for #client {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(::core::stringify!(#client))
                    .field("endpoint", self.handle.endpoint())
                    .field("timeout", &self.handle.timeout())
                    .field("fencing_token", &self.handle.fencing_token())
                    .finish()
            }
        }

        impl #client {
            #(#methods)*

            #fencing

            /// Returns a copy of this proxy whose asks time out after `timeout` (unless a call
            /// overrides it with [`RpcCall::with_timeout`](::rpc_core::RpcCall::with_timeout)).
            #vis fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                Self { handle: self.handle.with_timeout(timeout) }
            }

            /// The timeout this proxy gives its asks.
            #vis fn timeout(&self) -> ::core::time::Duration {
                self.handle.timeout()
            }

            /// The endpoint this proxy calls: its name and, for a remote one, its address.
            #vis fn endpoint(&self) -> &::rpc_core::EndpointAddress {
                self.handle.endpoint()
            }
        }
    }
}

fn gen_client_method(gateway: &Gateway, position: usize, m: &Method) -> TokenStream {
    let vis = &gateway.item.vis;
    let name = m.ident;
    let invocation = gateway.invocation_ident();
    let index = method_index(gateway, position);
    // Docs, lint levels and `#[deprecated]` carry over; a method without docs gets one, so
    // that `missing_docs` reports the user's method once, not the generated one too.
    let (cfgs, attrs) = (&m.passed.cfgs, &m.passed.client);
    let fallback_doc = (!m.passed.has_doc).then(|| {
        let doc = format!("Calls [`{}::{}`] on the endpoint.", gateway.ident(), name);
        quote!(#[doc = #doc])
    });
    let docs = quote! {
        #(#cfgs)*
        #(#attrs)*
        #fallback_doc
        #[allow(clippy::too_many_arguments, non_snake_case)]
    };
    let params = m.args.iter().map(|a| {
        let (ident, ty) = (a.ident, a.ty);
        let (cfgs, lints) = (&a.passed.cfgs, &a.passed.client);
        quote!(#(#cfgs)* #(#lints)* #ident: #ty)
    });
    let fields = m.args.iter().map(|a| {
        let (ident, cfgs) = (a.ident, &a.passed.cfgs);
        quote!(#(#cfgs)* #ident)
    });
    let build = quote!(#invocation::#name { #(#fields),* });
    match m.kind() {
        Kind::Ask | Kind::Deferred => {
            let reply = m
                .output
                .reply_type()
                .map_or_else(|| quote!(()), |ty| quote!(#ty));
            let call = match m.output.reply_type() {
                Some(ty) => probe(ty, "Ask", quote!(ask(&self.handle, #index, #build))),
                None => quote!(self.handle.ask(#index, #build)),
            };
            quote! {
                #docs
                #vis fn #name(&self, #(#params),*) -> ::rpc_core::RpcCall<#reply> {
                    #call
                }
            }
        }
        Kind::Stream => {
            let item = m
                .output
                .reply_type()
                .map_or_else(|| quote!(()), |ty| quote!(#ty));
            let call = match m.output.reply_type() {
                Some(ty) => probe(ty, "Ask", quote!(stream(&self.handle, #index, #build))),
                None => {
                    quote!(self.handle.stream_as::<(), ::rpc_core::__private::wire::Plain>(#index, #build))
                }
            };
            quote! {
                #docs
                #vis fn #name(&self, #(#params),*) -> ::rpc_core::Streaming<#item> {
                    #call
                }
            }
        }
        Kind::Tell => quote! {
            #docs
            #vis fn #name(&self, #(#params),*) -> ::core::result::Result<(), ::rpc_core::RpcError> {
                self.handle.tell(#index, #build)
            }
        },
    }
}

fn gen_gateway_impl(gateway: &Gateway) -> TokenStream {
    let client = gateway.client_ident();
    let invocation = gateway.invocation_ident();
    let name = &gateway.name;
    let fingerprint = fingerprint::expr(gateway);
    let methods = gateway.methods.iter().map(|m| {
        let method = m.ident.to_string();
        let cfgs = &m.passed.cfgs;
        let kind = match m.kind() {
            Kind::Ask | Kind::Deferred => quote!(Ask),
            Kind::Tell => quote!(Tell),
            Kind::Stream => quote!(Stream),
        };
        quote!(#(#cfgs)* ::rpc_core::__private::MethodInfo {
            gateway: #name,
            name: #method,
            kind: ::rpc_core::__private::MethodKind::#kind,
        })
    });
    let arms = gateway.methods.iter().enumerate().map(|(position, m)| {
        let (method, cfgs) = (m.ident, &m.passed.cfgs);
        let index = method_index(gateway, position);
        quote!(#(#cfgs)* #invocation::#method { .. } => #index)
    });
    let inner = gateway.inner;
    let (token, fenced, marker) = match &gateway.fenced {
        Some(token) => (quote!(#token), true, quote!(FencedGateway)),
        None => (
            quote!(::rpc_core::__private::Unfenced),
            false,
            quote!(UnfencedGateway),
        ),
    };
    quote! {
        impl ::rpc_core::__private::#marker for #client {}

        impl ::rpc_core::__private::Gateway for #client {
            type Invocation = #invocation;
            type Token = #token;
            const NAME: &'static str = #name;
            const FINGERPRINT: u64 = #fingerprint;
            const FENCED: bool = #fenced;
            const INNER: bool = #inner;
            const METHODS: &'static [::rpc_core::__private::MethodInfo] = &[#(#methods),*];

            fn method_index(invocation: &Self::Invocation) -> usize {
                match *invocation {
                    #(#arms,)*
                }
            }

            fn from_handle(handle: ::rpc_core::__private::GatewayHandle<Self>) -> Self {
                Self { handle }
            }
        }
    }
}

fn gen_dispatch_impl(gateway: &Gateway) -> TokenStream {
    let trait_ = gateway.ident();
    let bounds = wire_bounds(gateway);
    let fenced = fenced_bound(gateway);
    let client = gateway.client_ident();
    let invocation = gateway.invocation_ident();
    let supers = gateway.supers.iter().map(|bound| {
        let path = &bound.path;
        quote_spanned! {path.span()=>
            <__RpcE as #path>::register_rpc_gateway(gateways);
        }
    });
    let arms = gateway.methods.iter().map(|m| {
        let (method, cfgs) = (m.ident, &m.passed.cfgs);
        let fields: Vec<_> = m
            .args
            .iter()
            .map(|a| {
                let (ident, cfgs) = (a.ident, &a.passed.cfgs);
                quote!(#(#cfgs)* #ident)
            })
            .collect();
        let receiver = match m.receiver {
            Receiver::Ref => quote!(&*__rpc_endpoint),
            _ => quote!(&mut *__rpc_endpoint),
        };
        let call = quote!(<__RpcE as #trait_>::#method(#receiver, #(#fields),*));
        let call = if m.is_async() {
            quote!(#call.await)
        } else {
            call
        };
        let body = match (m.kind(), &m.output) {
            (Kind::Tell, _) => quote!({ #call; ::rpc_core::__private::Handled::NoReply }),
            (Kind::Ask, Output::Unit) => quote!({ #call; __rpc_reply.value(()) }),
            // Spanned on the return type, so a reply that cannot be encoded is reported there.
            (Kind::Deferred, Output::Deferred(ty)) => {
                probe(ty, "Reply", quote!(defer(__rpc_reply, #call)))
            }
            (_, Output::Stream(ty)) => probe(ty, "Reply", quote!(stream(__rpc_reply, #call))),
            (_, Output::Value(ty) | Output::Deferred(ty)) => {
                probe(ty, "Reply", quote!(reply(__rpc_reply, #call)))
            }
            (Kind::Deferred | Kind::Stream, Output::Unit) => quote!(__rpc_reply.deferred(#call)),
        };
        quote!(#(#cfgs)* #invocation::#method { #(#fields),* } => #body)
    });
    quote! {
        impl<__RpcE> ::rpc_core::__private::Dispatch<__RpcE> for #client
        where
            __RpcE: #trait_ + ::rpc_core::RpcEndpoint #fenced,
            #(#bounds,)*
        {
            // The handler may be deprecated and its arguments named as the user chose.
            #[allow(unused_variables, clippy::unit_arg, deprecated, non_snake_case)]
            fn dispatch(
                __rpc_endpoint: &mut __RpcE,
                __rpc_invocation: #invocation,
                __rpc_reply: ::rpc_core::__private::ReplyMode,
            ) -> impl ::core::future::Future<Output = ::rpc_core::__private::Handled>
                   + ::core::marker::Send {
                async move {
                    match __rpc_invocation {
                        #(#arms,)*
                    }
                }
            }

            fn register_supers(gateways: &mut ::rpc_core::Gateways<__RpcE>) {
                #(#supers)*
                let _ = gateways;
            }
        }
    }
}

/// The bounds every argument and reply type must meet, as where-clause predicates spanned on
/// the user's types: `T: RpcArgument`, `R: RpcReply`. Each generated item that needs them
/// carries the same predicates with the same spans, so that rustc reports a type that cannot
/// cross the wire once, on the type, in the words of those traits' `on_unimplemented`.
///
/// Methods and arguments behind `#[cfg]` are left out (a where clause cannot carry `#[cfg]`):
/// [`gen_assertions`] checks them, under their `#[cfg]`s.
fn wire_bounds(gateway: &Gateway) -> Vec<TokenStream> {
    let mut bounds = Vec::new();
    for m in gateway
        .methods
        .iter()
        .filter(|m| !m.passed.is_conditional())
    {
        for a in m.args.iter().filter(|a| !a.passed.is_conditional()) {
            let ty = a.ty;
            bounds.push(quote_spanned!(ty.span()=> #ty: ::rpc_core::__private::RpcArgument));
        }
        if let Some(ty) = m.output.reply_type() {
            bounds.push(quote_spanned!(ty.span()=> #ty: ::rpc_core::__private::RpcReply));
        }
    }
    bounds
}

/// The wire format of `ty`: a faster form for byte strings, else the type's serde impls.
fn format_of(ty: &syn::Type) -> TokenStream {
    wire_format(ty).unwrap_or_else(|| quote!(::rpc_core::__private::wire::Plain))
}

/// A call through the wire probe for `ty` in its format (see `rpc_core`'s `wire.rs`): goes
/// through the format when `ty` can cross the wire, and compiles without further errors when
/// it cannot (its bound has already been reported).
fn probe(ty: &syn::Type, what: &str, method: TokenStream) -> TokenStream {
    let format = format_of(ty);
    let can = format_ident!("Can{}", what);
    let cannot = format_ident!("Cannot{}", what);
    quote_spanned! {ty.span()=>
        {
            #[allow(unused_imports)]
            use ::rpc_core::__private::wire::{#can as _, #cannot as _};
            (&::rpc_core::__private::wire::Probe::<#ty, #format>::NEW).#method
        }
    }
}

/// The index of the method at `position` in the method table: the number of methods before it
/// that exist in this build (a literal unless some are behind `#[cfg]`).
fn method_index(gateway: &Gateway, position: usize) -> TokenStream {
    let before = &gateway.methods[..position];
    let fixed = before.iter().filter(|m| !m.passed.is_conditional()).count();
    let conditional: Vec<_> = before
        .iter()
        .filter(|m| m.passed.is_conditional())
        .map(|m| {
            let cfgs = &m.passed.cfgs;
            quote!(#(#cfgs)* { index += 1; })
        })
        .collect();
    if conditional.is_empty() {
        return quote!(#fixed);
    }
    quote!(const {
        let mut index: usize = #fixed;
        #(#conditional)*
        index
    })
}

/// The wire bounds, first of all generated items so that a type that cannot cross the wire is
/// the first error: [`wire_bounds`] as one function's where clause, then one function per
/// method or argument behind `#[cfg]`, under its `#[cfg]`s.
fn gen_assertions(gateway: &Gateway) -> TokenStream {
    let mut checks = Vec::new();
    for m in &gateway.methods {
        let method_cfgs = &m.passed.cfgs;
        let mut bounds = Vec::new();
        for a in &m.args {
            let ty = a.ty;
            let bound = quote_spanned!(ty.span()=> #ty: ::rpc_core::__private::RpcArgument);
            if a.passed.is_conditional() {
                let cfgs = &a.passed.cfgs;
                checks.push(quote!(#(#method_cfgs)* #(#cfgs)* fn check() where #bound {}));
            } else if m.passed.is_conditional() {
                bounds.push(bound);
            }
        }
        if let Some(ty) = m.output.reply_type().filter(|_| m.passed.is_conditional()) {
            bounds.push(quote_spanned!(ty.span()=> #ty: ::rpc_core::__private::RpcReply));
        }
        if !bounds.is_empty() {
            checks.push(quote!(#(#method_cfgs)* fn check() where #(#bounds,)* {}));
        }
    }
    let bounds = wire_bounds(gateway);
    if !bounds.is_empty() {
        checks.insert(0, quote!(fn check() where #(#bounds,)* {}));
    }
    let checks = checks
        .into_iter()
        .map(|check| quote!(const _: () = { #[allow(dead_code)] #check };));
    quote!(#(#checks)*)
}
