//! `tags_from` with a refresh in the background (`refresh_ahead`, and
//! `grace` with `timeout`): the refresh's value is stored like any fill's
//! once its tags' versions are older than the refresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};
use cache_tests::{backends, no_hang};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Listing {
    edition: u64,
}

fn product_tags(_: &Listing) -> Vec<String> {
    vec!["product:7".into()]
}

struct Db {
    edition: AtomicU64,
}

#[cached(cache = cache, skip(cache, db), ttl = 2, refresh_ahead = true, key = "ahead:{k}", tags_from = product_tags)]
async fn ahead(cache: Cache, db: Arc<Db>, k: String) -> Result<Listing, String> {
    let _ = (&cache, &k);
    tokio::time::sleep(Duration::from_millis(400)).await;
    Ok(Listing {
        edition: db.edition.load(Ordering::SeqCst),
    })
}

#[cached(cache = cache, skip(cache, db), ttl = 1, grace = "1h", timeout = "50ms", key = "graced:{k}", tags_from = product_tags)]
async fn graced(cache: Cache, db: Arc<Db>, k: String) -> Result<Listing, String> {
    let _ = (&cache, &k);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(Listing {
        edition: db.edition.load(Ordering::SeqCst),
    })
}

/// Waits until a background refresh has ended: stored, or refused.
async fn refresh_ended(cache: &Cache, stores: u64, refused: u64) -> (u64, u64) {
    no_hang(20, "the refresh", async {
        loop {
            let s = cache.stats();
            if s.stores > stores || s.value_tags_changed > refused {
                return (s.stores - stores, s.value_tags_changed - refused);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_ahead_stores_its_value() {
    for cache in backends("tags-from-ahead") {
        let name = cache.backend_name();
        let db = Arc::new(Db {
            edition: AtomicU64::new(1),
        });
        // The first fill creates the version (not stored); the second stores.
        ahead(cache.clone(), db.clone(), "a".into()).await.unwrap();
        ahead(cache.clone(), db.clone(), "a".into()).await.unwrap();
        assert_eq!(cache.stats().stores, 1, "{name}");
        let before = cache.stats();
        // Hits until one starts a refresh ahead of the expiry.
        no_hang(20, "a refresh ahead", async {
            while cache.stats().refreshes == before.refreshes {
                ahead(cache.clone(), db.clone(), "a".into()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let (stored, refused) =
            refresh_ended(&cache, before.stores, before.value_tags_changed).await;
        assert_eq!(
            (stored, refused),
            (1, 0),
            "{name}: the refresh's value was not stored, though the tag's version is older than it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_refresh_past_its_timeout_stores_its_value() {
    for cache in backends("tags-from-grace-timeout") {
        let name = cache.backend_name();
        let db = Arc::new(Db {
            edition: AtomicU64::new(1),
        });
        graced(cache.clone(), db.clone(), "a".into()).await.unwrap();
        graced(cache.clone(), db.clone(), "a".into()).await.unwrap();
        assert_eq!(cache.stats().stores, 1, "{name}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let before = cache.stats();
        // In grace: the refresh outlives the caller's timeout.
        graced(cache.clone(), db.clone(), "a".into()).await.unwrap();
        let (stored, refused) =
            refresh_ended(&cache, before.stores, before.value_tags_changed).await;
        eprintln!("{name}: {:?}", cache.stats());
        assert_eq!(
            (stored, refused),
            (1, 0),
            "{name}: the refresh's value was not stored"
        );
    }
}
