// `key = "..."`: a readable key; arguments not named in it are not part of
// it (and need not be `Serialize`); `{{` and `}}` are literal braces.
use cache_runtime::cached;
use std::fmt;

pub struct Db;

#[derive(Clone, Copy)]
pub struct ProductId(u64);

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cached(key = "product:{id}")]
pub async fn product(db: &Db, id: ProductId) -> Option<String> {
    let _ = db;
    Some(id.to_string())
}

#[cached(key = "{{literal}}:{a}:{b}:{a}")]
pub async fn braces(a: u8, b: &str) -> String {
    format!("{a}{b}")
}

#[cached(key = "everything")]
pub async fn constant() -> Vec<u8> {
    vec![1, 2, 3]
}

// A skipped argument may still be interpolated.
#[cached(key = "user:{id}", skip(id))]
pub async fn skipped_and_interpolated(id: u32) -> u32 {
    id
}

pub async fn use_them(db: &Db) {
    product(db, ProductId(1)).await;
    product_invalidate(&ProductId(1)).await.ok();
    braces(1, "x").await;
    braces_invalidate(&1, &"x").await.ok();
    constant().await;
    constant_invalidate().await.ok();
    skipped_and_interpolated(1).await;
}

fn main() {}
