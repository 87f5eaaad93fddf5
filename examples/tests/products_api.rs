//! End to end: the products API in process on a free port, over a tiny
//! seeded database, on the memory backend and on a private Redis.
//!
//! Each cached endpoint answers MISS then HIT with the same body; a `PUT`
//! shows at once in the product and in the listings that hold it, and only
//! those are recomputed; concurrent requests on a cold key cost one query
//! and are labelled accordingly. Counts only, no timings.

use std::path::PathBuf;
use std::time::Duration;

use cache_examples::products::{self, SeedConfig, seed};
use cache_runtime::Cache;
use reqwest::StatusCode;
use serde_json::{Value, json};

use cache_tests::RedisServer;

/// A freshly seeded tiny database, its own per test.
fn tiny_db(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("products.sqlite3");
    let cfg = SeedConfig {
        products: 300,
        orders: 5_000,
    };
    let (info, fresh) = seed::ensure_seeded(&path, &cfg, |_| {}).expect("seeding failed");
    assert!(fresh);
    assert_eq!((info.products, info.orders), (300, 5_000));
    path
}

/// Serves the app on 127.0.0.1:0; returns the base URL.
async fn serve(cache: Cache, db: &std::path::Path) -> String {
    let app = products::app(cache, db).expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

struct Client {
    http: reqwest::Client,
    base: String,
}

struct Answer {
    status: StatusCode,
    x_cache: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Client {
    async fn get(&self, path: &str) -> Answer {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        Self::answer(r).await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        let r = self
            .http
            .put(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        Self::answer(r).await
    }

    async fn answer(r: reqwest::Response) -> Answer {
        let status = r.status();
        let x_cache = r
            .headers()
            .get("x-cache")
            .map(|v| v.to_str().unwrap().to_owned());
        Answer {
            status,
            x_cache,
            body: r.text().await.unwrap(),
        }
    }

    /// GETs `path` twice: MISS then HIT, the same body. Returns the body.
    async fn miss_then_hit(&self, path: &str) -> Value {
        let first = self.get(path).await;
        assert_eq!(first.status, StatusCode::OK, "{path}: {}", first.body);
        assert_eq!(first.x_cache.as_deref(), Some("MISS"), "first GET {path}");
        let second = self.get(path).await;
        assert_eq!(second.status, StatusCode::OK, "{path}: {}", second.body);
        assert_eq!(second.x_cache.as_deref(), Some("HIT"), "second GET {path}");
        assert_eq!(
            first.body, second.body,
            "{path}: a hit returns what the miss returned"
        );
        first.json()
    }

    /// A category listing that shows a product whose tag no call has used
    /// yet: its first fill returns the listing but does not store it
    /// (`tags_from`: a tag first seen after the body started may have been
    /// invalidated while it ran), the next fill is stored. MISS, MISS,
    /// then HIT, the same body. Returns the body.
    async fn new_listing(&self, path: &str) -> Value {
        let first = self.get(path).await;
        assert_eq!(first.x_cache.as_deref(), Some("MISS"), "first GET {path}");
        let listing = self.miss_then_hit(path).await;
        assert_eq!(first.json(), listing, "{path}");
        listing
    }

    async fn label(&self, path: &str) -> String {
        let a = self.get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        a.x_cache.unwrap_or_else(|| panic!("{path}: no X-Cache"))
    }
}

fn listed(listing: &Value, id: i64) -> Option<&Value> {
    listing["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
}

/// Runs the scenario; returns the id of the product it updated.
async fn scenario(cache: Cache, db: PathBuf) -> i64 {
    let backend = cache.backend_name();
    let c = Client {
        http: reqwest::Client::new(),
        base: serve(cache.clone(), &db).await,
    };

    // Every cached endpoint: MISS, then HIT with the same body.
    let all = c.miss_then_hit("/api/products").await;
    assert_eq!(all["count"], 50);
    let top = all["products"][0].clone();
    let (id, category) = (
        top["id"].as_i64().unwrap(),
        top["category"].as_str().unwrap().to_owned(),
    );
    let listing_path = format!("/api/products?category={category}");
    let in_category = c.new_listing(&listing_path).await;
    assert_eq!(
        listed(&in_category, id),
        Some(&top),
        "the shop's best seller leads its category too"
    );
    let other_category = if category == "books" { "toys" } else { "books" };
    let other_path = format!("/api/products?category={other_category}");
    c.new_listing(&other_path).await;
    let product_path = format!("/api/products/{id}");
    assert_eq!(c.miss_then_hit(&product_path).await, top);
    let dashboard = c.miss_then_hit("/api/stats/dashboard").await;
    assert!(
        dashboard["last_24h"]["orders"].as_i64().unwrap() > 0,
        "{dashboard}"
    );
    c.miss_then_hit("/api/trending").await;

    // Not found: `Ok(None)` is not cached (no `cache_none`), so a missing id
    // queries every time and a product created later shows at once.
    for _ in 0..2 {
        let a = c.get("/api/products/999999").await;
        assert_eq!(
            (a.status, a.x_cache.as_deref()),
            (StatusCode::NOT_FOUND, Some("MISS"))
        );
    }

    // The batch endpoint (`?ids=`): one entry per product, one query for
    // the ids not cached. In the order asked, once each; an id with no
    // product is left out, and not cached.
    let second = all["products"][1].clone();
    let second_id = second["id"].as_i64().unwrap();
    let batch_path = format!("/api/products?ids={second_id},{id},{second_id}");
    let batch = c.miss_then_hit(&batch_path).await;
    assert_eq!(batch["products"], json!([second, top]));
    assert_eq!(c.label(&format!("/api/products?ids={id}")).await, "HIT");
    for _ in 0..2 {
        let a = c.get(&format!("/api/products?ids={id},999999")).await;
        assert_eq!(a.x_cache.as_deref(), Some("MISS"), "999999 is looked up");
        assert_eq!(a.json()["products"], json!([top]));
    }

    // Update price and name: the product and both listings show it at once.
    let new_price = top["price_cents"].as_i64().unwrap() + 1_000;
    let invalidations = cache.stats().invalidations;
    let put = c
        .put(
            &product_path,
            json!({ "price_cents": new_price, "name": "Renamed Best Seller" }),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let put = put.json();
    assert_eq!(put["invalidation_error"], Value::Null);
    assert_eq!(put["product"]["price_cents"], new_price);
    // Around its transaction: the product's tag before the write, the
    // stale tags after it, and all of them again once it committed (the
    // `invalidating` scope).
    let tags = put["invalidated"].as_array().unwrap().len() as u64;
    assert_eq!(
        cache.stats().invalidations - invalidations,
        2 * (1 + tags),
        "{put}"
    );
    let fresh = c.miss_then_hit(&product_path).await;
    assert_eq!(
        (fresh["price_cents"].as_i64(), fresh["name"].as_str()),
        (Some(new_price), Some("Renamed Best Seller"))
    );
    for path in [listing_path.as_str(), "/api/products"] {
        let listing = c.miss_then_hit(path).await;
        let p = listed(&listing, id).unwrap_or_else(|| panic!("{path} lost product {id}"));
        assert_eq!(p, &fresh, "{path} shows the update");
    }
    // ... and nothing else was recomputed.
    assert_eq!(c.label(&other_path).await, "HIT");
    assert_eq!(c.label("/api/stats/dashboard").await, "HIT");

    // The batch endpoint shows the update too: its entry of the product
    // was invalidated by the product's tag, the other one still serves.
    let batch = c.miss_then_hit(&batch_path).await;
    assert_eq!(listed(&batch, id).unwrap(), &fresh);
    assert_eq!(listed(&batch, second_id).unwrap(), &second);
    assert_eq!(
        c.label(&format!("/api/products?ids={second_id}")).await,
        "HIT"
    );

    // Move it to another category: it leaves the old listing, joins the new
    // one, and the dashboard's revenue by category is recomputed.
    let put = c.put(&product_path, json!({ "category": "e2e-new" })).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(c.miss_then_hit(&product_path).await["category"], "e2e-new");
    let moved = c.miss_then_hit("/api/products?category=e2e-new").await;
    assert_eq!(listed(&moved, id).unwrap()["category"], "e2e-new");
    // The old listing was invalidated by the product's tag (it showed it).
    let old = c.miss_then_hit(&listing_path).await;
    assert!(
        listed(&old, id).is_none(),
        "product {id} still listed in {category}"
    );
    c.miss_then_hit("/api/stats/dashboard").await;
    assert_eq!(c.label(&other_path).await, "HIT");

    // Bad updates are refused and change nothing.
    assert_eq!(
        c.put(&product_path, json!({ "price_cents": -1 }))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        c.put(&product_path, json!({ "colour": "red" }))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        c.put("/api/products/999999", json!({ "name": "x" }))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(c.label(&product_path).await, "HIT");

    // 16 concurrent requests on a cold key: one query, one MISS.
    cache.invalidate_tag("dashboard").await.unwrap();
    let before = cache.stats();
    let labels =
        futures_util::future::join_all((0..16).map(|_| c.label("/api/stats/dashboard"))).await;
    let after = cache.stats();
    let misses = labels.iter().filter(|l| *l == "MISS").count();
    assert_eq!((misses, labels.len() - misses), (1, 15), "{labels:?}");
    assert_eq!(after.computations - before.computations, 1);

    // The stats endpoint.
    let stats = c.get("/api/cache/stats").await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.x_cache, None, "stats are not cached");
    let stats = stats.json();
    assert_eq!(stats["backend"], backend);
    assert_eq!(stats["errors"], 0, "{stats}");
    let (hits, misses) = (
        stats["hits"].as_u64().unwrap(),
        stats["misses"].as_u64().unwrap(),
    );
    assert!(hits > 0 && misses > 0, "{stats}");
    let ratio = stats["hit_ratio"].as_f64().unwrap();
    assert!(
        (ratio - hits as f64 / (hits + misses) as f64).abs() < 1e-9,
        "{stats}"
    );
    // Per function.
    let functions = stats["functions"].as_object().unwrap();
    assert!(
        functions.keys().any(|f| f.ends_with("::dashboard")),
        "{stats}"
    );
    let function_hits: u64 = functions
        .values()
        .map(|f| f["hits"].as_u64().unwrap())
        .sum();
    assert_eq!(function_hits, hits, "{stats}");

    // The metrics, in Prometheus text format: hits and misses by function.
    let metrics = c.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let counter = |outcome: &str| -> f64 {
        metrics
            .body
            .lines()
            .filter(|l| {
                l.starts_with("cache_requests_total{")
                    && l.contains(&format!("outcome=\"{outcome}\""))
                    && l.contains("::dashboard\"")
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    assert!(counter("hit") >= 1.0, "{}", metrics.body);
    assert!(counter("miss") >= 1.0, "{}", metrics.body);
    assert!(
        metrics.body.contains("cache_body_duration_seconds"),
        "{}",
        metrics.body
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_api_on_memory() {
    let cache = Cache::builder().memory().namespace("shop").build().unwrap();
    scenario(cache, tiny_db("memory")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_api_on_redis() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace("shop")
        // Generous: a loaded CI machine must not turn into cache errors.
        .op_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let id = scenario(cache, tiny_db("redis")).await;

    // The product's entry is in Redis under `{namespace}:{key template}`,
    // readable JSON (the layout of the cache's own keys is not checked here).
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let raw: String = redis::cmd("GET")
        .arg(format!("shop:product:{id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    // A header line (format, codec, versions), then the value's JSON.
    let (header, json) = raw.split_once('\n').unwrap();
    assert!(header.starts_with("cr1 json "), "{raw}");
    let value: Value = serde_json::from_str(json).unwrap();
    // `Result<Option<Product>, _>`: `Ok(Some(product))` is stored as `[product]`.
    assert_eq!(value[0]["id"], id, "{raw}");
    assert_eq!(value[0]["category"], "e2e-new", "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_api_on_redis_with_a_local_tier() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace("shop")
        .op_timeout(Duration::from_secs(2))
        .local_cache(8 << 20)
        .build()
        .unwrap();
    // The backplane up before the scenario, so that its hits are local: a
    // `PUT` must still show at once everywhere.
    #[cache_runtime::cached(cache = cache, skip(cache))]
    async fn ping(cache: &Cache) -> u8 {
        0
    }
    while !cache.local_ready() {
        ping(&cache).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let hits = cache.stats().local_hits;
    scenario(cache.clone(), tiny_db("redis-local")).await;
    assert!(cache.stats().local_hits > hits, "{:?}", cache.stats());
}
