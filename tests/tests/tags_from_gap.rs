//! `tags_from`: an invalidation that lands after the fill read the value
//! tags' versions and before the store. MONITOR on a private server tells
//! when the fill's version reads ran; the store follows only after the
//! header (thousands of tags) is built, which leaves room for a caller.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cache_runtime::{Cache, cached};
use cache_tests::{RedisServer, no_hang, redis_cache, unique_namespace};
use serde::{Deserialize, Serialize};

const FILLERS: usize = 20_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Listing {
    edition: u64,
}

fn tags(_: &Listing) -> Vec<String> {
    let mut tags: Vec<String> = (0..FILLERS).map(|i| format!("f{i:05}")).collect();
    // Sorted last: its version is the last the fill reads.
    tags.push("product:7".into());
    tags
}

struct Shop {
    cache: Cache,
    edition: AtomicU64,
    runs: AtomicU64,
}

impl Shop {
    #[cached(cache = self.cache, ttl = 600, key = "listing:{category}", tags_from = tags)]
    async fn listing(&self, category: String) -> Result<Listing, String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(Listing {
            edition: self.edition.load(Ordering::SeqCst),
        })
    }
}

/// Lines of `MONITOR` until one names the product tag's key in a script
/// call (the fill's read of its version); then returns.
fn wait_for_version_read(mut lines: impl Iterator<Item = String>) {
    for line in lines.by_ref() {
        if line.contains("#tag:product:7") && line.to_lowercase().contains("eval") {
            return;
        }
    }
    panic!("monitor ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_starts_after_an_invalidation_gets_no_value_read_before_it() {
    let server = RedisServer::start();
    let namespace = unique_namespace("tags-from-gap");
    let cache = redis_cache(&server.url(), &namespace);
    let writer = redis_cache(&server.url(), &namespace);
    let shop = Arc::new(Shop {
        cache: cache.clone(),
        edition: AtomicU64::new(1),
        runs: AtomicU64::new(0),
    });
    // Creates the versions (not stored), then they are older than any call.
    shop.listing("warm".into()).await.unwrap();
    assert_eq!(cache.stats().value_tags_changed, 1);

    let mut monitor = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    monitor.write_all(b"MONITOR\r\n").unwrap();
    let lines = BufReader::new(monitor.try_clone().unwrap())
        .lines()
        .map_while(Result::ok);
    let watching = std::thread::spawn(move || wait_for_version_read(lines));

    let leader = {
        let shop = shop.clone();
        tokio::spawn(async move { shop.listing("books".into()).await })
    };
    no_hang(20, "the fill's version read", async {
        while !watching.is_finished() {
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
    })
    .await;
    // Product 7 changes; its invalidation returns; then a caller starts.
    shop.edition.fetch_add(1, Ordering::SeqCst);
    writer.invalidate_tag("product:7").await.unwrap();
    let follower = shop.listing("books".into()).await.unwrap();
    let leader = leader.await.unwrap().unwrap();
    eprintln!(
        "leader {leader:?} follower {follower:?} runs {} stats {:?}",
        shop.runs.load(Ordering::SeqCst),
        cache.stats()
    );
    assert_eq!(leader.edition, 1, "the leader read before the invalidation");
    assert_eq!(
        follower.edition, 2,
        "a call that started after the invalidation returned got the value read before it"
    );
    // And nobody is served it later.
    let later = shop.listing("books".into()).await.unwrap();
    assert_eq!(later.edition, 2, "stored and served after the invalidation");
    drop(monitor);
}

/// Without a caller in between: the store that follows the invalidation
/// writes an entry naming the deleted version; it is never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_after_an_invalidation_of_a_version_it_read_is_not_served() {
    let server = RedisServer::start();
    let namespace = unique_namespace("tags-from-gap-store");
    let cache = redis_cache(&server.url(), &namespace);
    let writer = redis_cache(&server.url(), &namespace);
    let shop = Arc::new(Shop {
        cache: cache.clone(),
        edition: AtomicU64::new(1),
        runs: AtomicU64::new(0),
    });
    shop.listing("warm".into()).await.unwrap();
    let mut monitor = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    monitor.write_all(b"MONITOR\r\n").unwrap();
    let lines = BufReader::new(monitor.try_clone().unwrap())
        .lines()
        .map_while(Result::ok);
    let watching = std::thread::spawn(move || wait_for_version_read(lines));
    let leader = {
        let shop = shop.clone();
        tokio::spawn(async move { shop.listing("books".into()).await })
    };
    no_hang(20, "the fill's version read", async {
        while !watching.is_finished() {
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
    })
    .await;
    shop.edition.fetch_add(1, Ordering::SeqCst);
    writer.invalidate_tag("product:7").await.unwrap();
    assert_eq!(leader.await.unwrap().unwrap().edition, 1);
    let stores = cache.stats().stores;
    eprintln!("stores after the leader: {stores} {:?}", cache.stats());
    let later = shop.listing("books".into()).await.unwrap();
    assert_eq!(later.edition, 2, "stored and served after the invalidation");
    // From another process too.
    let other = Arc::new(Shop {
        cache: writer.clone(),
        edition: AtomicU64::new(2),
        runs: AtomicU64::new(0),
    });
    assert_eq!(other.listing("books".into()).await.unwrap().edition, 2);
    drop(monitor);
}

fn two_tags(_: &Listing) -> Vec<String> {
    vec!["s1".into(), "s2".into()]
}

struct Small {
    cache: Cache,
    edition: AtomicU64,
}

impl Small {
    #[cached(cache = self.cache, ttl = 600, key = "small:{k}", tags_from = two_tags)]
    async fn listing(&self, k: u64) -> Result<Listing, String> {
        Ok(Listing {
            edition: self.edition.load(Ordering::SeqCst),
        })
    }
}

/// The same on the memory backend, without any pause: invalidations in a
/// loop, readers in a loop; a read that starts after an invalidation
/// returned must not get a value read before it. The stale reads seen are
/// all followers of a flight (`coalesced`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_no_follower_gets_a_value_read_before_a_returned_invalidation() {
    let cache = Cache::builder()
        .memory()
        .namespace(unique_namespace("tags-from-gap-memory"))
        .build()
        .unwrap();
    let small = Arc::new(Small {
        cache: cache.clone(),
        edition: AtomicU64::new(1),
    });
    // The edition whose invalidation has returned.
    let done = Arc::new(AtomicU64::new(1));
    let writer = {
        let (small, done) = (small.clone(), done.clone());
        tokio::spawn(async move {
            for n in 0..2000u64 {
                let edition = small.edition.fetch_add(1, Ordering::SeqCst) + 1;
                let tag = if n % 2 == 0 { "s1" } else { "s2" };
                small.cache.invalidate_tag(tag).await.unwrap();
                done.store(edition, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_micros(300)).await;
            }
        })
    };
    let mut readers = Vec::new();
    for r in 0..4u64 {
        let (small, done, writer_done) = (small.clone(), done.clone(), writer.abort_handle());
        readers.push(tokio::spawn(async move {
            let mut stale = Vec::new();
            while !writer_done.is_finished() {
                let floor = done.load(Ordering::SeqCst);
                let before = small.cache.stats().coalesced;
                let got = small.listing(r % 2).await.unwrap().edition;
                if got < floor {
                    stale.push((floor, got, small.cache.stats().coalesced - before));
                }
                tokio::task::yield_now().await;
            }
            stale
        }));
    }
    let mut stale = Vec::new();
    for reader in readers {
        stale.extend(reader.await.unwrap());
    }
    assert!(
        stale.is_empty(),
        "{} reads got a value read before an invalidation that returned before they started \
         (after edition, got edition, flights joined meanwhile): {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
}
