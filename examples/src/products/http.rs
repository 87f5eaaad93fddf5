//! The axum router: thin handlers over [`Catalog`].
//!
//! # `X-Cache`
//! Every cached `GET` answers `X-Cache: HIT` or `X-Cache: MISS`. A
//! product's page (`/api/products/{id}`) goes through the HTTP layer
//! ([`CacheLayer`]), which sets the header (and `Age`) itself. For the
//! other routes, whose answers combine several cached calls, the label
//! is derived per request, not from the shared counters (comparing
//! `cache.stats()` before and after is wrong as soon as two requests
//! overlap): the request runs inside [`track_queries`], which counts the
//! database calls made by this request's task only. A `#[cached]` body runs
//! only on a miss, and only the bodies query the database, so:
//!
//! - `MISS`: this request queried the database (the entry was absent,
//!   expired or invalidated, and this request computed it);
//! - `HIT`: it did not: its answer came from the cache, or from the
//!   computation of a concurrent request for the same key (single flight).
//!   `/api/cache/stats` counts such a follower as a miss that was
//!   `coalesced`; the header tells whether this request cost a query.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cache_runtime::http::CacheLayer;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::catalog::Catalog;
use super::db::{DbError, track_queries};
use super::queries::{Product, ProductUpdate};

/// The router of the API, with `catalog` as its state.
pub fn router(catalog: Catalog) -> Router {
    prometheus();
    let cached = Router::new()
        .route("/api/products", get(list_products))
        .route("/api/stats/dashboard", get(dashboard))
        .route("/api/trending", get(trending))
        .route_layer(middleware::from_fn(x_cache));
    // A product's page is cached whole by the HTTP layer, which sets
    // `X-Cache` and `Age` itself, tagged like the product's entry so that
    // an update drops both.
    let pages = Router::new()
        .route("/api/products/{id}", get(get_product))
        .route_layer(
            CacheLayer::new(catalog.cache().clone(), "product_page")
                .ttl(Duration::from_secs(600))
                .tags(|req| {
                    let id = req.uri.path().rsplit('/').next().unwrap_or_default();
                    vec![format!("product:{}", cache_runtime::template_value(&id))]
                }),
        );
    Router::new()
        .merge(cached)
        .merge(pages)
        .route("/api/products/{id}", axum::routing::put(update_product))
        .route("/api/cache/stats", get(cache_stats))
        .route("/metrics", get(metrics))
        .with_state(catalog)
}

/// The process's Prometheus recorder, installed on first use (before the
/// first cached call: the router is made before any request).
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(%e, "another metrics recorder is installed; /metrics shows nothing");
        }
        handle
    })
}

/// The metrics in Prometheus text format: `cache_requests_total` by
/// function and outcome (the hit ratio per function), durations, errors.
async fn metrics() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        prometheus().render(),
    )
}

/// Sets `X-Cache` from the number of database calls this request made.
async fn x_cache(req: Request, next: Next) -> Response {
    let (mut response, queries) = track_queries(next.run(req)).await;
    let label = if queries == 0 { "HIT" } else { "MISS" };
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static(label));
    response
}

/// An error answer: a status and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        tracing::error!(%e, "query failed");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    category: Option<String>,
    /// `ids=1,2,3`: these products (those that exist), in this order.
    ids: Option<String>,
}

#[derive(Debug, Serialize)]
struct Listing {
    category: Option<String>,
    count: usize,
    products: Vec<Product>,
}

async fn list_products(
    State(catalog): State<Catalog>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Listing>, ApiError> {
    if let Some(ids) = q.ids {
        let ids = ids
            .split(',')
            .map(|id| id.trim().parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("ids: {e}")))?;
        let found = catalog.products_by_ids(ids.clone()).await?;
        let mut seen = std::collections::HashSet::new();
        let products: Vec<Product> = ids
            .iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| found.get(id).cloned())
            .collect();
        return Ok(Json(Listing {
            category: None,
            count: products.len(),
            products,
        }));
    }
    let category = q.category.filter(|c| !c.is_empty());
    let products = match &category {
        Some(c) => catalog.products_in(c.clone()).await?,
        None => catalog.all_products().await?,
    };
    Ok(Json(Listing {
        category,
        count: products.len(),
        products,
    }))
}

async fn get_product(
    State(catalog): State<Catalog>,
    Path(id): Path<i64>,
) -> Result<Json<Product>, ApiError> {
    match catalog.product(id).await? {
        Some(p) => Ok(Json(p)),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no product {id}"))),
    }
}

async fn dashboard(State(catalog): State<Catalog>) -> Result<Response, ApiError> {
    Ok(Json(catalog.dashboard().await?).into_response())
}

#[derive(Debug, Serialize)]
struct TrendingItem {
    product: Product,
    units_last_hour: i64,
    baseline_per_hour: f64,
    score: f64,
}

/// Trending ids and scores from one cached entry, product details from the
/// per-product entries (so a product edit shows here at once without
/// recomputing the trend).
async fn trending(State(catalog): State<Catalog>) -> Result<Json<serde_json::Value>, ApiError> {
    let scores = catalog.trending().await?;
    let products =
        futures_util::future::try_join_all(scores.iter().map(|s| catalog.product(s.product_id)))
            .await?;
    let items: Vec<TrendingItem> = scores
        .into_iter()
        .zip(products)
        .filter_map(|(s, p)| {
            Some(TrendingItem {
                product: p?,
                units_last_hour: s.units_last_hour,
                baseline_per_hour: s.baseline_per_hour,
                score: s.score,
            })
        })
        .collect();
    Ok(Json(json!({ "as_of": catalog.as_of(), "trending": items })))
}

async fn update_product(
    State(catalog): State<Catalog>,
    Path(id): Path<i64>,
    body: Result<Json<ProductUpdate>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(update) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    validate(&update)?;
    let Some(updated) = catalog.update_product(id, update).await? else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no product {id}")));
    };
    let failed = updated.invalidation_error.is_some();
    let mut response = Json(json!({
        "product": updated.product,
        "invalidated": updated.invalidated,
        "invalidation_error": updated.invalidation_error,
    }))
    .into_response();
    if failed {
        // The change is in the database; cached copies may be served until
        // their TTL. Say so rather than fail a write that happened.
        response
            .headers_mut()
            .insert("x-cache-invalidation", HeaderValue::from_static("failed"));
    }
    Ok(response)
}

fn validate(u: &ProductUpdate) -> Result<(), ApiError> {
    let bad = |msg: &str| Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, msg.to_owned()));
    if u.name.is_none()
        && u.category.is_none()
        && u.price_cents.is_none()
        && u.description.is_none()
    {
        return bad("nothing to update: send name, category, price_cents or description");
    }
    if u.name.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return bad("name must not be empty");
    }
    if u.category.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return bad("category must not be empty");
    }
    if u.price_cents.is_some_and(|p| p < 0) {
        return bad("price_cents must not be negative");
    }
    Ok(())
}

async fn cache_stats(State(catalog): State<Catalog>) -> Json<serde_json::Value> {
    let cache = catalog.cache();
    let s = cache.stats();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Json(json!({
        "backend": cache.backend_name(),
        "namespace": cache.namespace(),
        "hits": s.hits,
        "local_hits": s.local_hits,
        "local_tier": cache.local_ready(),
        "misses": s.misses,
        "hit_ratio": s.hit_ratio(),
        "errors": s.errors,
        "timeouts": s.timeouts,
        "stale": s.stale,
        "decode_errors": s.decode_errors,
        "computations": s.computations,
        "stores": s.stores,
        "coalesced": s.coalesced,
        "lease_waits": s.lease_waits,
        "invalidations": s.invalidations,
        "grace_hits": s.grace_hits,
        "refreshes": s.refreshes,
        "functions": cache
            .function_stats()
            .into_iter()
            .map(|(function, s)| {
                (
                    function,
                    json!({
                        "hits": s.hits,
                        "local_hits": s.local_hits,
                        "misses": s.misses,
                        "hit_ratio": s.hit_ratio(),
                    }),
                )
            })
            .collect::<serde_json::Map<_, _>>(),
        "at": now,
    }))
}
