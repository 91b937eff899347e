//! End-to-end and compile-fail tests of the rpc framework: see `tests/` and `ui/`.
//!
//! This library holds no code; it compiles the README's examples as doc tests, so the quick
//! start a new user copies is known to build and run.

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
