//! Collects every error found while checking a gateway, so a user sees all of them at once.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// The error collector threaded through parsing and checking.
///
/// Errors are spanned on the tokens they are about; [`Ctxt::finish`] combines them into one
/// `syn::Error` whose `to_compile_error` yields one `compile_error!` per mistake.
#[derive(Default)]
pub struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
}

impl Ctxt {
    /// Records an error spanned on `tokens`.
    pub fn error_spanned_by<T: ToTokens, M: Display>(&self, tokens: T, message: M) {
        self.errors
            .borrow_mut()
            .push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Records an already built error (for example one returned by syn while parsing).
    pub fn syn_error(&self, error: syn::Error) {
        self.errors.borrow_mut().push(error);
    }

    /// Returns all collected errors combined, or `Ok` when there were none.
    pub fn finish(self) -> Result<(), TokenStream> {
        let mut errors = self.errors.into_inner().into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            combined.combine(error);
        }
        Err(combined.to_compile_error())
    }
}
