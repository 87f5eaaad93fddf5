//! A caching reverse proxy: `CacheLayer` in front of a handler that
//! forwards to an origin.
//!
//! ```text
//! cargo run --release -p cache-examples --bin http-cache-proxy -- \
//!     --origin http://127.0.0.1:8000 --listen 127.0.0.1:8080 [--redis redis://127.0.0.1:6379/] \
//!     [--ttl SECS] [--grace SECS] [--max-body-bytes N]
//! ```
//!
//! Without `--redis`, responses are cached in process memory.

use std::process::ExitCode;
use std::time::Duration;

use cache_examples::proxy::{self, ProxyConfig};
use cache_runtime::Cache;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: http-cache-proxy --origin URL --listen ADDR [--redis URL] [--ttl SECS] [--grace SECS] [--max-body-bytes N]";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http-cache-proxy: {e}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let mut origin = None;
    let mut listen = None;
    let mut redis = None;
    let mut ttl = 0;
    let mut grace = 0;
    let mut max_body = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--origin" => origin = Some(value()?),
            "--listen" => listen = Some(value()?),
            "--redis" => redis = Some(value()?),
            "--ttl" => ttl = value()?.parse()?,
            "--grace" => grace = value()?.parse()?,
            "--max-body-bytes" => max_body = Some(value()?.parse()?),
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let origin = origin.ok_or("--origin is required")?;
    let listen = listen.ok_or("--listen is required")?;
    let mut config = ProxyConfig::new(origin);
    config.ttl = Duration::from_secs(ttl);
    config.grace = Duration::from_secs(grace);
    if let Some(max) = max_body {
        config.max_body_bytes = max;
    }
    let builder = Cache::builder().namespace("http-cache-proxy");
    let cache = match &redis {
        Some(url) => builder.redis(url.as_str()).build()?,
        None => builder.memory().build()?,
    };
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!(
        "http-cache-proxy: {} -> {} ({})",
        listener.local_addr()?,
        config.origin,
        redis.as_deref().unwrap_or("memory")
    );
    axum::serve(listener, proxy::app(cache, &config))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
