//! Cache async functions in Redis, or in process, with one attribute.
//!
//! ```
//! use cache_runtime::{cached, Cache};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! struct Product { id: u64, name: String }
//!
//! #[derive(Debug)]
//! struct DbError;
//!
//! #[cached(ttl = 600, tags = ["products", "category:{category}"])]
//! async fn list_products(category: String) -> Result<Vec<Product>, DbError> {
//!     // the slow query runs only on a miss
//!     Ok(vec![Product { id: 1, name: format!("a {category} book") }])
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cache_runtime::Error> {
//! let cache = Cache::builder().memory().namespace("shop").build()?;
//! cache_runtime::set_default(cache.clone());
//!
//! list_products("books".into()).await.unwrap(); // miss: runs the body
//! list_products("books".into()).await.unwrap(); // hit
//! cache.invalidate_tag("category:books").await?;
//! list_products("books".into()).await.unwrap(); // miss again
//! assert_eq!(cache.stats().hits, 1);
//! assert_eq!(cache.stats().computations, 2);
//! # Ok(()) }
//! ```
//!
//! # What is where
//! - [`macro@cached`]: the attribute, and its reference documentation.
//! - [`Cache`], [`CacheBuilder`]: the backend (Redis, Redis Cluster or
//!   memory), namespace, timeouts; invalidation; [`Stats`].
//! - [`key`]: how keys are derived; [`canonical`]: the argument encoding
//!   behind them; [`tags`]: tag invalidation, what it stores and costs, and
//!   why no stale value survives it. The in-process single flight, the Redis
//!   fill leases and the path of one call each have a module of their own
//!   (`singleflight`, `lease`, `execute`) documented in the source.
//!
//! # Guarantees
//! - **Fail-open**: a Redis error, timeout or outage never fails a call and
//!   never holds it longer than the op timeout per operation; the body runs
//!   and its result is returned. Failures are counted in
//!   [`Stats::errors`] and logged with `tracing`.
//! - **Tags are versions**: invalidating a tag is one single-key write; an
//!   entry filled from data read before an invalidation is never served after
//!   it; a lost tag version invalidates, never revalidates.
//! - **One computation per key**: concurrent callers in a process share one
//!   run of the body, and processes sharing a Redis take a lease.

#![warn(missing_docs)]

mod backend;
mod builder;
mod cache;
pub mod canonical;
mod entry;
mod error;
mod execute;
mod handle;
mod invalidate;
pub mod key;
mod lease;
mod outcome;
mod singleflight;
mod spec;
mod stats;
pub mod tags;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use builder::CacheBuilder;
pub use cache::Cache;
pub use error::Error;
pub use handle::{AsCache, set_default};
pub use stats::Stats;

#[cfg(feature = "macros")]
#[doc(inline)]
pub use cache_macros::cached;
