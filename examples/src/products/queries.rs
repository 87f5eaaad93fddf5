//! The SQL behind each endpoint: plain blocking functions on a connection,
//! uncached. [`Catalog`](super::Catalog) runs them on the pool and caches
//! them; the benchmarks call them directly for the uncached baseline.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// Listings show the best sellers first, this many.
pub const LISTING_LIMIT: i64 = 50;
/// How many products `/api/trending` returns.
pub const TRENDING_LIMIT: i64 = 10;

/// A product as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Primary key.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// One of the seeded categories (or whatever a `PUT` set).
    pub category: String,
    /// Current price.
    pub price_cents: i64,
    /// Free text.
    pub description: String,
    /// Units sold (what listings sort by).
    pub popularity: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

const PRODUCT_COLUMNS: &str =
    "id, name, category, price_cents, description, popularity, updated_at";

fn product(row: &Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        id: row.get(0)?,
        name: row.get(1)?,
        category: row.get(2)?,
        price_cents: row.get(3)?,
        description: row.get(4)?,
        popularity: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

/// One product.
pub fn product_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<Product>> {
    conn.prepare_cached(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?1"
    ))?
    .query_row([id], product)
    .optional()
}

/// The products of `ids` that exist, in one query.
pub fn products_by_ids(conn: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<Product>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(",");
    conn.prepare(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM products WHERE id IN ({marks})"
    ))?
    .query_map(rusqlite::params_from_iter(ids), product)?
    .collect()
}

/// The best sellers of one category, or of the whole shop (`None`).
pub fn list_products(conn: &Connection, category: Option<&str>) -> rusqlite::Result<Vec<Product>> {
    match category {
        Some(c) => conn
            .prepare_cached(&format!(
                "SELECT {PRODUCT_COLUMNS} FROM products WHERE category = ?1 ORDER BY popularity DESC, id LIMIT ?2"
            ))?
            .query_map(params![c, LISTING_LIMIT], product)?
            .collect(),
        None => conn
            .prepare_cached(&format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY popularity DESC, id LIMIT ?1"))?
            .query_map([LISTING_LIMIT], product)?
            .collect(),
    }
}

/// What a `PUT /api/products/{id}` may change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductUpdate {
    /// New name.
    pub name: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// New price.
    pub price_cents: Option<i64>,
    /// New description.
    pub description: Option<String>,
}

/// Applies `update` in one transaction; returns the product before and
/// after, or `None` if there is no such product.
pub fn update_product(
    conn: &mut Connection,
    id: i64,
    update: &ProductUpdate,
    now: i64,
) -> rusqlite::Result<Option<(Product, Product)>> {
    let tx = conn.transaction()?;
    let before = match product_by_id(&tx, id)? {
        Some(p) => p,
        None => return Ok(None),
    };
    let after = tx
        .prepare_cached(&format!(
            "UPDATE products SET
                 name = coalesce(?2, name),
                 category = coalesce(?3, category),
                 price_cents = coalesce(?4, price_cents),
                 description = coalesce(?5, description),
                 updated_at = ?6
             WHERE id = ?1
             RETURNING {PRODUCT_COLUMNS}"
        ))?
        .query_row(
            params![
                id,
                update.name,
                update.category,
                update.price_cents,
                update.description,
                now
            ],
            product,
        )?;
    tx.commit()?;
    Ok(Some((before, after)))
}

/// Totals of one time window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Orders placed.
    pub orders: i64,
    /// Sum of order totals.
    pub revenue_cents: i64,
    /// Distinct customers who ordered.
    pub unique_customers: i64,
    /// Revenue per order (0 without orders).
    pub average_order_cents: i64,
}

/// Revenue of one category in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryRevenue {
    /// The category (products' current category).
    pub category: String,
    /// Sum of line totals.
    pub revenue_cents: i64,
    /// Units sold.
    pub units: i64,
}

/// Orders and revenue of one hour of the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourBucket {
    /// Start of the hour, Unix seconds.
    pub hour_start: i64,
    /// Orders placed in that hour.
    pub orders: i64,
    /// Revenue of that hour.
    pub revenue_cents: i64,
}

/// The 24-hour dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dashboard {
    /// Window start (exclusive), Unix seconds.
    pub from: i64,
    /// Window end (inclusive), Unix seconds.
    pub to: i64,
    /// The last 24 hours.
    pub last_24h: Totals,
    /// The 24 hours before, for comparison.
    pub previous_24h: Totals,
    /// Revenue by category over the last 24 hours, largest first.
    pub revenue_by_category: Vec<CategoryRevenue>,
    /// The last 24 hours, hour by hour.
    pub hourly: Vec<HourBucket>,
}

fn totals(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<Totals> {
    conn.prepare_cached(
        "SELECT count(*), coalesce(sum(total_cents), 0), count(DISTINCT customer_id)
         FROM orders WHERE created_at > ?1 AND created_at <= ?2",
    )?
    .query_row(params![from, to], |r| {
        let orders: i64 = r.get(0)?;
        let revenue_cents: i64 = r.get(1)?;
        Ok(Totals {
            orders,
            revenue_cents,
            unique_customers: r.get(2)?,
            average_order_cents: if orders == 0 {
                0
            } else {
                revenue_cents / orders
            },
        })
    })
}

/// The dashboard's aggregates over the 24 hours before `as_of`: the
/// expensive query of the article (a full day of orders and their items).
pub fn dashboard(conn: &Connection, as_of: i64) -> rusqlite::Result<Dashboard> {
    const DAY: i64 = 86_400;
    let (from, to) = (as_of - DAY, as_of);
    let last_24h = totals(conn, from, to)?;
    let previous_24h = totals(conn, from - DAY, from)?;
    let revenue_by_category = conn
        .prepare_cached(
            "SELECT p.category, sum(oi.quantity * oi.unit_price_cents) AS revenue, sum(oi.quantity)
             FROM order_items oi JOIN products p ON p.id = oi.product_id
             WHERE oi.created_at > ?1 AND oi.created_at <= ?2
             GROUP BY p.category
             ORDER BY revenue DESC, p.category",
        )?
        .query_map(params![from, to], |r| {
            Ok(CategoryRevenue {
                category: r.get(0)?,
                revenue_cents: r.get(1)?,
                units: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let hourly = conn
        .prepare_cached(
            "SELECT (created_at - ?1 - 1) / 3600 AS h, count(*), sum(total_cents)
             FROM orders WHERE created_at > ?1 AND created_at <= ?2
             GROUP BY h ORDER BY h",
        )?
        .query_map(params![from, to], |r| {
            Ok(HourBucket {
                hour_start: from + r.get::<_, i64>(0)? * 3600,
                orders: r.get(1)?,
                revenue_cents: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Dashboard {
        from,
        to,
        last_24h,
        previous_24h,
        revenue_by_category,
        hourly,
    })
}

/// A product selling faster in the last hour than over the day before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendingScore {
    /// The product.
    pub product_id: i64,
    /// Units sold in the last hour.
    pub units_last_hour: i64,
    /// Units sold per hour, on average, over the 48 hours before that.
    pub baseline_per_hour: f64,
    /// `units_last_hour / (baseline_per_hour + 1)`.
    pub score: f64,
}

/// How many hours before the last one make a product's usual rate.
pub const TRENDING_BASELINE_HOURS: i64 = 48;

/// The products whose last hour of sales most exceeds their usual rate:
/// a group-by over the last hour of order items, joined with a group-by of
/// the 48 hours before it.
pub fn trending(conn: &Connection, as_of: i64) -> rusqlite::Result<Vec<TrendingScore>> {
    conn.prepare_cached(
        "WITH recent AS (
             SELECT product_id, sum(quantity) AS units
             FROM order_items WHERE created_at > ?1 - 3600 AND created_at <= ?1
             GROUP BY product_id
         ), baseline AS (
             SELECT product_id, sum(quantity) AS units
             FROM order_items WHERE created_at > ?1 - (?3 + 1) * 3600 AND created_at <= ?1 - 3600
             GROUP BY product_id
         )
         SELECT r.product_id, r.units, coalesce(b.units, 0) * 1.0 / ?3 AS base,
                r.units / (coalesce(b.units, 0) * 1.0 / ?3 + 1.0) AS score
         FROM recent r LEFT JOIN baseline b ON b.product_id = r.product_id
         WHERE r.units >= 3
         ORDER BY score DESC, r.product_id
         LIMIT ?2",
    )?
    .query_map(
        params![as_of, TRENDING_LIMIT, TRENDING_BASELINE_HOURS],
        |r| {
            Ok(TrendingScore {
                product_id: r.get(0)?,
                units_last_hour: r.get(1)?,
                baseline_per_hour: r.get(2)?,
                score: r.get(3)?,
            })
        },
    )?
    .collect()
}
