//! The products API: the article's cache-aside walkthrough, done with
//! `#[cached]` on a real SQLite database.
//!
//! - [`seed`]: creates the database on first start (reused afterwards).
//! - [`db`]: a small connection pool, and the per-request query count that
//!   drives the `X-Cache` header.
//! - [`queries`]: the SQL, uncached.
//! - [`Catalog`]: the same queries, cached, and the update that invalidates
//!   what it made stale.
//! - [`http`]: the axum router.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use cache_examples::products::{self, SeedConfig};
//! let cfg = SeedConfig { products: 1_000, orders: 10_000 };
//! let path = std::env::temp_dir().join(cfg.file_name());
//! products::seed::ensure_seeded(&path, &cfg, |line| println!("{line}"))?;
//! let cache = cache_runtime::Cache::builder().memory().namespace("shop").build()?;
//! let app = products::app(cache, &path)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod db;
pub mod http;
pub mod queries;
pub mod seed;

use std::path::Path;

pub use catalog::Catalog;
pub use db::{Db, DbError};
pub use seed::SeedConfig;

/// The API's router over the seeded database at `db_path`, caching in
/// `cache`.
///
/// # Errors
/// When the database cannot be opened or was not seeded.
pub fn app(cache: cache_runtime::Cache, db_path: &Path) -> Result<axum::Router, DbError> {
    Ok(http::router(open_catalog(cache, db_path)?))
}

/// The [`Catalog`] over the seeded database at `db_path`.
///
/// # Errors
/// When the database cannot be opened or was not seeded.
pub fn open_catalog(cache: cache_runtime::Cache, db_path: &Path) -> Result<Catalog, DbError> {
    let info = seed::read_info(&db::connect(db_path)?)?
        .ok_or_else(|| DbError::Task(format!("{} is not a seeded database", db_path.display())))?;
    let db = Db::open(db_path, db::default_pool_size())?;
    Ok(Catalog::new(db, cache, info.as_of))
}
