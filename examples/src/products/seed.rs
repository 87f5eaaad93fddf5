//! Creates and fills the shop's SQLite database on first start.
//!
//! The data is generated (deterministically, from a fixed seed): products in
//! 20 categories, customers, and 30 days of orders with 1 to 6 items each,
//! denser towards the end of the window, where a few products take off in
//! the last hours (so that "trending" means something). Product choice is
//! skewed (a few products sell a lot, most sell little), and each product's
//! `popularity` is the number of units it sold.
//!
//! The database is built in `<path>.partial` and renamed into place when it
//! is complete, so an interrupted seeding never leaves a half-filled
//! database behind: the next start seeds again. A complete database is
//! reused as it is on later starts.
//!
//! Times are Unix seconds. The data is a snapshot taken at seeding time,
//! recorded as `as_of` in the `meta` table; the API measures its windows
//! ("last 24 hours", "last hour") back from `as_of`, so a database seeded
//! yesterday still has a last hour.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

/// How much data to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedConfig {
    /// Number of products (default 100 000).
    pub products: u64,
    /// Number of orders over the 30 days (default 2 000 000).
    pub orders: u64,
}

impl Default for SeedConfig {
    fn default() -> Self {
        SeedConfig {
            products: 100_000,
            orders: 2_000_000,
        }
    }
}

impl SeedConfig {
    /// The defaults, overridden by `SEED_PRODUCTS` and `SEED_ORDERS`.
    ///
    /// # Errors
    /// When a variable is set but is not a positive integer.
    pub fn from_env() -> Result<Self, String> {
        let mut cfg = SeedConfig::default();
        for (var, field) in [
            ("SEED_PRODUCTS", &mut cfg.products),
            ("SEED_ORDERS", &mut cfg.orders),
        ] {
            if let Ok(v) = std::env::var(var) {
                let v = v.replace('_', "");
                *field = match v.parse::<u64>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("{var} must be a positive integer, got `{v}`")),
                };
            }
        }
        Ok(cfg)
    }

    /// The customers the orders come from: one per 10 orders.
    pub fn customers(&self) -> u64 {
        (self.orders / 10).max(10)
    }

    /// The default file name for this size: different sizes never share a
    /// database.
    pub fn file_name(&self) -> String {
        format!("products-{}p-{}o.sqlite3", self.products, self.orders)
    }
}

/// The default database path: next to the target directory's build output
/// when the program runs from a Cargo target directory (so `cargo clean`
/// removes it), else under the system temp directory.
pub fn default_db_path(cfg: &SeedConfig) -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let parent = exe.parent()?.to_owned();
            // target/<profile>/<bin> or target/<profile>/deps/<test or bench>
            let in_target = exe
                .ancestors()
                .any(|a| a.file_name().is_some_and(|n| n == "target"));
            in_target.then_some(parent)
        })
        .map(|dir| {
            if dir.ends_with("deps") {
                dir.parent().map(Path::to_owned).unwrap_or(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(std::env::temp_dir);
    dir.join("products-api-data").join(cfg.file_name())
}

/// What a seeded database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedInfo {
    /// Products in the database.
    pub products: u64,
    /// Orders in the database.
    pub orders: u64,
    /// Order items in the database.
    pub order_items: u64,
    /// The snapshot time (Unix seconds) the API's windows end at.
    pub as_of: i64,
}

/// Makes sure a complete database is at `path`: reuses it if there is one,
/// else generates one of size `cfg`, calling `progress` with a line of text
/// now and then (it takes tens of seconds at the default size).
///
/// # Errors
/// SQLite or file-system failures, or a file at `path` that is not a
/// database seeded by this program.
pub fn ensure_seeded(
    path: &Path,
    cfg: &SeedConfig,
    mut progress: impl FnMut(&str),
) -> Result<(SeedInfo, bool), Box<dyn std::error::Error + Send + Sync>> {
    if path.exists() {
        let conn = Connection::open(path)?;
        return match read_info(&conn)? {
            Some(info) => Ok((info, false)),
            None => Err(format!(
                "{} exists but was not seeded by this program; remove it or set DB_PATH",
                path.display()
            )
            .into()),
        };
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let _ = std::fs::remove_file(&partial);
    let info = generate(&partial, cfg, &mut progress)?;
    std::fs::rename(&partial, path)?;
    Ok((info, true))
}

/// Reads what a complete database holds; `None` if it is not one.
pub fn read_info(conn: &Connection) -> rusqlite::Result<Option<SeedInfo>> {
    let has_meta: bool = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(None);
    }
    let get = |key: &str| -> rusqlite::Result<Option<i64>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
            r.get::<_, String>(0)
        })
        .optional()
        .map(|v| v.and_then(|v| v.parse().ok()))
    };
    match (
        get("complete")?,
        get("products")?,
        get("orders")?,
        get("order_items")?,
        get("as_of")?,
    ) {
        (Some(1), Some(p), Some(o), Some(i), Some(t)) => Ok(Some(SeedInfo {
            products: p as u64,
            orders: o as u64,
            order_items: i as u64,
            as_of: t,
        })),
        _ => Ok(None),
    }
}

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    price_cents INTEGER NOT NULL,
    description TEXT    NOT NULL,
    popularity  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    total_cents INTEGER NOT NULL
);
CREATE TABLE order_items (
    id               INTEGER PRIMARY KEY,
    order_id         INTEGER NOT NULL REFERENCES orders(id),
    product_id       INTEGER NOT NULL REFERENCES products(id),
    quantity         INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
";

/// Built after the bulk insert, which is faster than maintaining them.
const INDEXES: &[(&str, &str)] = &[
    (
        "products by category",
        "CREATE INDEX products_by_category ON products(category, popularity DESC, id)",
    ),
    (
        "products by popularity",
        "CREATE INDEX products_by_popularity ON products(popularity DESC, id)",
    ),
    (
        "orders by time",
        "CREATE INDEX orders_by_time ON orders(created_at)",
    ),
    (
        "order items by time",
        "CREATE INDEX order_items_by_time ON order_items(created_at)",
    ),
    (
        "order items by order",
        "CREATE INDEX order_items_by_order ON order_items(order_id)",
    ),
];

/// The categories, with the things sold in each and a price range in cents.
pub const CATEGORIES: &[(&str, &[&str], (i64, i64))] = &[
    (
        "books",
        &[
            "Novel",
            "Cookbook",
            "Atlas",
            "Biography",
            "Field Guide",
            "Anthology",
        ],
        (799, 4_999),
    ),
    (
        "electronics",
        &[
            "Headphones",
            "Charger",
            "Speaker",
            "Monitor",
            "Keyboard",
            "Webcam",
        ],
        (1_999, 89_999),
    ),
    (
        "kitchen",
        &[
            "Skillet",
            "Knife Set",
            "Kettle",
            "Blender",
            "Cutting Board",
            "Dutch Oven",
        ],
        (999, 29_999),
    ),
    (
        "garden",
        &["Trowel", "Hose", "Planter", "Pruner", "Seed Kit", "Rake"],
        (599, 14_999),
    ),
    (
        "toys",
        &[
            "Puzzle",
            "Building Set",
            "Plush Bear",
            "Kite",
            "Board Game",
            "Train Set",
        ],
        (699, 12_999),
    ),
    (
        "sports",
        &[
            "Yoga Mat",
            "Dumbbell",
            "Jump Rope",
            "Tennis Racket",
            "Water Bottle",
            "Helmet",
        ],
        (899, 24_999),
    ),
    (
        "beauty",
        &[
            "Serum",
            "Lip Balm",
            "Face Mask",
            "Hair Dryer",
            "Perfume",
            "Brush Set",
        ],
        (499, 15_999),
    ),
    (
        "grocery",
        &[
            "Coffee Beans",
            "Olive Oil",
            "Green Tea",
            "Honey",
            "Pasta",
            "Chocolate",
        ],
        (299, 3_999),
    ),
    (
        "clothing",
        &["T-Shirt", "Hoodie", "Jacket", "Scarf", "Jeans", "Sweater"],
        (1_299, 19_999),
    ),
    (
        "shoes",
        &[
            "Sneakers",
            "Boots",
            "Sandals",
            "Loafers",
            "Slippers",
            "Running Shoes",
        ],
        (2_499, 24_999),
    ),
    (
        "music",
        &[
            "Vinyl Record",
            "Guitar Strings",
            "Ukulele",
            "Metronome",
            "Capo",
            "Songbook",
        ],
        (599, 39_999),
    ),
    (
        "movies",
        &[
            "Blu-ray",
            "Box Set",
            "Documentary",
            "Classic Film",
            "Animated Film",
            "Series",
        ],
        (999, 7_999),
    ),
    (
        "games",
        &[
            "Card Game",
            "Strategy Game",
            "Controller",
            "Dice Set",
            "Chess Set",
            "Game Pass",
        ],
        (999, 6_999),
    ),
    (
        "office",
        &[
            "Notebook",
            "Desk Lamp",
            "Stapler",
            "Fountain Pen",
            "Planner",
            "Desk Chair",
        ],
        (299, 49_999),
    ),
    (
        "pets",
        &[
            "Dog Bed",
            "Cat Tree",
            "Leash",
            "Chew Toy",
            "Food Bowl",
            "Aquarium",
        ],
        (499, 19_999),
    ),
    (
        "automotive",
        &[
            "Dash Cam",
            "Floor Mats",
            "Tire Gauge",
            "Car Vacuum",
            "Phone Mount",
            "Wax Kit",
        ],
        (799, 19_999),
    ),
    (
        "health",
        &[
            "Thermometer",
            "Vitamins",
            "First Aid Kit",
            "Massager",
            "Scale",
            "Heating Pad",
        ],
        (599, 12_999),
    ),
    (
        "baby",
        &[
            "Stroller",
            "Baby Monitor",
            "Bib Set",
            "Rattle",
            "Crib Sheet",
            "Diaper Bag",
        ],
        (599, 59_999),
    ),
    (
        "tools",
        &[
            "Drill",
            "Screwdriver Set",
            "Tape Measure",
            "Level",
            "Hammer",
            "Socket Set",
        ],
        (799, 29_999),
    ),
    (
        "jewelry",
        &[
            "Necklace", "Ring", "Bracelet", "Earrings", "Watch", "Pendant",
        ],
        (1_499, 99_999),
    ),
];

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Compact",
    "Deluxe",
    "Eco",
    "Essential",
    "Everyday",
    "Premium",
    "Pro",
    "Rustic",
    "Smart",
    "Sturdy",
    "Travel",
    "Ultra",
    "Vintage",
    "Wireless",
    "Handmade",
    "Modern",
    "Organic",
    "Lightweight",
    "Heavy-Duty",
];
const MATERIALS: &[&str] = &[
    "Oak", "Steel", "Bamboo", "Cotton", "Ceramic", "Copper", "Linen", "Walnut", "Carbon",
    "Leather", "Glass", "Wool",
];

/// Orders span this many days before `as_of`.
pub const DAYS: i64 = 30;

/// SplitMix64: small, fast, good enough for fake data, and the same data on
/// every machine.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

struct GenProduct {
    category: usize,
    price_cents: i64,
    sold: i64,
}

fn generate(
    path: &Path,
    cfg: &SeedConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<SeedInfo, Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let as_of = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let mut conn = Connection::open(path)?;
    // A throwaway file until it is renamed: no journal, no fsync.
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    // Items are written before their order and products last.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.execute_batch(SCHEMA)?;

    let mut rng = Rng(0x5EED_CAFE_F00D);
    let n = cfg.products;
    let mut products: Vec<GenProduct> = (0..n)
        .map(|i| {
            let category = (i % CATEGORIES.len() as u64) as usize;
            let (lo, hi) = CATEGORIES[category].2;
            // Prices end in 99 cents.
            let price_cents = (lo + rng.below((hi - lo) as u64) as i64) / 100 * 100 + 99;
            GenProduct {
                category,
                price_cents,
                sold: 0,
            }
        })
        .collect();
    // Sales rank -> product: a fixed permutation, so best sellers are
    // spread over ids and categories.
    let stride = coprime_stride(n);
    let by_rank = |rank: u64| (rank.wrapping_mul(stride).wrapping_add(7) % n) as usize;
    // A few products take off in the last hours.
    let hot: Vec<usize> = (0..30.min(n)).map(|_| rng.below(n) as usize).collect();

    progress(&format!(
        "seeding {} products, {} orders from {} customers over {DAYS} days into {}",
        n,
        cfg.orders,
        cfg.customers(),
        path.display()
    ));
    let span = DAYS * 86_400;
    let mut items_total: u64 = 0;
    let step = (cfg.orders / 10).max(1);
    {
        let tx = conn.transaction()?;
        {
            let mut order_stmt =
                tx.prepare("INSERT INTO orders (id, customer_id, created_at, total_cents) VALUES (?1, ?2, ?3, ?4)")?;
            let mut item_stmt = tx.prepare(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for i in 0..cfg.orders {
                // Density grows towards `as_of` (business is growing): the
                // CDF of the order times is x^1.5 over the window.
                let x = (i as f64 + rng.unit()) / cfg.orders as f64;
                let created_at = as_of - span + (span as f64 * x.powf(1.0 / 1.5)) as i64;
                let customer = 1 + rng.below(cfg.customers()) as i64;
                let age = as_of - created_at;
                let lines = 1 + (rng.next_u64() | (1 << 5)).trailing_zeros() as u64; // 1..=6, geometric
                let mut total = 0;
                let order_id = i as i64 + 1;
                for _ in 0..lines {
                    let p = if age < 6 * 3600
                        && !hot.is_empty()
                        && rng.unit() < 0.25 * (1.0 - age as f64 / 21_600.0)
                    {
                        *rng.pick(&hot)
                    } else {
                        // Skewed: P(rank <= r) = (r / n)^(1/3).
                        by_rank(((n as f64) * rng.unit().powi(3)) as u64)
                    };
                    let quantity = 1 + rng.below(10).saturating_sub(6) as i64; // mostly 1
                    let product = &mut products[p];
                    product.sold += quantity;
                    total += quantity * product.price_cents;
                    item_stmt.execute(params![
                        order_id,
                        p as i64 + 1,
                        quantity,
                        product.price_cents,
                        created_at
                    ])?;
                    items_total += 1;
                }
                order_stmt.execute(params![order_id, customer, created_at, total])?;
                if (i + 1) % step == 0 {
                    progress(&format!(
                        "  orders {:>3}% ({} orders, {} items, {:.0?})",
                        (i + 1) * 100 / cfg.orders,
                        i + 1,
                        items_total,
                        started.elapsed()
                    ));
                }
            }
        }
        tx.commit()?;
    }

    {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO products (id, name, category, price_cents, description, popularity, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (i, p) in products.iter_mut().enumerate() {
                let (category, things, _) = CATEGORIES[p.category];
                let thing = rng.pick(things);
                let name = format!(
                    "{} {} {} #{}",
                    rng.pick(ADJECTIVES),
                    rng.pick(MATERIALS),
                    thing,
                    i + 1
                );
                let days = 1 + rng.below(5);
                let description = format!(
                    "{} {} from our {category} range. Ships in {days} day{}.",
                    rng.pick(ADJECTIVES),
                    thing.to_lowercase(),
                    if days == 1 { "" } else { "s" }
                );
                stmt.execute(params![
                    i as i64 + 1,
                    name,
                    category,
                    p.price_cents,
                    description,
                    p.sold,
                    as_of
                ])?;
            }
        }
        tx.commit()?;
    }
    progress(&format!("  {n} products ({:.0?})", started.elapsed()));

    for (what, sql) in INDEXES {
        conn.execute_batch(sql)?;
        progress(&format!("  index: {what} ({:.0?})", started.elapsed()));
    }
    conn.execute_batch("ANALYZE")?;
    {
        let mut stmt = conn.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)")?;
        for (k, v) in [
            ("products", n as i64),
            ("orders", cfg.orders as i64),
            ("order_items", items_total as i64),
            ("as_of", as_of),
            ("complete", 1),
        ] {
            stmt.execute(params![k, v.to_string()])?;
        }
    }
    // WAL from now on: readers never block each other or the writer.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    drop(conn);
    progress(&format!("seeded in {:.1?}", started.elapsed()));
    Ok(SeedInfo {
        products: n,
        orders: cfg.orders,
        order_items: items_total,
        as_of,
    })
}

/// A stride coprime with `n`, near the golden ratio of `n`, so that
/// `rank * stride mod n` is a permutation that scatters neighbours.
fn coprime_stride(n: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let mut s = ((n as f64) * 0.618_033_988_7) as u64 | 1;
    while gcd(s, n) != 1 {
        s += 1;
    }
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stride_is_a_permutation() {
        for n in [1u64, 2, 3, 10, 97, 100, 1000] {
            let s = coprime_stride(n);
            let mut seen: Vec<u64> = (0..n).map(|r| (r * s + 7) % n).collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len() as u64, n);
        }
    }

    #[test]
    fn seeds_once_and_reuses() {
        let dir = std::env::temp_dir().join(format!("seed-test-{}", std::process::id()));
        let path = dir.join("db.sqlite3");
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = SeedConfig {
            products: 50,
            orders: 400,
        };
        let (info, fresh) = ensure_seeded(&path, &cfg, |_| {}).unwrap();
        assert!(fresh);
        assert_eq!((info.products, info.orders), (50, 400));
        assert!(info.order_items >= 400);
        let (again, fresh) = ensure_seeded(&path, &cfg, |_| {}).unwrap();
        assert!(!fresh);
        assert_eq!(again, info);
        let conn = Connection::open(&path).unwrap();
        let sold: i64 = conn
            .query_row("SELECT sum(popularity) FROM products", [], |r| r.get(0))
            .unwrap();
        let units: i64 = conn
            .query_row("SELECT sum(quantity) FROM order_items", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sold, units);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
