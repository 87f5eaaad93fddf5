//! A small pool of SQLite connections, used from async code.
//!
//! rusqlite is blocking, so every query runs on Tokio's blocking thread pool
//! (`spawn_blocking`) with a connection taken from the pool. Why a pool and
//! not one `Mutex<Connection>`: the database is in WAL mode, where readers do
//! not block each other nor the writer, and the dashboard's aggregate takes
//! hundreds of milliseconds uncached. Behind a single mutex, every product
//! lookup would queue behind it. The pool holds a few connections (twice the
//! cores, at least 4): the queries are CPU-bound, so more would only
//! time-slice.
//!
//! The pool also counts queries per request (see [`track_queries`]), which
//! is how the API labels a response `X-Cache: HIT` or `MISS` honestly: a
//! `#[cached]` body only runs on a miss, and the body is what queries the
//! database.

use std::cell::Cell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A database failure. Never cached (`#[cached]` stores `Ok` values only).
#[derive(Debug)]
pub enum DbError {
    /// SQLite said no.
    Sqlite(rusqlite::Error),
    /// The blocking task running the query panicked or was cancelled.
    Task(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "database error: {e}"),
            DbError::Task(e) => write!(f, "database task failed: {e}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

tokio::task_local! {
    static QUERIES: Cell<u32>;
}

/// Runs `fut` and returns its output together with the number of database
/// calls made while polling it, by this task only. Concurrent requests each
/// count their own: a request that got its value from the cache (or from a
/// concurrent request's computation) counts zero.
pub async fn track_queries<F: Future>(fut: F) -> (F::Output, u32) {
    QUERIES
        .scope(Cell::new(0), async move {
            let out = fut.await;
            (out, QUERIES.with(Cell::get))
        })
        .await
}

fn count_query() {
    // Outside `track_queries` (seeding, benchmarks) there is nothing to count.
    let _ = QUERIES.try_with(|n| n.set(n.get() + 1));
}

/// A cloneable handle on the connection pool.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Pool>,
}

struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// The default pool size: twice the cores, at least 4.
pub fn default_pool_size() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 2).max(4)
}

/// Opens one connection with the settings every query relies on.
pub fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // 64 MiB of page cache per connection.
    conn.pragma_update(None, "cache_size", -65_536)?;
    Ok(conn)
}

impl Db {
    /// Opens `size` connections to an existing (seeded) database.
    pub fn open(path: &Path, size: usize) -> Result<Db, DbError> {
        let size = size.max(1);
        let conns = (0..size)
            .map(|_| connect(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Db {
            inner: Arc::new(Pool {
                path: path.to_owned(),
                idle: Mutex::new(conns),
                permits: Arc::new(Semaphore::new(size)),
            }),
        })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    ///
    /// If the caller is dropped (client gone), the query still finishes and
    /// the connection goes back to the pool; if `f` panics, the connection
    /// goes back too (an open `Transaction` rolls back on drop).
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        count_query();
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| DbError::Task(e.to_string()))?;
        let conn = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .expect("a permit guarantees an idle connection");
        let mut pooled = Pooled {
            conn: Some(conn),
            pool: self.inner.clone(),
            _permit: permit,
        };
        tokio::task::spawn_blocking(move || f(pooled.conn.as_mut().expect("set until drop")))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
            .map_err(DbError::from)
    }
}

/// A connection on loan: back to the pool on drop, before its permit is
/// released.
struct Pooled {
    conn: Option<Connection>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}
