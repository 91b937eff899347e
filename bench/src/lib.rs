//! Benchmarks of the rpc framework: see `benches/rpc/main.rs`, run with `cargo bench -p rpc-bench`.
