use std::collections::HashMap;

use cache_runtime::cached;

#[cached(batch = ids, grace = "1h")]
async fn products(ids: Vec<u64>) -> Option<HashMap<u64, String>> {
    Some(ids.into_iter().map(|id| (id, id.to_string())).collect())
}

fn everything(_: &HashMap<u64, String>) -> bool {
    true
}

#[cached(batch = ids, unless = everything)]
async fn listed(ids: Vec<u64>) -> HashMap<u64, String> {
    ids.into_iter().map(|id| (id, id.to_string())).collect()
}

fn main() {}
