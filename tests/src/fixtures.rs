//! `#[cached]` functions shared by the test binaries and the helper
//! processes they start, so both compute keys from the same function path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use serde::{Deserialize, Serialize};

/// A small value to cache: one product, about 320 bytes of JSON (the one
/// the benchmark and `measure hit` read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price_cents: i64,
    pub currency: String,
    pub in_stock: bool,
    pub rating: f32,
    pub tags: Vec<String>,
}

impl Product {
    /// The product numbered `seed`.
    pub fn sample(seed: u64) -> Self {
        Product {
            id: seed,
            sku: format!("SKU-{seed:06}"),
            name: "Everyday Steel Kettle, 1.7 l".to_owned(),
            description:
                "Brushed stainless steel electric kettle: concealed element, auto shut-off."
                    .to_owned(),
            category: "kitchen/small-appliances".to_owned(),
            price_cents: 4_999,
            currency: "EUR".to_owned(),
            in_stock: true,
            rating: 4.6,
            tags: ["kettle", "stainless-steel", "electric", "bestseller"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

/// A value with a map in its key, filled by whichever process calls first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filled {
    /// Who computed it.
    pub by: String,
}

/// A service whose methods are cached in `self.cache`.
pub struct Probe {
    /// The cache the methods use.
    pub cache: Cache,
    /// Runs of any body.
    pub runs: AtomicU64,
    /// Who is computing (reported in `Filled::by`).
    pub name: String,
}

impl Probe {
    /// A probe on `cache`.
    pub fn new(cache: Cache, name: &str) -> Self {
        Probe {
            cache,
            runs: AtomicU64::new(0),
            name: name.to_owned(),
        }
    }

    /// Keyed by a map and a string full of separators.
    #[cached(cache = self.cache, ttl = 60)]
    pub async fn lookup(&self, filters: HashMap<String, String>, raw: String) -> Filled {
        let _ = (&filters, &raw);
        self.runs.fetch_add(1, Ordering::SeqCst);
        Filled {
            by: self.name.clone(),
        }
    }

    /// A slow cold-key computation that counts its runs in Redis too
    /// (`{counter_key}`), so runs in several processes add up.
    #[cached(cache = self.cache, ttl = 60, lock_ttl = "5s", skip(counter, millis))]
    pub async fn slow(&self, key: String, counter: Option<redis::Client>, millis: u64) -> Filled {
        self.runs.fetch_add(1, Ordering::SeqCst);
        count_run(counter, &key).await;
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Filled {
            by: self.name.clone(),
        }
    }

    /// [`slow`](Self::slow) without stampede protection, for comparison.
    #[cached(cache = self.cache, ttl = 60, lock = false, skip(counter, millis))]
    pub async fn slow_unlocked(
        &self,
        key: String,
        counter: Option<redis::Client>,
        millis: u64,
    ) -> Filled {
        self.runs.fetch_add(1, Ordering::SeqCst);
        count_run(counter, &key).await;
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Filled {
            by: self.name.clone(),
        }
    }
}

/// Counts one run of a body in Redis, under `computations:{key}`.
async fn count_run(counter: Option<redis::Client>, key: &str) {
    if let Some(client) = counter
        && let Ok(mut conn) = client.get_multiplexed_async_connection().await
    {
        let _: redis::RedisResult<i64> = redis::cmd("INCR")
            .arg(format!("computations:{key}"))
            .query_async(&mut conn)
            .await;
    }
}
