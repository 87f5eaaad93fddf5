//! One process of the multi-process batch test: one batch call of items
//! `FROM..=TO`, each item the body computes counted in Redis under
//! `computations:{id}`; the body takes `BODY_MS`. Prints `ok` when the
//! call returned every item.
//!
//! usage: batch_worker REDIS_URL NAMESPACE FROM TO BODY_MS

use std::collections::HashMap;
use std::time::Duration;

use cache_runtime::{Cache, cached};

struct Shop {
    cache: Cache,
    counter: redis::Client,
    body_ms: u64,
}

impl Shop {
    #[cached(cache = self.cache, ttl = 600, lock_ttl = "30s", batch = ids)]
    async fn products(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, String> {
        let mut conn = self
            .counter
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        for id in &ids {
            redis::cmd("INCR")
                .arg(format!("computations:{id}"))
                .query_async::<u64>(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        }
        tokio::time::sleep(Duration::from_millis(self.body_ms)).await;
        Ok(ids
            .into_iter()
            .map(|id| (id, format!("product {id}")))
            .collect())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!("usage: batch_worker REDIS_URL NAMESPACE FROM TO BODY_MS");
        std::process::exit(2);
    }
    let from: u64 = args[2].parse().expect("FROM");
    let to: u64 = args[3].parse().expect("TO");
    let shop = Shop {
        cache: Cache::builder()
            .op_timeout(cache_tests::TEST_OP_TIMEOUT)
            .redis(args[0].as_str())
            .namespace(args[1].as_str())
            .build()
            .expect("cache"),
        counter: redis::Client::open(args[0].as_str()).expect("url"),
        body_ms: args[4].parse().expect("BODY_MS"),
    };
    let got = shop
        .products((from..=to).collect())
        .await
        .expect("products");
    let all = (from..=to).all(|id| got.get(&id) == Some(&format!("product {id}")));
    println!("{}", if all { "ok" } else { "missing items" });
}
