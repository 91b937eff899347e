//! Every rule a gateway trait must satisfy.
//!
//! Each rule records its error in the [`Ctxt`] spanned on the offending tokens and says what to
//! write instead; nothing stops at the first mistake.

use syn::visit::Visit;
use syn::{GenericArgument, PathArguments, TraitItem, Type};

use crate::ast::{Gateway, Method, Output, Receiver};
use crate::ctxt::Ctxt;

/// Inherent methods of the generated client; a trait method with one of these names would
/// shadow them (or, for `clone`, silently turn `client.clone()` into a remote call).
pub const RESERVED: &[(&str, &str)] = &[
    (
        "with_timeout",
        "returns a copy of the proxy with another ask timeout",
    ),
    ("timeout", "reads the proxy's ask timeout"),
    ("endpoint", "names the endpoint the proxy calls"),
    ("clone", "clones the proxy (from `Clone`)"),
];

/// The further methods of a fenced gateway's client.
pub const RESERVED_FENCED: &[(&str, &str)] = &[
    (
        "with_fencing_token",
        "returns a copy of the proxy carrying another fencing token",
    ),
    ("fencing_token", "reads the proxy's fencing token"),
];

pub fn check(gateway: &Gateway, cx: &Ctxt) {
    check_trait(gateway, cx);
    for method in &gateway.methods {
        check_method(gateway, method, cx);
    }
}

fn check_trait(gateway: &Gateway, cx: &Ctxt) {
    let item = gateway.item;
    if !item.generics.params.is_empty() {
        cx.error_spanned_by(
            &item.generics,
            "a gateway trait cannot have generic parameters or lifetimes: its invocation message \
             must name concrete types; use concrete types, or define one gateway per type",
        );
    }
    if let Some(where_clause) = &item.generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            "a gateway trait cannot have a where clause: remove it",
        );
    }
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(
            unsafety,
            "a gateway trait cannot be `unsafe`: remove `unsafe`",
        );
    }
    if let Some(auto) = &item.modifiers.auto_token {
        cx.error_spanned_by(
            auto,
            "a gateway trait cannot be an auto trait: remove `auto`",
        );
    }
    for other in &gateway.other_items {
        let message = match other {
            TraitItem::Type(_) => {
                "associated types are not allowed in a gateway trait: the invocation message \
                 needs concrete types; write the concrete type in the method signatures instead"
            }
            TraitItem::Const(_) => {
                "associated consts are not allowed in a gateway trait: it describes remote \
                 calls only; move the constant out, as a `const` beside the trait"
            }
            _ => {
                "only methods are allowed in a gateway trait: `async fn m(&mut self, ..) -> T` \
                 (ask) or `fn m(&mut self, ..)` (tell)"
            }
        };
        cx.error_spanned_by(other, message);
    }
    for bound in &gateway.bad_supers {
        cx.error_spanned_by(
            bound,
            "a gateway's supertraits must be other #[rpc_gateway] traits (or `Send`, `Sync`, \
             `'static`): the proxy forwards only gateway methods; remove this bound (require it \
             of the endpoint type instead)",
        );
    }
    for sup in &gateway.supers {
        if sup.lifetimes.is_some()
            || sup
                .path
                .segments
                .iter()
                .any(|s| !matches!(s.arguments, PathArguments::None))
        {
            cx.error_spanned_by(
                sup,
                "a supertrait gateway cannot take generic arguments: gateways are never generic",
            );
        }
    }
}

fn check_method(gateway: &Gateway, method: &Method, cx: &Ctxt) {
    let sig = method.sig();
    if let Some(constness) = &sig.constness {
        cx.error_spanned_by(constness, "an rpc method cannot be `const`: remove `const`");
    }
    if let syn::Safety::Unsafe(unsafety) = &sig.safety {
        cx.error_spanned_by(
            unsafety,
            "an rpc method cannot be `unsafe`: a remote caller cannot uphold its contract; \
             remove `unsafe`",
        );
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, "an rpc method cannot declare an ABI: remove `extern`");
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, "an rpc method cannot be variadic: remove `...`");
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "an rpc method cannot be generic: its invocation message needs concrete types; \
             replace the type parameters with concrete types",
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            "an rpc method cannot have a where clause: it has no type parameters to constrain",
        );
    }
    let fenced: &[(&str, &str)] = if gateway.fenced.is_some() {
        RESERVED_FENCED
    } else {
        &[]
    };
    if let Some((name, what)) = RESERVED
        .iter()
        .chain(fenced)
        .find(|(name, _)| method.ident == name)
    {
        cx.error_spanned_by(
            method.ident,
            format!(
                "method name `{name}` collides with the generated `{}::{name}`, which {what}; \
                 rename the method",
                gateway.client_ident()
            ),
        );
    }

    match &method.receiver {
        Receiver::RefMut | Receiver::Ref => {}
        Receiver::Other(receiver) => cx.error_spanned_by(
            receiver,
            "an rpc method takes `&mut self` (or `&self`): the endpoint lives on after the \
             call, so the method cannot consume it; write `&mut self`",
        ),
        Receiver::Missing => cx.error_spanned_by(
            &sig.ident,
            format!(
                "an rpc method needs a receiver, since it runs on the endpoint: write `fn {}(&mut self, ..)`",
                sig.ident
            ),
        ),
    }

    for arg in &method.args {
        if arg.ident.is_none() {
            cx.error_spanned_by(
                arg.pat,
                "an rpc method argument must be a plain identifier, because the invocation \
                 message names its fields after the arguments: write `name: Type`",
            );
        }
        check_type(arg.ty, "an argument", cx);
    }

    match (&method.output, method.is_async()) {
        // `Streaming<T>` is the caller's side: said once, by the type check.
        (Output::Value(ty), _) if crate::ast::wrapped(ty, "Streaming").is_some() => {
            check_type(ty, "a return value", cx)
        }
        (Output::Value(ty), false) => cx.error_spanned_by(
            &sig.output,
            format!(
                "a method with a return value must be `async fn` (an ask: the caller awaits the \
                 reply): write `async fn {}`; or remove the return type to make it a one-way \
                 tell, or return `Deferred<{}>` to reply later off the main thread",
                sig.ident,
                quote::quote!(#ty)
            ),
        ),
        (Output::Value(ty) | Output::Deferred(ty) | Output::Stream(ty), _) => {
            check_type(ty, "a return value", cx)
        }
        (Output::Unit, _) => {}
    }
}

/// Rejects the types that can never cross a network: borrowed, `impl Trait`, `Self`.
fn check_type(ty: &Type, what: &str, cx: &Ctxt) {
    let mut visitor = TypeCheck { what, cx };
    visitor.visit_type(ty);
}

struct TypeCheck<'a> {
    what: &'a str,
    cx: &'a Ctxt,
}

impl TypeCheck<'_> {
    /// Standard types that look usable and are not, each with the type to write instead.
    fn known_mistake(&self, path: &syn::TypePath) -> Option<String> {
        if path.qself.is_some() {
            return None;
        }
        let segments: Vec<String> = path
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let last = path.path.segments.last()?;
        let what = self.what;
        match segments.as_slice() {
            ["Rc"] | ["std" | "alloc", "rc", "Rc"] => Some(format!(
                "{what} of an rpc method cannot be an `Rc`: it is not `Send`, and the value is \
                 copied across the wire anyway; use the value itself, or `Arc<T>`"
            )),
            ["Cow"] | ["std" | "alloc", "borrow", "Cow"] => {
                let borrows = match &last.arguments {
                    PathArguments::AngleBracketed(args) => !args
                        .args
                        .iter()
                        .any(|a| matches!(a, GenericArgument::Lifetime(l) if l.ident == "static")),
                    _ => true,
                };
                borrows.then(|| {
                    format!(
                        "{what} of an rpc method cannot borrow, and this `Cow` may: use the owned \
                         type (`String` for `Cow<str>`, `Vec<T>` for `Cow<[T]>`), or \
                         `Cow<'static, ..>`"
                    )
                })
            }
            ["RpcStream" | "Streaming"] | ["rpc_core", "RpcStream" | "Streaming"]
                if what == "an argument" =>
            {
                Some(
                    "an argument of an rpc method cannot be a stream: streams flow from an \
                     endpoint to its caller; to stream to the endpoint, pass it a proxy of your \
                     own endpoint (a gateway reference) whose method returns `RpcStream<T>`, \
                     and have it call that"
                        .to_owned(),
                )
            }
            ["Streaming"] | ["rpc_core", "Streaming"] => Some(
                "an rpc method returns `RpcStream<T>` to stream its reply; `Streaming<T>` is \
                 what the caller's proxy gives back: write `RpcStream<T>`"
                    .to_owned(),
            ),
            ["RpcError"] | ["rpc_core", "RpcError"] => Some(if what == "a return value" {
                "a return value of an rpc method cannot carry `RpcError`: the proxy already \
                 returns `Result<T, RpcError>` for failures of the call itself; return `T`, or \
                 `Result<T, E>` with a serde error type of yours (`String`, an enum)"
                    .to_owned()
            } else {
                format!(
                    "{what} of an rpc method cannot be an `RpcError`: it is not a serde type; \
                     send `String` (its message) or an enum of yours"
                )
            }),
            _ => None,
        }
    }
}

impl<'ast> Visit<'ast> for TypeCheck<'_> {
    fn visit_type_reference(&mut self, reference: &'ast syn::TypeReference) {
        self.cx.error_spanned_by(
            reference,
            format!(
                "{} of an rpc method is sent by value, so it cannot be a reference: use an owned \
                 type (`String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`)",
                self.what
            ),
        );
    }

    fn visit_type_impl_trait(&mut self, impl_trait: &'ast syn::TypeImplTrait) {
        self.cx.error_spanned_by(
            impl_trait,
            format!(
                "{} of an rpc method cannot be `impl Trait`: the invocation message needs a \
                 concrete type; name the type",
                self.what
            ),
        );
    }

    fn visit_type_trait_object(&mut self, object: &'ast syn::TypeTraitObject) {
        let names: Vec<String> = object
            .bounds
            .iter()
            .filter_map(|bound| match bound {
                syn::TypeParamBound::Trait(t) => {
                    t.path.segments.last().map(|s| s.ident.to_string())
                }
                _ => None,
            })
            .collect();
        let fix = if names.iter().any(|n| n == "Error") {
            "for an error, use `String` or an enum of yours deriving `Serialize` and `Deserialize`"
        } else if names.iter().any(|n| n.starts_with("Fn")) {
            "a closure cannot be sent to another process: send an enum of the operations the \
             endpoint knows how to run"
        } else {
            "use a concrete type, or an enum of the cases"
        };
        self.cx.error_spanned_by(
            object,
            format!(
                "{} of an rpc method cannot be a trait object: it has no wire form; {fix}",
                self.what
            ),
        );
    }

    fn visit_type_ptr(&mut self, ptr: &'ast syn::TypePtr) {
        self.cx.error_spanned_by(
            ptr,
            format!(
                "{} of an rpc method cannot be a raw pointer: it points into this process's \
                 memory; send the value itself",
                self.what
            ),
        );
    }

    fn visit_type_fn_ptr(&mut self, function: &'ast syn::TypeFnPtr) {
        self.cx.error_spanned_by(
            function,
            format!(
                "{} of an rpc method cannot be a function pointer: code cannot be sent to \
                 another process; send an enum of the operations the endpoint knows how to run",
                self.what
            ),
        );
    }

    fn visit_type_path(&mut self, path: &'ast syn::TypePath) {
        if let Some(message) = self.known_mistake(path) {
            self.cx.error_spanned_by(path, message);
            return;
        }
        if path.qself.is_none()
            && path
                .path
                .segments
                .first()
                .is_some_and(|s| s.ident == "Self")
        {
            self.cx.error_spanned_by(
                path,
                format!(
                    "{} of an rpc method cannot mention `Self`: the proxy does not know the \
                     endpoint's type; name a concrete type",
                    self.what
                ),
            );
            return;
        }
        syn::visit::visit_type_path(self, path);
    }

    fn visit_generic_argument(&mut self, arg: &'ast GenericArgument) {
        if let GenericArgument::Lifetime(lifetime) = arg {
            if lifetime.ident != "static" {
                self.cx.error_spanned_by(
                    lifetime,
                    format!(
                        "{} of an rpc method cannot borrow: use an owned type, or `'static`",
                        self.what
                    ),
                );
            }
            return;
        }
        syn::visit::visit_generic_argument(self, arg);
    }
}
