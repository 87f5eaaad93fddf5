//! The products API server.
//!
//! ```text
//! cargo run --release -p cache-examples --bin products-api
//! ```
//!
//! Environment:
//! - `REDIS_URL`: cache in this Redis (e.g. `redis://127.0.0.1:6379/`);
//!   unset: cache in process memory.
//! - `LOCAL_CACHE_MB`: with Redis, the size of the local tier in front of
//!   it (default 64; 0 turns it off).
//! - `PORT`: where to listen on 127.0.0.1 (default 3000; 0 picks a free port).
//! - `DB_PATH`: the SQLite database (default: `products-api-data/` beside the
//!   executable in the target directory, else in the temp directory).
//! - `SEED_PRODUCTS`, `SEED_ORDERS`: size of a newly seeded database
//!   (default 100 000 and 2 000 000).
//! - `RUST_LOG`: log filter (default `info`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cache_examples::products::{self, SeedConfig, seed};
use cache_runtime::Cache;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("products-api: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let cfg = SeedConfig::from_env()?;
    let db_path =
        std::env::var_os("DB_PATH").map_or_else(|| seed::default_db_path(&cfg), PathBuf::from);
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| format!("PORT must be a port number, got `{p}`"))?,
        Err(_) => 3000,
    };

    let (info, fresh) = {
        let path = db_path.clone();
        tokio::task::spawn_blocking(move || {
            seed::ensure_seeded(&path, &cfg, |line| println!("{line}"))
        })
        .await??
    };
    if !fresh {
        println!(
            "database: {} ({} products, {} orders, {} order items; reused)",
            db_path.display(),
            info.products,
            info.orders,
            info.order_items
        );
    }

    let local_mb: u64 = match std::env::var("LOCAL_CACHE_MB") {
        Ok(mb) => mb
            .parse()
            .map_err(|_| format!("LOCAL_CACHE_MB must be a number, got `{mb}`"))?,
        Err(_) => 64,
    };
    let builder = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() && local_mb > 0 => {
            Cache::builder().redis(url).local_cache(local_mb << 20)
        }
        Ok(url) if !url.is_empty() => Cache::builder().redis(url),
        _ => Cache::builder().memory(),
    };
    let cache = builder
        .namespace("shop")
        .op_timeout(Duration::from_millis(100))
        .build()?;
    let backend = match std::env::var("REDIS_URL") {
        // The host only: the URL may carry a password.
        Ok(url) if !url.is_empty() => format!(
            "redis ({}){}",
            url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host),
            if local_mb > 0 {
                format!(", with a local tier of {local_mb} MiB")
            } else {
                String::new()
            }
        ),
        _ => "memory (in process; set REDIS_URL to use Redis)".to_owned(),
    };

    let app = products::app(cache, &db_path)?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let addr = listener.local_addr()?;
    println!("cache backend: {backend}");
    println!("listening on http://{addr}");
    println!("try: curl -i 'http://{addr}/api/products?category=books'   (again for X-Cache: HIT)");
    println!(
        "     curl -i http://{addr}/api/stats/dashboard ; curl -s http://{addr}/api/cache/stats ; \
         curl -s http://{addr}/metrics ; \
         curl -i -X PUT -H 'content-type: application/json' -d '{{\"price_cents\": 1999}}' http://{addr}/api/products/1"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
