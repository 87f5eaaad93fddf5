use cache_runtime::cached;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
}

fn product_tags(products: &Vec<Product>) -> Vec<String> {
    products.iter().map(|p| format!("product:{}", p.id)).collect()
}

#[cached(ttl = 600, tags = ["listings"], tags_from = product_tags)]
async fn listing(page: u32) -> Result<Vec<Product>, String> {
    Ok(vec![Product { id: page.into() }])
}

#[cached(ttl = 600, tags_from = product_tags, ttl_from = short, unless = Vec::is_empty)]
async fn maybe(page: u32) -> Option<Vec<Product>> {
    Some(vec![Product { id: page.into() }])
}

fn short(_: &Vec<Product>) -> Option<std::time::Duration> {
    None
}

fn main() {
    let _ = (listing(1), maybe(1));
}
