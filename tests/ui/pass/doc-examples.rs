// The examples of the `#[cached]` documentation, with stand-ins for the
// database.
use cache_runtime::{Cache, Error, cached};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
}

#[derive(Debug)]
pub struct DbError;

pub struct Db;

impl Db {
    pub async fn user(&self, id: u64) -> Result<Option<User>, DbError> {
        Ok(Some(User { id }))
    }
}

pub struct PgPool;

impl PgPool {
    pub async fn find_product(&self, id: u64) -> Option<Product> {
        Some(Product { id })
    }
}

mod db {
    pub async fn products_in(_category: &str) -> Result<Vec<super::Product>, super::DbError> {
        Ok(Vec::new())
    }
}

// The first example.
#[cached(ttl = 600, tags = ["products", "category:{category}"])]
async fn list_products(category: String) -> Result<Vec<Product>, DbError> {
    db::products_in(&category).await
}

pub struct Users {
    cache: Cache,
    db: Db,
}

impl Users {
    #[cached(cache = self.cache, ttl = "5m", tags = ["users", "user:{id}"])]
    async fn get(&self, id: u64) -> Result<Option<User>, DbError> {
        self.db.user(id).await
    }
}

#[cached(key = "product:{id}", skip(pool), cache_none = true)]
async fn product(pool: &PgPool, id: u64) -> Option<Product> {
    pool.find_product(id).await
}

pub trait Repository {
    fn count(&self, table: String) -> impl std::future::Future<Output = u64> + Send;
}

pub struct Postgres;

impl Postgres {
    async fn count_rows(&self, table: &str) -> u64 {
        table.len() as u64
    }
}

impl Repository for Postgres {
    #[cached(lock = false, companions = false)]
    async fn count(&self, table: String) -> u64 {
        self.count_rows(&table).await
    }
}

pub async fn use_them(users: &Users, cache: &Cache, pool: &PgPool) -> Result<(), Error> {
    list_products("books".to_owned()).await.ok();
    list_products_invalidate(&"books".to_owned()).await?;
    list_products_invalidate_all().await?;
    users.get(7).await.ok();
    users.get_invalidate(&7).await?;
    cache.invalidate_tag("user:7").await?;
    product(pool, 1).await;
    product_invalidate(&1).await?;
    Postgres.count("products".to_owned()).await;
    Ok(())
}

fn main() {}
