//! `batch` over any owned collection, a map in a `Result` or not, a key
//! template naming the item, other arguments in the key.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use cache_runtime::cached;

#[cached(ttl = 600, tags = ["product:{ids}"], batch = ids)]
async fn products(ids: Vec<u64>) -> Result<HashMap<u64, String>, std::io::Error> {
    Ok(ids.into_iter().map(|id| (id, id.to_string())).collect())
}

#[cached(key = "user:{tenant}:{names}", batch = names, cache_none = true)]
async fn users(tenant: u32, names: BTreeSet<String>) -> BTreeMap<String, u32> {
    names.into_iter().map(|n| (n, tenant)).collect()
}

struct Repo;

impl Repo {
    #[cached(batch = ids, skip(db))]
    async fn rows(&self, db: &str, ids: HashSet<u32>) -> HashMap<u32, String> {
        ids.into_iter().map(|id| (id, db.to_owned())).collect()
    }
}

fn main() {
    let _ = products(vec![1, 2]);
    let _ = products_invalidate(&1);
    let _ = users(1, BTreeSet::new());
    let _ = users_invalidate(&1, &"ann".to_owned());
    let _ = Repo.rows("db", HashSet::new());
    let _ = Repo.rows_invalidate(&7);
}
