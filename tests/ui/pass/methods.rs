// Methods: `self` is never part of the key, but the type is (two types of
// one module may have methods of one name); `cache = self.cache`.
use cache_runtime::{Cache, cached};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct User {
    pub id: u64,
}

pub struct Users {
    cache: Cache,
}

impl Users {
    #[cached(cache = self.cache, ttl = "5m", tags = ["users", "user:{id}"])]
    pub async fn get(&self, id: u64) -> Option<User> {
        Some(User { id })
    }

    #[cached(cache = self.cache)]
    pub async fn count(&self) -> u64 {
        0
    }

    /// Associated functions without a receiver work too.
    #[cached]
    pub async fn version() -> String {
        "1".to_owned()
    }
}

pub struct Products {
    cache: std::sync::Arc<Cache>,
}

impl Products {
    // Same name as `Users::get`, distinct keys.
    #[cached(cache = self.cache)]
    pub async fn get(self: std::sync::Arc<Self>, id: u64) -> Option<String> {
        Some(id.to_string())
    }
}

pub async fn use_them(users: &Users, products: std::sync::Arc<Products>) {
    users.get(1).await;
    users.get_invalidate(&1).await.ok();
    users.get_invalidate_all().await.ok();
    users.count().await;
    users.count_invalidate().await.ok();
    Users::version().await;
    Users::version_invalidate().await.ok();
    products.get_invalidate(&1).await.ok();
    products.get(1).await;
}

fn main() {}
