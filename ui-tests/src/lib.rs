//! The trybuild UI suite of kstreams (see `tests/ui.rs`): what the attribute macros and the typed
//! topology accept, and the message of every mistake they reject, one mistake per file in
//! `tests/ui/fail/`, named for it.
//!
//! Run: `cargo test -p kstreams-ui-tests` (one trybuild run, one cold build of kstreams without
//! its `kafka` feature). The `.stderr` files are pinned to the toolchain of `rust-toolchain.toml`;
//! after a deliberate change, `TRYBUILD=overwrite cargo test -p kstreams-ui-tests` and read the
//! diff. Clippy does not run on these cases; `kstreams/tests/macros_clippy.rs` is the clippy-checked
//! counterpart of `tests/ui/pass/deny_warnings.rs` (`cargo clippy --workspace --all-targets -- -D
//! warnings`, as in `scripts/test`).
