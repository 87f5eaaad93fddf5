use std::collections::HashSet;

use cache_runtime::cached;

#[cached]
async fn f(ids: HashSet<u64>) -> u32 {
    ids.len() as u32
}

fn main() {}
