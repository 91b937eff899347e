//! End-to-end and compile-fail tests of the rpc framework: see `tests/`.
