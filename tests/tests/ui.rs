//! Compile-time behaviour of `#[cached]`: what compiles (`ui/pass`) and the
//! errors of what does not (`ui/fail`, each beside its `.stderr`).
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p
//! cache-tests --test ui`, then read each as a user would.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
