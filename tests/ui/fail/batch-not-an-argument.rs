use std::collections::HashMap;

use cache_runtime::cached;

#[cached(batch = idz)]
async fn products(ids: Vec<u64>) -> HashMap<u64, String> {
    ids.into_iter().map(|id| (id, id.to_string())).collect()
}

fn main() {}
