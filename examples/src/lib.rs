//! Runnable examples of `cache-runtime`.
//!
//! - [`products`]: an axum + SQLite products API whose expensive queries are
//!   cached with `#[cached]`, on Redis or in memory. Run it with
//!   `cargo run --release -p cache-examples --bin products-api`.
//! - [`proxy`]: a caching reverse proxy (`CacheLayer` in front of a handler
//!   that forwards to an origin), `cargo run --release -p cache-examples
//!   --bin http-cache-proxy -- --origin URL --listen ADDR`.
//!
//! The benchmark compares `#[cached]` with raw Redis calls and with the
//! `cached` crate: `cargo bench -p cache-examples --features peers --bench
//! peers`; see `BENCHMARKS.md` at the repository root.

pub mod products;
pub mod proxy;
