//! Compile-time behaviour of the attribute macros and of typed wiring: what compiles, and what
//! does not with which message. All cases run in one `TestCases` (each run is a cold build).
//!
//! The `.stderr` files are pinned to the toolchain of `rust-toolchain.toml`. After a deliberate
//! change, regenerate them with `TRYBUILD=overwrite cargo test -p kstreams-ui-tests` and read the
//! diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
