//! The shop's data access, cached: one `#[cached]` attribute per query.
//!
//! Each method names the cache it uses (`cache = self.cache`) rather than
//! the process-wide default, so that two apps (one on Redis, one in memory)
//! can live in one process, as they do in the end-to-end test. With a
//! single cache, `cache_runtime::set_default(cache)` and a bare
//! `#[cached(...)]` do the same.
//!
//! # Tags: what a product change makes stale
//! | entry                          | tags                                   |
//! |--------------------------------|----------------------------------------|
//! | `product(id)`                  | `product:{id}`                         |
//! | `products_in(category)`        | `products`, `category:{category}`, and `product:{id}` of each product it shows (`tags_from`) |
//! | `all_products()`               | `products`, `listing:all`              |
//! | `dashboard()`                  | `dashboard`                            |
//! | `trending()` (ids and scores)  | `trending`                             |
//!
//! [`Catalog::update_product`] invalidates `product:{id}` (the product,
//! and every category listing that shows it), the unfiltered listing,
//! and, when the category changed, the listing of the category it is in
//! now and the dashboard (its revenue by category follows the products'
//! current category). It leaves the other listings and the trending
//! scores alone: trending
//! caches product ids and scores only, and the API fills in the product
//! details from `product(id)`, which is invalidated precisely. The
//! `products` tag is there for bulk changes (a price import): one
//! `invalidate_tag("products")` drops every listing.

use std::collections::HashMap;

use cache_runtime::{Cache, cached, template_value};

use super::db::{Db, DbError};
use super::queries::{self, Dashboard, Product, ProductUpdate, TrendingScore};

/// The database and the cache, and the queries of the API.
#[derive(Clone, Debug)]
pub struct Catalog {
    db: Db,
    cache: Cache,
    as_of: i64,
}

/// What a successful update did.
#[derive(Debug, Clone)]
pub struct Updated {
    /// The product as it is now.
    pub product: Product,
    /// The tags invalidated.
    pub invalidated: Vec<String>,
    /// Whether invalidating them failed (the cache backend was unreachable):
    /// the database has the change, but cached copies may be served until
    /// their TTL.
    pub invalidation_error: Option<String>,
}

impl Catalog {
    /// A catalog over a seeded database. `as_of` is the seeding snapshot
    /// time that time windows end at.
    pub fn new(db: Db, cache: Cache, as_of: i64) -> Self {
        Catalog { db, cache, as_of }
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The database pool.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The end of the dashboard's and trending's windows.
    pub fn as_of(&self) -> i64 {
        self.as_of
    }

    /// One product, `None` if there is no such product. A missing id
    /// (`Ok(None)`) is not cached, so a product created later shows at once
    /// (`cache_none = true` would cache the 404 too).
    #[cached(ttl = "5m", key = "product:{id}", tags = ["product:{id}"], cache = self.cache)]
    pub async fn product(&self, id: i64) -> Result<Option<Product>, DbError> {
        self.db.call(move |c| queries::product_by_id(c, id)).await
    }

    /// The products of `ids` that exist, each cached as its own entry
    /// (`batch`) and tagged with its own `product:{id}`: one query for the
    /// ids that were not cached, none when all were. An id with no product
    /// is not cached (a product created later shows at once).
    #[cached(ttl = "5m", tags = ["product:{ids}"], batch = ids, cache = self.cache)]
    pub async fn products_by_ids(&self, ids: Vec<i64>) -> Result<HashMap<i64, Product>, DbError> {
        let found = self
            .db
            .call(move |c| queries::products_by_ids(c, &ids))
            .await?;
        Ok(found.into_iter().map(|p| (p.id, p)).collect())
    }

    /// The best sellers of a category, tagged with the products it shows
    /// (`tags_from`): a change to one of them (`product:{id}`) makes it
    /// stale, a change to a product it does not show leaves it alone.
    #[cached(
        ttl = "10m",
        tags = ["products", "category:{category}"],
        tags_from = shown_products,
        cache = self.cache
    )]
    pub async fn products_in(&self, category: String) -> Result<Vec<Product>, DbError> {
        self.db
            .call(move |c| queries::list_products(c, Some(&category)))
            .await
    }

    /// The best sellers of the whole shop.
    #[cached(ttl = "10m", tags = ["products", "listing:all"], cache = self.cache)]
    pub async fn all_products(&self) -> Result<Vec<Product>, DbError> {
        self.db.call(|c| queries::list_products(c, None)).await
    }

    /// The 24-hour dashboard. A minute old at most, or fresh after a
    /// category change.
    #[cached(ttl = 60, tags = ["dashboard"], cache = self.cache)]
    pub async fn dashboard(&self) -> Result<Dashboard, DbError> {
        self.dashboard_uncached().await
    }

    /// The dashboard straight from the database (the benchmarks' baseline).
    pub async fn dashboard_uncached(&self) -> Result<Dashboard, DbError> {
        let as_of = self.as_of;
        self.db.call(move |c| queries::dashboard(c, as_of)).await
    }

    /// Trending product ids and scores, a minute old at most.
    #[cached(ttl = 60, tags = ["trending"], cache = self.cache)]
    pub async fn trending(&self) -> Result<Vec<TrendingScore>, DbError> {
        let as_of = self.as_of;
        self.db.call(move |c| queries::trending(c, as_of)).await
    }

    /// Updates a product and invalidates what showed its old state (see
    /// the module documentation). `Ok(None)`: no such product.
    ///
    /// Around its transaction, in a [`cache_runtime::invalidating`] scope:
    /// the product's own entry is invalidated before the write, so that no
    /// reader is handed it while the write runs; a concurrent miss that
    /// refills it from the old row before the commit is undone by the
    /// scope, which makes every invalidation again after the commit. The
    /// listings' tags, which depend on the row (its category before and
    /// after), are invalidated after the write, and again by the scope.
    pub async fn update_product(
        &self,
        id: i64,
        update: ProductUpdate,
    ) -> Result<Option<Updated>, DbError> {
        cache_runtime::invalidating(self.update_in_scope(id, update)).await
    }

    async fn update_in_scope(
        &self,
        id: i64,
        update: ProductUpdate,
    ) -> Result<Option<Updated>, DbError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let product_tag = format!("product:{}", template_value(&id));
        let early = self.cache.invalidate_tag(&product_tag).await;
        let Some((before, after)) = self
            .db
            .call(move |c| queries::update_product(c, id, &update, now))
            .await?
        else {
            return Ok(None);
        };
        let tags = stale_tags(&before, &after);
        let invalidation_error = match early.and(self.cache.invalidate_tags(&tags).await) {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(%e, ?tags, "product updated but its cached copies could not be invalidated");
                Some(e.to_string())
            }
        };
        Ok(Some(Updated {
            product: after,
            invalidated: tags,
            invalidation_error,
        }))
    }
}

/// The tags of a listing's entry: `product:{id}` for each product it
/// shows (`tags_from` of [`Catalog::products_in`]).
#[allow(clippy::ptr_arg)] // `tags_from` takes a `fn(&T)`, `T` the cached value
fn shown_products(listing: &Vec<Product>) -> Vec<String> {
    listing
        .iter()
        .map(|p| format!("product:{}", template_value(&p.id)))
        .collect()
}

/// The tags whose entries showed `before` and must not show it any more.
/// A category's listing that showed it carries its `product:{id}` (see
/// [`Catalog::products_in`]); the category it moves to, if any, may show
/// it now, and so is invalidated too.
///
/// Arguments are written as the tag templates write them
/// ([`template_value`]: escaped where they could be taken for the
/// template's own text).
pub fn stale_tags(before: &Product, after: &Product) -> Vec<String> {
    let mut tags = vec![
        format!("product:{}", template_value(&after.id)),
        "listing:all".to_owned(),
    ];
    if before.category != after.category {
        tags.push(format!("category:{}", template_value(&after.category)));
        tags.push("dashboard".to_owned());
    }
    tags
}
