use cache_runtime::cached;
use serde::{Deserialize, Serialize};

/// A struct, not an alias of `Result`, whose name ends in `Result`.
#[derive(Serialize, Deserialize)]
pub struct SearchResult<T> {
    pub hits: Vec<T>,
}

#[cached(ttl = 60)]
async fn search(q: String) -> SearchResult<u64> {
    let _ = q;
    SearchResult { hits: vec![] }
}

fn main() {}
