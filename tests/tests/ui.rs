//! Compile-fail tests of `#[rpc_gateway]` and `serves!`: each misuse is rejected with an error
//! spanned on the offending tokens that says what to write instead. The `.stderr` snapshots
//! were made with rustc 1.95.0; regenerate them with `TRYBUILD=overwrite cargo test -p
//! rpc-tests --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/types/*.rs");
    t.compile_fail("ui/signature/*.rs");
    t.compile_fail("ui/trait_shape/*.rs");
    t.compile_fail("ui/attribute/*.rs");
    t.compile_fail("ui/endpoint/*.rs");
    t.compile_fail("ui/fencing/*.rs");
    t.pass("ui/pass/*.rs");
}
