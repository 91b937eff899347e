//! Runnable examples of the rpc framework: see `examples/`.
