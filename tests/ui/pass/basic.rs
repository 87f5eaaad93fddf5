// The example of the design: a `Result` whose `Ok` is cached for ten
// minutes, tagged with the category.
use cache_runtime::cached;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
}

#[derive(Debug)]
pub struct DbError;

#[cached(ttl = 600, tags = ["products", "category:{category}"])]
pub async fn list_products(category: String) -> Result<Vec<Product>, DbError> {
    Ok(vec![Product {
        id: 1,
        name: category,
    }])
}

pub async fn use_it() -> Result<(), DbError> {
    let products: Vec<Product> = list_products("books".to_owned()).await?;
    assert!(!products.is_empty());
    Ok(())
}

fn main() {}
