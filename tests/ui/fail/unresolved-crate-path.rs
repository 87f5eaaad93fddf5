use cache_runtime::cached;

#[cached(crate = "caching")]
async fn f(id: u32) -> u32 {
    id
}

fn main() {}
