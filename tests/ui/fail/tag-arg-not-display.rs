use cache_runtime::cached;
use serde::Serialize;

#[derive(Serialize)]
pub struct Filter {
    pub category: String,
}

#[cached(tags = ["filter:{filter}"])]
async fn f(filter: Filter) -> u32 {
    filter.category.len() as u32
}

fn main() {}
