// The signature is kept as written: attributes, docs, visibility, `mut`
// and raw identifiers; the body keeps its early returns.
#![deny(missing_docs)]
//! Crate docs.

use cache_runtime::cached;

/// Documented.
#[cached(key = "{r#type}:{count}")]
#[inline]
#[must_use = "it is cached for a reason"]
pub(crate) async fn documented(r#type: String, mut count: u32) -> Vec<String> {
    count += 1;
    if count > 10 {
        return Vec::new();
    }
    vec![r#type; count as usize]
}

/// The digest takes raw identifiers too.
#[cached]
#[allow(clippy::ptr_arg)]
pub async fn raw(r#type: &String) -> usize {
    r#type.len()
}

#[cfg(not(miri))]
#[cached]
async fn no_arguments() -> u8 {
    1
}

/// Uses them.
pub async fn use_them() {
    let _ = documented("a".to_owned(), 1).await;
    documented_invalidate(&"a".to_owned(), &1).await.ok();
    raw(&String::new()).await;
    raw_invalidate(&&String::new()).await.ok();
    no_arguments().await;
}

fn main() {}
