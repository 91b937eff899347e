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
    t.compile_fail("ui/streams/*.rs");
    t.pass("ui/pass/*.rs");
}

/// No error the macros cause names what they generate: the `__private` re-exports, `__rpc`
/// helpers, or the invocation enum the user never wrote.
#[test]
fn errors_name_only_what_the_user_wrote() {
    fn visit(dir: &std::path::Path, found: &mut Vec<String>, count: &mut usize) {
        for entry in std::fs::read_dir(dir).expect("read tests/ui") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                visit(&path, found, count);
            } else if path.extension().is_some_and(|e| e == "stderr") {
                *count += 1;
                let text = std::fs::read_to_string(&path).expect("read .stderr");
                for banned in ["__private", "__rpc", "Invocation"] {
                    if text.contains(banned) {
                        found.push(format!("{} names `{banned}`", path.display()));
                    }
                }
            }
        }
    }
    let (mut found, mut count) = (Vec::new(), 0);
    visit(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui"),
        &mut found,
        &mut count,
    );
    assert!(count >= 30, "only {count} .stderr snapshots found");
    assert!(found.is_empty(), "{}", found.join("\n"));
}
