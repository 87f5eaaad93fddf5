//! `compress_above`: values longer than the bound, as encoded, are stored
//! compressed, and the entry's header says so; every reader takes them,
//! whatever its own setting; a compressed body that does not decompress
//! (or claims more than `max_value_bytes`) is a counted miss, then
//! overwritten. Sizes and header bytes are read raw from Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use cache_runtime::{Cache, CacheBuilder, cached};
use cache_tests::{RedisServer, no_hang, shared_url, unique_namespace};

/// Bodies run, per test (each test has its own namespace and its own
/// arguments, so that runs are counted apart).
struct Shop {
    cache: Cache,
    runs: AtomicU64,
}

/// A page of `n` products, about 60 bytes of JSON each.
fn page(n: u64) -> Vec<String> {
    (0..n)
        .map(|i| format!("Everyday Steel Kettle, 1.7 l, brushed, #{i:05}"))
        .collect()
}

impl Shop {
    fn new(cache: Cache) -> Self {
        Shop {
            cache,
            runs: AtomicU64::new(0),
        }
    }

    #[cached(cache = self.cache, ttl = 600, tags = ["pages"])]
    async fn page(&self, n: u64) -> Vec<String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        page(n)
    }

    #[cached(cache = self.cache, ttl = 600, batch = ids)]
    async fn pages(&self, ids: Vec<u64>) -> HashMap<u64, Vec<String>> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        ids.into_iter().map(|n| (n, page(n))).collect()
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

fn builder(url: &str, ns: &str) -> CacheBuilder {
    Cache::builder()
        .redis(url)
        .namespace(ns)
        .op_timeout(cache_tests::TEST_OP_TIMEOUT)
}

/// The stored entries of `ns` (not its version keys), raw.
fn entries(conn: &mut redis::Connection, ns: &str) -> Vec<(String, Vec<u8>)> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}:*::*"))
        .query(conn)
        .unwrap();
    let mut out: Vec<(String, Vec<u8>)> = keys
        .into_iter()
        .filter_map(|key| {
            let value: Vec<u8> = redis::cmd("GET").arg(&key).query(conn).ok()?;
            value.starts_with(b"cr1 ").then_some((key, value))
        })
        .collect();
    out.sort();
    out
}

fn header(entry: &[u8]) -> String {
    let end = entry.iter().position(|&b| b == b'\n').unwrap();
    String::from_utf8_lossy(&entry[..end]).into_owned()
}

#[tokio::test]
async fn a_value_above_the_bound_is_stored_compressed_and_round_trips() {
    let url = shared_url();
    let ns = unique_namespace("compress-above");
    let shop = Shop::new(builder(&url, &ns).compress_above(1024).build().unwrap());
    let big = page(200);
    let plain_len = serde_json::to_vec(&big).unwrap().len();
    assert!(plain_len > 8_000);

    assert_eq!(shop.page(200).await, big);
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let stored = entries(&mut conn, &ns);
    assert_eq!(stored.len(), 1);
    let (key, entry) = &stored[0];
    assert!(
        header(entry).starts_with("cr1 json+lz4 "),
        "{}",
        header(entry)
    );
    assert!(
        entry.len() < plain_len / 3,
        "{} bytes stored for {plain_len} of JSON",
        entry.len()
    );

    // A hit decodes it: the body does not run again.
    assert_eq!(shop.page(200).await, big);
    assert_eq!(shop.runs(), 1);
    assert_eq!(shop.cache.stats().hits, 1);

    // Below the bound: stored as it was encoded.
    assert_eq!(shop.page(3).await, page(3));
    let stored = entries(&mut conn, &ns);
    let small = stored.iter().find(|(k, _)| k != key).unwrap();
    assert!(
        header(&small.1).starts_with("cr1 json "),
        "{}",
        header(&small.1)
    );
    assert!(small.1.ends_with(&serde_json::to_vec(&page(3)).unwrap()));
    assert_eq!(shop.page(3).await, page(3));
    assert_eq!((shop.runs(), shop.cache.stats().hits), (2, 2));
    assert_eq!(shop.cache.stats().decode_errors, 0);
}

#[tokio::test]
async fn any_reader_takes_compressed_entries_whatever_its_setting() {
    let url = shared_url();
    let ns = unique_namespace("compress-readers");
    let writer = Shop::new(builder(&url, &ns).compress_above(1024).build().unwrap());
    assert_eq!(writer.page(300).await, page(300));
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    assert!(header(&entries(&mut conn, &ns)[0].1).contains("json+lz4"));
    for reader in [
        builder(&url, &ns).build().unwrap(),
        builder(&url, &ns).compress_above(1 << 20).build().unwrap(),
        builder(&url, &ns).local_cache(1 << 20).build().unwrap(),
    ] {
        let reader = Shop::new(reader);
        assert_eq!(reader.page(300).await, page(300));
        assert_eq!(reader.runs(), 0, "read, not computed");
        let stats = reader.cache.stats();
        assert_eq!((stats.hits, stats.decode_errors), (1, 0));
    }
    // And the other way: a compressing cache reads plain entries.
    let plain = Shop::new(builder(&url, &ns).build().unwrap());
    assert_eq!(plain.page(301).await, page(301));
    let compressing = Shop::new(builder(&url, &ns).compress_above(16).build().unwrap());
    assert_eq!(compressing.page(301).await, page(301));
    assert_eq!((compressing.runs(), compressing.cache.stats().hits), (0, 1));
}

/// Replaces the body of the one stored entry of `ns` whose header says
/// it is compressed; returns its key.
fn spoil(conn: &mut redis::Connection, ns: &str, body: &[u8]) -> String {
    let (key, entry) = entries(conn, ns)
        .into_iter()
        .find(|(_, e)| header(e).contains("+lz4"))
        .expect("a compressed entry");
    let end = entry.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut spoiled = entry[..end].to_vec();
    spoiled.extend_from_slice(body);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(spoiled)
        .arg("KEEPTTL")
        .query(conn)
        .unwrap();
    key
}

#[tokio::test]
async fn a_corrupt_compressed_body_is_a_counted_miss_then_overwritten() {
    let url = shared_url();
    let ns = unique_namespace("compress-corrupt");
    let shop = Shop::new(builder(&url, &ns).compress_above(1024).build().unwrap());
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(shop.page(200).await, page(200));
    let stored = entries(&mut conn, &ns)[0].1.clone();
    let end = stored.iter().position(|&b| b == b'\n').unwrap() + 1;
    let body = &stored[end..];
    let mut cut = body.to_vec();
    cut.truncate(body.len() / 2);
    let mut longer = body.to_vec();
    longer[0] = longer[0].wrapping_add(1);
    for (i, bad) in [
        cut,
        longer,
        // A hostile length: 2 GiB, far above `max_value_bytes`.
        vec![0x00, 0x00, 0x00, 0x80, 0x1f, 0x00],
        b"not lz4 at all".to_vec(),
        Vec::new(),
    ]
    .into_iter()
    .enumerate()
    {
        let key = spoil(&mut conn, &ns, &bad);
        let before = shop.cache.stats();
        let runs = shop.runs();
        assert_eq!(no_hang(5, "a call", shop.page(200)).await, page(200));
        let after = shop.cache.stats();
        assert_eq!(shop.runs(), runs + 1, "case {i}: recomputed");
        assert_eq!(after.decode_errors, before.decode_errors + 1, "case {i}");
        assert_eq!(after.misses, before.misses + 1, "case {i}");
        // Overwritten with a good entry: the next call is a hit.
        let now: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
        assert_eq!(now.len(), stored.len(), "case {i}");
        assert_eq!(shop.page(200).await, page(200));
        assert_eq!(shop.runs(), runs + 1, "case {i}: a hit after the overwrite");
        assert_eq!(shop.cache.stats().hits, after.hits + 1);
    }
}

#[tokio::test]
async fn a_claim_above_max_value_bytes_is_not_decompressed() {
    // A writer with a larger bound stores a value the reader would not
    // store: the reader does not decompress it.
    let url = shared_url();
    let ns = unique_namespace("compress-bound");
    let writer = Shop::new(builder(&url, &ns).compress_above(1024).build().unwrap());
    assert_eq!(writer.page(500).await, page(500));
    let reader = Shop::new(
        builder(&url, &ns)
            .compress_above(1024)
            .max_value_bytes(4096)
            .build()
            .unwrap(),
    );
    assert_eq!(reader.page(500).await, page(500));
    assert_eq!(reader.runs(), 1);
    let stats = reader.cache.stats();
    assert_eq!((stats.decode_errors, stats.hits), (1, 0));
}

#[tokio::test]
async fn batch_items_the_local_tier_and_the_memory_backend_compress_too() {
    let server = RedisServer::start();
    let ns = unique_namespace("compress-paths");
    let shop = Shop::new(
        builder(&server.url(), &ns)
            .compress_above(1024)
            .local_cache(1 << 20)
            .build()
            .unwrap(),
    );
    let want: HashMap<u64, Vec<String>> = [(100, page(100)), (2, page(2))].into();
    assert_eq!(shop.pages(vec![100, 2]).await, want);
    let mut conn = server.conn();
    let stored = entries(&mut conn, &ns);
    assert_eq!(stored.len(), 2);
    let compressed = stored
        .iter()
        .filter(|(_, e)| header(e).contains("+lz4"))
        .count();
    assert_eq!(compressed, 1, "only the item above the bound");
    // Another process (a cache without a local tier) reads both items.
    let other = Shop::new(builder(&server.url(), &ns).build().unwrap());
    assert_eq!(other.pages(vec![100, 2]).await, want);
    assert_eq!(other.runs(), 0);
    // A compressed value read from Redis into another local tier, then
    // answered from it.
    assert_eq!(shop.page(250).await, page(250));
    let local = Shop::new(
        builder(&server.url(), &ns)
            .local_cache(1 << 20)
            .build()
            .unwrap(),
    );
    for _ in 0..3 {
        assert_eq!(local.page(250).await, page(250));
    }
    let stats = local.cache.stats();
    assert_eq!((local.runs(), stats.decode_errors), (0, 0));

    let memory = Shop::new(
        Cache::builder()
            .memory()
            .namespace(unique_namespace("compress-memory"))
            .compress_above(1024)
            .build()
            .unwrap(),
    );
    for _ in 0..3 {
        assert_eq!(memory.page(200).await, page(200));
    }
    let stats = memory.cache.stats();
    assert_eq!((memory.runs(), stats.hits, stats.decode_errors), (1, 2, 0));
}

/// Every stored entry of `ns` (functions' and the entry API's), raw.
fn all_entries(conn: &mut redis::Connection, ns: &str) -> Vec<Vec<u8>> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}:*"))
        .query(conn)
        .unwrap();
    keys.into_iter()
        .filter_map(|key| {
            let value: Vec<u8> = redis::cmd("GET").arg(&key).query(conn).ok()?;
            value.starts_with(b"cr1 ").then_some(value)
        })
        .collect()
}

/// The tags of a page: its first three items. `tags_from` takes a
/// `fn(&T)` of the cached type.
#[allow(clippy::ptr_arg)]
fn item_tags(items: &Vec<String>) -> Vec<String> {
    (0..items.len().min(3))
        .map(|i| format!("item:{i}"))
        .collect()
}

struct Tagged {
    cache: Cache,
    runs: AtomicU64,
}

impl Tagged {
    #[cached(cache = self.cache, ttl = 600, tags_from = item_tags)]
    async fn page(&self, n: u64) -> Vec<String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        page(n)
    }
}

#[tokio::test]
async fn a_tags_from_value_is_compressed_after_its_plain_tag_section() {
    let url = shared_url();
    let ns = unique_namespace("compress-tags-from");
    let shop = Tagged {
        cache: builder(&url, &ns).compress_above(1024).build().unwrap(),
        runs: AtomicU64::new(0),
    };
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let runs = || shop.runs.load(Ordering::SeqCst);
    // The first fill creates the tags' versions after it started: its
    // value is returned, not stored (compressed or not).
    assert_eq!(shop.page(200).await, page(200));
    assert!(entries(&mut conn, &ns).is_empty());
    assert_eq!(shop.page(200).await, page(200));
    let stored = entries(&mut conn, &ns);
    assert_eq!(stored.len(), 1);
    let head = header(&stored[0].1);
    // The codec says so; the tags from the value stay readable.
    assert!(head.starts_with("cr1 json+lz4 "), "{head}");
    assert!(
        head.contains(" item:0=") && head.contains(",item:1=") && head.contains(",item:2="),
        "{head}"
    );
    assert!(stored[0].1.len() < 4_000, "{} bytes", stored[0].1.len());

    // Checked, completed, then opened: a hit.
    assert_eq!(shop.page(200).await, page(200));
    assert_eq!((runs(), shop.cache.stats().hits), (2, 1));

    // A tag from the value invalidates it like any tag (the next fill
    // re-creates its version, so is not stored; the one after is).
    shop.cache.invalidate_tag("item:1").await.unwrap();
    assert_eq!(shop.page(200).await, page(200));
    assert_eq!(shop.page(200).await, page(200));
    assert_eq!(shop.page(200).await, page(200));
    assert_eq!((runs(), shop.cache.stats().hits), (4, 2));
    assert_eq!(shop.cache.stats().decode_errors, 0);
}

#[tokio::test]
async fn set_and_prime_store_compressed_above_the_bound() {
    let url = shared_url();
    let ns = unique_namespace("compress-set-prime");
    let shop = Shop::new(builder(&url, &ns).compress_above(1024).build().unwrap());
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();

    assert!(shop.cache.entry("big", &1u8).set(&page(200)).await);
    let stored = all_entries(&mut conn, &ns);
    assert_eq!(stored.len(), 1);
    assert!(
        header(&stored[0]).starts_with("cr1 json+lz4 "),
        "{}",
        header(&stored[0])
    );
    assert_eq!(
        shop.cache
            .entry("big", &1u8)
            .get::<Vec<String>>()
            .await
            .unwrap(),
        Some(page(200))
    );

    assert!(shop.page_prime(300, page(300)).await);
    let stored = all_entries(&mut conn, &ns);
    assert_eq!(stored.len(), 2, "the set entry and the primed one");
    for entry in &stored {
        assert!(
            header(entry).starts_with("cr1 json+lz4 "),
            "{}",
            header(entry)
        );
    }
    // Served without a computation.
    assert_eq!(shop.page(300).await, page(300));
    assert_eq!(shop.runs(), 0);
    assert_eq!(shop.cache.stats().decode_errors, 0);
}
