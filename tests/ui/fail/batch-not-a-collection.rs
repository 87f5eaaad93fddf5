use std::collections::HashMap;

use cache_runtime::cached;

#[cached(batch = id)]
async fn products(id: u64) -> HashMap<u64, String> {
    [(id, id.to_string())].into()
}

fn main() {}
