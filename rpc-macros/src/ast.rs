//! The typed form of a gateway trait.
//!
//! Parsing here is lenient: it classifies what the user wrote and keeps the original syn nodes,
//! and leaves every judgement to [`crate::check`], so that all mistakes are reported together.

use syn::{
    FnArg, Ident, ItemTrait, Pat, ReturnType, Signature, TraitItem, TraitItemFn, Type,
    TypeParamBound,
};

use crate::passthrough::Passed;

/// A trait annotated with `#[rpc_gateway]`.
pub struct Gateway<'a> {
    /// The trait as the user wrote it.
    pub item: &'a ItemTrait,
    /// The gateway's wire name: `name = "..."` or the trait's identifier.
    pub name: String,
    /// The fencing token type of a fenced gateway (`fenced` / `fenced = T`).
    pub fenced: Option<syn::Type>,
    /// The client's name if `client = "..."` gave one.
    pub client: Option<Ident>,
    /// Whether the gateway is for the inner network only (`inner`).
    pub inner: bool,
    /// The RPC methods, in declaration order (the order fixes the wire's method indices).
    pub methods: Vec<Method<'a>>,
    /// Items other than methods (associated types, consts, macros); always an error.
    pub other_items: Vec<&'a TraitItem>,
    /// Supertraits that are other gateways (everything but the allowed marker bounds).
    pub supers: Vec<&'a syn::TraitBound>,
    /// Supertrait bounds that are neither a gateway path nor an allowed marker (`?Sized`, ...).
    pub bad_supers: Vec<&'a TypeParamBound>,
}

/// One method of the gateway.
pub struct Method<'a> {
    /// The method as the user wrote it.
    pub item: &'a TraitItemFn,
    pub ident: &'a Ident,
    pub receiver: Receiver<'a>,
    pub args: Vec<Arg<'a>>,
    pub output: Output<'a>,
    /// Its attributes, sorted by where they go.
    pub passed: Passed,
}

impl Method<'_> {
    pub fn sig(&self) -> &Signature {
        &self.item.sig
    }

    pub fn is_async(&self) -> bool {
        self.item.sig.asyncness.is_some()
    }

    /// How the method is called, once [`crate::check`] has accepted it.
    pub fn kind(&self) -> Kind {
        match (&self.output, self.is_async()) {
            (Output::Deferred(_), _) => Kind::Deferred,
            (Output::Stream(_), _) => Kind::Stream,
            (_, true) => Kind::Ask,
            (Output::Unit, false) => Kind::Tell,
            // Rejected by check; classify as ask so expansion never sees it.
            (Output::Value(_), false) => Kind::Ask,
        }
    }
}

/// How the method is invoked through a proxy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `async fn m(..) -> T`: the caller awaits the reply.
    Ask,
    /// `fn m(..) -> Deferred<T>` (or `async fn`): the reply is finished off the main thread.
    Deferred,
    /// `fn m(..)`: one-way, no reply.
    Tell,
    /// `fn m(..) -> RpcStream<T>` (or `async fn`): the caller reads a stream of items.
    Stream,
}

/// The method's receiver.
pub enum Receiver<'a> {
    /// `&mut self` (or `self: &mut Self`)
    RefMut,
    /// `&self` (or `self: &Self`)
    Ref,
    /// `self`, `mut self`, `self: Box<Self>` and other forms; always an error.
    Other(&'a syn::Receiver),
    /// No receiver at all (an associated function); always an error.
    Missing,
}

/// One argument after the receiver.
pub struct Arg<'a> {
    pub pat: &'a Pat,
    pub ty: &'a Type,
    /// The argument's name when the pattern is a plain identifier (`name` or `mut name`).
    pub ident: Option<&'a Ident>,
    /// Its attributes, sorted by where they go.
    pub passed: Passed,
}

/// The method's return type.
pub enum Output<'a> {
    /// No return type, or `-> ()`.
    Unit,
    /// `-> T`.
    Value(&'a Type),
    /// `-> Deferred<T>` (recognised by the last path segment): the inner `T`.
    Deferred(&'a Type),
    /// `-> RpcStream<T>` (recognised by the last path segment): the item type `T`.
    Stream(&'a Type),
}

impl<'a> Output<'a> {
    /// The type the caller receives (`()` for tells and unit asks).
    pub fn reply_type(&self) -> Option<&'a Type> {
        match self {
            Output::Unit => None,
            Output::Value(ty) | Output::Deferred(ty) | Output::Stream(ty) => Some(ty),
        }
    }
}

impl<'a> Gateway<'a> {
    pub fn from_syn(item: &'a ItemTrait, args: crate::attr::Args) -> Gateway<'a> {
        let crate::attr::Args {
            name,
            fenced,
            client,
            network,
        } = args;
        let name = name.as_ref().map(syn::LitStr::value);
        let mut methods = Vec::new();
        let mut other_items = Vec::new();
        for trait_item in &item.items {
            match trait_item {
                TraitItem::Fn(f) => methods.push(Method::from_syn(f)),
                other => other_items.push(other),
            }
        }
        let mut supers = Vec::new();
        let mut bad_supers = Vec::new();
        for bound in &item.supertraits {
            match bound {
                TypeParamBound::Trait(t) if is_marker(&t.path) => {}
                TypeParamBound::Trait(t) if is_std_trait(&t.path) => bad_supers.push(bound),
                TypeParamBound::Trait(t) if t.maybe.is_none() => supers.push(t),
                TypeParamBound::Lifetime(l) if l.ident == "static" => {}
                other => bad_supers.push(other),
            }
        }
        Gateway {
            item,
            name: name.unwrap_or_else(|| item.ident.to_string()),
            fenced,
            client,
            inner: matches!(network, Some((crate::attr::Network::Inner, _))),
            methods,
            other_items,
            supers,
            bad_supers,
        }
    }

    pub fn ident(&self) -> &Ident {
        &self.item.ident
    }

    /// `FooGateway` -> `FooGatewayClient`.
    pub fn client_ident(&self) -> Ident {
        match &self.client {
            Some(client) => client.clone(),
            None => suffixed(self.ident(), "Client"),
        }
    }

    /// `FooGateway` -> `FooGatewayInvocation`.
    pub fn invocation_ident(&self) -> Ident {
        suffixed(self.ident(), "Invocation")
    }
}

/// Appends `suffix` to `ident`, keeping its span so errors point at the user's identifier.
pub fn suffixed(ident: &Ident, suffix: &str) -> Ident {
    Ident::new(&format!("{ident}{suffix}"), ident.span())
}

/// Supertraits a gateway may carry without them being gateways: they constrain the
/// implementor, not the protocol.
fn is_marker(path: &syn::Path) -> bool {
    path.segments.last().is_some_and(|s| {
        ["Send", "Sync", "Sized", "Unpin"]
            .iter()
            .any(|m| s.ident == m)
    })
}

/// Common standard-library traits that are certainly not gateways; without this a user
/// writing `trait G: Debug` would be told that `DebugClient` does not exist.
fn is_std_trait(path: &syn::Path) -> bool {
    const STD: &[&str] = &[
        "Any",
        "Clone",
        "Copy",
        "Debug",
        "Default",
        "Display",
        "Eq",
        "Hash",
        "Ord",
        "PartialEq",
        "PartialOrd",
        "Error",
        "Future",
        "Iterator",
        "Fn",
        "FnMut",
        "FnOnce",
    ];
    path.segments
        .last()
        .is_some_and(|s| STD.iter().any(|t| s.ident == t))
}

/// Whether `ty` is `Self`.
fn is_self(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self"))
}

impl<'a> Method<'a> {
    fn from_syn(item: &'a TraitItemFn) -> Method<'a> {
        let sig = &item.sig;
        let mut inputs = sig.inputs.iter();
        let receiver = match sig.inputs.first() {
            Some(FnArg::Receiver(r)) => {
                inputs.next();
                match &r.kind {
                    syn::ReceiverKind::Reference(_, _, mutability) if r.mutability.is_none() => {
                        if mutability.is_some() {
                            Receiver::RefMut
                        } else {
                            Receiver::Ref
                        }
                    }
                    // `self: &mut Self` and `self: &Self`, the same receivers spelled out.
                    syn::ReceiverKind::Typed(_, ty) if r.mutability.is_none() => match &**ty {
                        Type::Reference(reference) if is_self(&reference.elem) => {
                            if reference.mutability.is_some() {
                                Receiver::RefMut
                            } else {
                                Receiver::Ref
                            }
                        }
                        _ => Receiver::Other(r),
                    },
                    _ => Receiver::Other(r),
                }
            }
            _ => Receiver::Missing,
        };
        let args = inputs
            .filter_map(|arg| match arg {
                FnArg::Typed(t) => Some(Arg {
                    pat: &t.pat,
                    ty: &t.ty,
                    passed: Passed::new(&t.attrs),
                    ident: match &*t.pat {
                        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(&p.ident),
                        _ => None,
                    },
                }),
                // A receiver in a later position is a syntax error rustc reports itself.
                FnArg::Receiver(_) => None,
            })
            .collect();
        let output = match &sig.output {
            ReturnType::Default => Output::Unit,
            ReturnType::Type(_, ty) => match &**ty {
                Type::Tuple(t) if t.elems.is_empty() => Output::Unit,
                ty => match (wrapped(ty, "Deferred"), wrapped(ty, "RpcStream")) {
                    (Some(inner), _) => Output::Deferred(inner),
                    (_, Some(item)) => Output::Stream(item),
                    _ => Output::Value(ty),
                },
            },
        };
        Method {
            item,
            ident: &sig.ident,
            receiver,
            args,
            output,
            passed: Passed::new(&item.attrs),
        }
    }
}

/// Recognises `Deferred<T>` or `RpcStream<T>` (any path ending in `wrapper` with one type
/// argument): the `T`.
pub fn wrapped<'a>(ty: &'a Type, wrapper: &str) -> Option<&'a Type> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() {
        return None;
    }
    let last = p.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [syn::GenericArgument::Type(inner)] => Some(inner),
        _ => None,
    }
}

/// The wire format of a type the framework writes faster than its serde impls would, as a path
/// to a `rpc_core::__private::wire` format: `Vec<u8>` (as one byte string), `bytes::Bytes`
/// (one byte string, read without a copy when large), and `Option` or `Result<_, E>` around
/// one. `None` for every other type (written by its serde impls).
///
/// Recognised by how the type is written: `Vec<u8>` behind a type alias is written the slow
/// way, as the same bytes.
pub fn wire_format(ty: &Type) -> Option<proc_macro2::TokenStream> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let names: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    if matches!(
        names
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["Bytes"] | ["bytes", "Bytes"]
    ) && path.path.segments.iter().all(|s| s.arguments.is_none())
    {
        return Some(quote::quote!(::rpc_core::__private::wire::SharedBytes));
    }
    let last = path.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let types: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|arg| match arg {
            syn::GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    let prefix: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let is = |paths: &[&[&str]]| paths.contains(&prefix.as_slice());
    match types.as_slice() {
        [inner] if is(&[&["Vec"], &["std", "vec", "Vec"], &["alloc", "vec", "Vec"]]) => {
            let Type::Path(inner) = inner else {
                return None;
            };
            inner
                .path
                .is_ident("u8")
                .then(|| quote::quote!(::rpc_core::__private::wire::Bytes))
        }
        [inner]
            if is(&[
                &["Option"],
                &["std", "option", "Option"],
                &["core", "option", "Option"],
            ]) =>
        {
            let inner = wire_format(inner)?;
            Some(quote::quote!(::rpc_core::__private::wire::OptionOf<#inner>))
        }
        [ok, _]
            if is(&[
                &["Result"],
                &["std", "result", "Result"],
                &["core", "result", "Result"],
            ]) =>
        {
            let ok = wire_format(ok)?;
            Some(quote::quote!(::rpc_core::__private::wire::ResultOf<#ok>))
        }
        _ => None,
    }
}
