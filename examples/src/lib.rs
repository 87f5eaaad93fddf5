//! Runnable examples of `cache-runtime`.
//!
//! - [`products`]: an axum + SQLite products API whose expensive queries are
//!   cached with `#[cached]`, on Redis or in memory. Run it with
//!   `cargo run --release -p cache-examples --bin products-api`.
//!
//! The benchmark compares `#[cached]` with raw Redis calls and with the
//! `cached` crate: `cargo bench -p cache-examples --features peers --bench
//! peers`; see `BENCHMARKS.md` at the repository root.

pub mod products;
