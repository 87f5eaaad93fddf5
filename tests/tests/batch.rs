//! Batch calls (`#[cached(batch = ids)]`): one entry per item, read in one
//! round trip, the body run once with the missing items only. Counts
//! body runs, items and round trips; the guards only catch hangs.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::{RedisServer, backends, no_hang, redis_cache, unique_namespace};

struct Shop {
    cache: Cache,
    /// The items each body run was given, in order.
    runs: Mutex<Vec<Vec<u64>>>,
    /// Items the body leaves out of its map.
    unknown: Vec<u64>,
    /// Bodies wait here (when set), so that two calls' bodies overlap.
    meet: Option<tokio::sync::Barrier>,
}

impl Shop {
    fn new(cache: Cache) -> Arc<Self> {
        Self::with(cache, Vec::new(), None)
    }

    fn with(cache: Cache, unknown: Vec<u64>, meet: Option<usize>) -> Arc<Self> {
        Arc::new(Shop {
            cache,
            runs: Mutex::new(Vec::new()),
            unknown,
            meet: meet.map(tokio::sync::Barrier::new),
        })
    }

    async fn body(&self, ids: &[u64]) -> HashMap<u64, String> {
        self.runs.lock().unwrap().push(ids.to_vec());
        if let Some(meet) = &self.meet {
            meet.wait().await;
        }
        ids.iter()
            .filter(|id| !self.unknown.contains(id))
            .map(|&id| (id, format!("product {id}")))
            .collect()
    }

    #[cached(cache = self.cache, ttl = 600, tags = ["product:{ids}"], batch = ids)]
    async fn products(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, std::io::Error> {
        Ok(self.body(&ids).await)
    }

    #[cached(cache = self.cache, ttl = 600, batch = ids, cache_none = true)]
    async fn products_none(&self, ids: Vec<u64>) -> BTreeMap<u64, String> {
        self.body(&ids).await.into_iter().collect()
    }

    #[cached(cache = self.cache, ttl = 600, batch = ids)]
    async fn failing(&self, ids: Vec<u64>) -> Result<HashMap<u64, String>, std::io::Error> {
        self.body(&ids).await;
        Err(std::io::Error::other("database down"))
    }

    fn runs(&self) -> Vec<Vec<u64>> {
        let mut runs = self.runs.lock().unwrap().clone();
        for run in &mut runs {
            run.sort_unstable();
        }
        runs
    }
}

fn expected(ids: impl IntoIterator<Item = u64>) -> HashMap<u64, String> {
    ids.into_iter()
        .map(|id| (id, format!("product {id}")))
        .collect()
}

#[tokio::test]
async fn a_hundred_items_with_ninety_cached_read_once_and_compute_the_ten() {
    let server = RedisServer::start();
    let shop = Shop::new(redis_cache(&server.url(), &unique_namespace("batch")));
    let cached: Vec<u64> = (0..100).filter(|id| id % 10 != 3).collect();
    assert_eq!(cached.len(), 90);
    shop.products(cached.clone()).await.unwrap();
    assert_eq!(shop.runs().len(), 1);

    let before = shop.cache.stats();
    let mgets = mget_calls(&server);
    let all = shop.products((0..100).collect()).await.unwrap();
    let after = shop.cache.stats();
    assert_eq!(all, expected(0..100));
    let runs = shop.runs();
    assert_eq!(runs.len(), 2, "one body run for the missing items");
    assert_eq!(
        runs[1],
        (0..100).filter(|id| id % 10 == 3).collect::<Vec<_>>()
    );
    assert_eq!(after.hits - before.hits, 90);
    assert_eq!(after.misses - before.misses, 10);
    // The read: one `MGET` per item, all in one pipeline.
    assert_eq!(mget_calls(&server) - mgets, 100);
    let miss_round_trips = after.round_trips - before.round_trips;

    // Now all cached: one round trip in all, and no body run.
    let before = shop.cache.stats();
    let all = shop.products((0..100).collect()).await.unwrap();
    let after = shop.cache.stats();
    assert_eq!(all, expected(0..100));
    assert_eq!(shop.runs().len(), 2);
    assert_eq!(after.round_trips - before.round_trips, 1);
    assert_eq!(after.hits - before.hits, 100);
    eprintln!("round trips: 90 cached {miss_round_trips}, 100 cached 1");
}

fn mget_calls(server: &RedisServer) -> u64 {
    server
        .command_calls()
        .into_iter()
        .find(|(name, _)| name == "mget")
        .map_or(0, |(_, n)| n)
}

#[tokio::test]
async fn an_items_entry_is_the_key_of_a_call_with_that_item_and_its_tags_are_its_own() {
    for cache in backends("batch-tags") {
        let shop = Shop::new(cache.clone());
        assert_eq!(
            shop.products(vec![1, 2, 3, 7]).await.unwrap(),
            expected([1, 2, 3, 7])
        );
        cache.invalidate_tag("product:7").await.unwrap();
        assert_eq!(
            shop.products(vec![1, 2, 3, 7]).await.unwrap(),
            expected([1, 2, 3, 7])
        );
        assert_eq!(shop.runs(), vec![vec![1, 2, 3, 7], vec![7]], "{cache:?}");
        // One item's companion invalidates that item only.
        shop.products_invalidate(&2).await.unwrap();
        // The same item twice is one item; the order does not matter.
        assert_eq!(
            shop.products(vec![3, 2, 2, 1]).await.unwrap(),
            expected([1, 2, 3])
        );
        assert_eq!(shop.runs().last(), Some(&vec![2]), "{cache:?}");
        assert_eq!(shop.runs().len(), 3, "{cache:?}");
        // Every item cached: no body run.
        assert_eq!(shop.products(vec![7, 1]).await.unwrap(), expected([1, 7]));
        assert_eq!(shop.runs().len(), 3, "{cache:?}");
    }
}

#[tokio::test]
async fn items_the_body_leaves_out_are_not_stored_unless_cache_none() {
    for cache in backends("batch-absent") {
        let shop = Shop::with(cache.clone(), vec![13], None);
        assert_eq!(shop.products(vec![12, 13]).await.unwrap(), expected([12]));
        assert_eq!(shop.products(vec![12, 13]).await.unwrap(), expected([12]));
        assert_eq!(shop.runs(), vec![vec![12, 13], vec![13]], "{cache:?}");

        let shop = Shop::with(cache.clone(), vec![13], None);
        let both: BTreeMap<u64, String> = [(12, "product 12".to_owned())].into();
        assert_eq!(shop.products_none(vec![12, 13]).await, both);
        assert_eq!(shop.products_none(vec![13, 12]).await, both);
        assert_eq!(shop.runs(), vec![vec![12, 13]], "{cache:?}");
    }
}

#[tokio::test]
async fn an_error_stores_nothing_and_is_returned() {
    for cache in backends("batch-err") {
        let shop = Shop::new(cache.clone());
        shop.products(vec![1]).await.unwrap();
        assert!(shop.failing(vec![1, 2]).await.is_err());
        assert!(shop.failing(vec![1, 2]).await.is_err());
        assert_eq!(
            shop.runs(),
            vec![vec![1], vec![1, 2], vec![1, 2]],
            "{cache:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batch_calls_compute_each_shared_item_once() {
    for cache in backends("batch-flight") {
        // Both bodies must run at the same time (they meet): the call
        // that waits for the other's items runs its body for the rest
        // meanwhile, or this hangs.
        let shop = Shop::with(cache.clone(), Vec::new(), Some(2));
        let (a, b) = no_hang(30, "two overlapping batch calls", async {
            let first = tokio::spawn({
                let shop = shop.clone();
                async move { shop.products((1..=60).collect()).await.unwrap() }
            });
            let second = tokio::spawn({
                let shop = shop.clone();
                async move { shop.products((40..=100).collect()).await.unwrap() }
            });
            (first.await.unwrap(), second.await.unwrap())
        })
        .await;
        assert_eq!(a, expected(1..=60));
        assert_eq!(b, expected(40..=100));
        let runs = shop.runs();
        assert_eq!(runs.len(), 2, "{cache:?}");
        let mut computed: Vec<u64> = runs.concat();
        computed.sort_unstable();
        assert_eq!(
            computed,
            (1..=100).collect::<Vec<_>>(),
            "each item once ({cache:?})"
        );
    }
}

#[tokio::test]
async fn redis_down_runs_the_body_for_every_item_and_the_call_succeeds() {
    let mut server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("batch-down"))
        .op_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let shop = Shop::new(cache.clone());
    shop.products(vec![1, 2]).await.unwrap();
    server.kill();
    let all = no_hang(
        30,
        "a batch call with Redis down",
        shop.products(vec![1, 2, 3]),
    )
    .await
    .unwrap();
    assert_eq!(all, expected([1, 2, 3]));
    assert_eq!(shop.runs(), vec![vec![1, 2], vec![1, 2, 3]]);
    assert!(cache.stats().errors >= 1);
}

#[test]
fn two_processes_with_overlapping_batches_compute_each_item_once() {
    let server = RedisServer::start();
    let namespace = unique_namespace("batch-procs");
    let worker = env!("CARGO_BIN_EXE_batch_worker");
    let spawn = |from: u64, to: u64| {
        Command::new(worker)
            .args([
                server.url(),
                namespace.clone(),
                from.to_string(),
                to.to_string(),
                "300".into(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("worker")
    };
    let (a, b) = (spawn(1, 60), spawn(40, 100));
    for child in [a, b] {
        let out = child.wait_with_output().expect("worker output");
        assert!(out.status.success(), "worker failed");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
    let mut conn = server.conn();
    for id in 1..=100u64 {
        let runs: u64 = redis::cmd("GET")
            .arg(format!("computations:{id}"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(runs, 1, "item {id} computed {runs} times");
    }
}
